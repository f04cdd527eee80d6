package histories

import (
	"cmp"
	"math"
	"slices"
	"sort"
)

// tightenClusters narrows intervals on a key that has only puts and gets,
// with distinct put values (Gibbons and Korach's "unambiguous register").
// There, a value's cluster — its put and the reads that returned it — is
// contiguous in every linearization (once another value is written, that
// value never returns), and the reads of an absent key come before every
// put. So when some operation of cluster x returned before some operation
// of cluster y began, all of x precedes all of y: each operation of y starts
// no earlier than the latest call in x, and each operation of x ends no
// later than the earliest return in y. Every linearization already obeys
// these bounds, so they change no verdict; they let the search try the
// operations in an order closer to the true one and leave more quiescent
// points to cut at. An interval the bounds would empty is left alone: the
// history is illegal and the search will say so.
func tightenClusters(ops []Operation, call, ret []int64, drop []bool, notes []string) {
	id := map[string]int{} // value -> cluster; cluster 0 holds the reads of an absent key
	cluster := make([]int, len(ops))
	for i, op := range ops {
		switch {
		case drop != nil && drop[i]:
			cluster[i] = -1
		case op.Op == Put:
			id[op.Value] = len(id) + 1
			cluster[i] = id[op.Value]
		case op.Op == Get:
		default:
			return // cas or append: clusters are not contiguous that simply
		}
	}
	for i, op := range ops {
		if op.Op != Get {
			continue
		}
		if !op.Found {
			cluster[i] = 0
			continue
		}
		c, ok := id[op.Output]
		if !ok {
			return // a value nobody wrote: illegal, nothing to gain
		}
		cluster[i] = c
	}
	narrowByClusters(cluster, len(id)+1, call, ret, notes)
}

// narrowByClusters applies the cluster bounds: cluster[i] is op i's
// cluster (-1: none; 0: reads of an absent key, which precede every write),
// and k the number of clusters. Every member of a cluster must sit in one
// contiguous stretch of every linearization, with the stretches of
// different clusters disjoint.
func narrowByClusters(cluster []int, k int, call, ret []int64, notes []string) {
	first := make([]int64, k) // earliest return in the cluster
	last := make([]int64, k)  // latest call in the cluster
	floor := make([]int64, k)
	ceil := make([]int64, k)
	for range 3 { // a few rounds: each round's bounds can create new precedences
		for c := range k {
			first[c], last[c] = math.MaxInt64, math.MinInt64
		}
		for i := range cluster {
			if c := cluster[i]; c >= 0 {
				first[c] = min(first[c], ret[i])
				last[c] = max(last[c], call[i])
			}
		}
		clusterBounds(first, last, floor, ceil)
		changed := false
		for i := range cluster {
			c := cluster[i]
			if c < 0 {
				continue
			}
			nc, nr := max(call[i], floor[c]), min(ret[i], ceil[c])
			if nc > nr || (nc == call[i] && nr == ret[i]) {
				continue
			}
			call[i], ret[i] = nc, nr
			notes[i] = "interval narrowed by the order of values read"
			changed = true
		}
		if !changed {
			return
		}
	}
}

// clusterBounds computes, for each cluster c, floor[c] = the latest call of
// any cluster that must precede it and ceil[c] = the earliest return of any
// cluster that must follow it (MinInt64 / MaxInt64 when none). Cluster x
// precedes y (x ≠ y) when first[x] < last[y]; cluster 0 (absent reads), when
// it has operations, precedes every other. Each query is a binary search
// over clusters sorted by first (resp. last) with the two best prefix
// (suffix) values kept, so a cluster can be excluded from its own bound.
func clusterBounds(first, last, floor, ceil []int64) {
	k := len(first)
	var ws []int // write clusters with operations
	for c := 1; c < k; c++ {
		if first[c] != math.MaxInt64 {
			ws = append(ws, c)
		}
	}
	absent := first[0] != math.MaxInt64
	type best struct {
		v1, v2 int64
		c1     int
	}
	// floor: clusters by first ascending, prefix maxima of last.
	byFirst := slices.Clone(ws)
	slices.SortFunc(byFirst, func(a, b int) int { return cmp.Compare(first[a], first[b]) })
	pre := make([]best, len(byFirst)+1)
	pre[0] = best{math.MinInt64, math.MinInt64, -1}
	for i, c := range byFirst {
		b := pre[i]
		switch {
		case last[c] > b.v1:
			b = best{last[c], b.v1, c}
		case last[c] > b.v2:
			b.v2 = last[c]
		}
		pre[i+1] = b
	}
	// ceil: clusters by last ascending, suffix minima of first.
	byLast := slices.Clone(ws)
	slices.SortFunc(byLast, func(a, b int) int { return cmp.Compare(last[a], last[b]) })
	suf := make([]best, len(byLast)+1)
	suf[len(byLast)] = best{math.MaxInt64, math.MaxInt64, -1}
	for i := len(byLast) - 1; i >= 0; i-- {
		c, b := byLast[i], suf[i+1]
		switch {
		case first[c] < b.v1:
			b = best{first[c], b.v1, c}
		case first[c] < b.v2:
			b.v2 = first[c]
		}
		suf[i] = b
	}
	for c := range k {
		floor[c], ceil[c] = math.MinInt64, math.MaxInt64
	}
	for _, c := range ws {
		p := sort.Search(len(byFirst), func(i int) bool { return first[byFirst[i]] >= last[c] })
		if b := pre[p]; b.c1 != c {
			floor[c] = b.v1
		} else {
			floor[c] = b.v2
		}
		if absent {
			floor[c] = max(floor[c], last[0])
		}
		s := sort.Search(len(byLast), func(i int) bool { return last[byLast[i]] > first[c] })
		if b := suf[s]; b.c1 != c {
			ceil[c] = b.v1
		} else {
			ceil[c] = b.v2
		}
	}
	if absent {
		for _, c := range ws {
			ceil[0] = min(ceil[0], first[c])
		}
	}
}
