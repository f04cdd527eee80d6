package histories

import (
	"cmp"
	"math"
	"slices"
	"strings"
)

func slicesSortByCall(idx []int, call []int64) {
	slices.SortFunc(idx, func(a, b int) int { return cmp.Compare(call[a], call[b]) })
}

// useAppendTokens applies the append rules of doc.go to a key with
// appends: an unknown write whose value no state ever showed is pruned, and
// the writes that a decoded state names are bounded by their first
// observer (see decoder). It returns the pruned operations (nil when none).
func useAppendTokens(ops []Operation, call, ret []int64, notes []string, kh *keyHistory, dec *decoder) []bool {
	firstSeen := make([]int64, len(ops))
	for i := range firstSeen {
		firstSeen[i] = math.MaxInt64
	}
	observed := make([]bool, len(ops))
	var links [][2]int32               // writes a decoded state shows to be adjacent: the second applied right after the first
	version := make([]int32, len(ops)) // observer -> the write whose state it saw (-1: not known)
	for i := range version {
		version[i] = -1
	}
	seenMulti := map[string]bool{} // decoded values with several writers: all of them may have been seen
	var undecoded []string         // states seen that did not decode: matched by substring
	var toks []string
	var nonSwaps []int   // ok cas that did not swap
	var expects []string // expected values of cas that may matter, matched by substring
	observe := func(obs int, s string) {
		p, ok := dec.decode(s, toks)
		if !ok {
			undecoded = append(undecoded, s)
			return
		}
		toks = p.tokens
		latest := int64(math.MinInt64)
		see := func(v string, w int32) {
			if w == multiWriter {
				seenMulti[v] = true
			}
			if w < 0 {
				return
			}
			observed[w] = true
			firstSeen[w] = min(firstSeen[w], ops[obs].Return)
			latest = max(latest, ops[w].Call)
		}
		if p.base != "" {
			see(p.base, dec.bases[p.base])
		}
		for _, t := range p.tokens {
			see(t, dec.tokens[t])
		}
		prev := int32(-1)
		if w, ok := dec.bases[p.base]; ok && p.base != "" {
			prev = w
		}
		for _, t := range p.tokens {
			w := dec.tokens[t]
			if prev >= 0 && w >= 0 {
				links = append(links, [2]int32{prev, w})
			}
			prev = w
		}
		if n := len(p.tokens); n > 0 {
			version[obs] = dec.tokens[p.tokens[n-1]]
		} else if w, ok := dec.bases[p.base]; ok {
			version[obs] = w
		}
		if ops[obs].Op == CAS && version[obs] >= 0 {
			links = append(links, [2]int32{version[obs], int32(obs)}) // a swapped cas follows the state it saw
		}
		// The observer starts no earlier than the latest write it saw.
		if latest > call[obs] && latest <= ret[obs] {
			call[obs] = latest
			notes[obs] = "call raised to that of the latest write whose value it saw"
		}
	}
	for i, op := range ops {
		switch {
		case op.Outcome != OK:
		case op.Op == Get && op.Found:
			observe(i, op.Output)
		case op.Op == CAS && op.Swapped:
			observe(i, op.Expect)
		case op.Op == CAS:
			nonSwaps = append(nonSwaps, i)
		}
		if op.Op == CAS && op.Outcome != OK {
			expects = append(expects, op.Expect)
		}
	}
	lastNonSwap := nonSwapBound(ops, call, ret, dec, nonSwaps, firstSeen, links, &expects)
	// Unknown writes whose value appears inside a state that did not
	// decode, or inside any cas's expected value, may have been seen.
	unknown := map[string][]int{}
	for i, op := range ops {
		if seenMulti[op.Value] {
			observed[i] = true
		}
		if op.Outcome == Info && op.Op != Get && op.Value != "" && !observed[i] {
			unknown[op.Value] = append(unknown[op.Value], i)
		}
	}
	if len(unknown) > 0 {
		lens := map[int]bool{}
		for v := range unknown {
			lens[len(v)] = true
		}
		scan := func(s string) {
			for l := range lens {
				for j := 0; j+l <= len(s); j++ {
					for _, w := range unknown[s[j:j+l]] {
						observed[w] = true
					}
				}
			}
		}
		for _, s := range undecoded {
			scan(s)
		}
		for _, s := range expects {
			scan(s)
		}
	}
	var drop []bool
	for i, op := range ops {
		if op.Op == Get || (op.Op == CAS && op.Outcome == OK && !op.Swapped) {
			continue
		}
		if t := firstSeen[i]; t != math.MaxInt64 {
			if t >= op.Call && t < ret[i] { // else the observer precedes the write: the search refutes it
				ret[i] = t
				notes[i] = strings.TrimPrefix(notes[i]+"; return lowered to that of the first operation whose state showed its value", "; ")
				if op.Outcome == Info {
					kh.bounded++
				}
			}
			continue
		}
		if op.Outcome != Info || op.Value == "" || observed[i] || lastNonSwap >= op.Call {
			continue
		}
		if drop == nil {
			drop = make([]bool, len(ops))
		}
		drop[i] = true
		kh.pruned++
	}
	// A write applied right after another starts no earlier than it, and
	// the other ends no later.
	for range 2 {
		for _, l := range links {
			a, b := l[0], l[1]
			if c := call[a]; c > call[b] && c <= ret[b] {
				call[b] = c
				notes[b] = "call raised: a state shows it applied right after another write"
			}
		}
		for k := len(links) - 1; k >= 0; k-- {
			a, b := links[k][0], links[k][1]
			if r := ret[b]; r < ret[a] && r >= call[a] {
				ret[a] = r
				notes[a] = "return lowered: a state shows another write applied right after it"
			}
		}
	}
	appendClusters(ops, call, ret, notes, drop, version, firstSeen, links)
	return drop
}

// nonSwapBound returns the latest call an unknown write may have and still
// be needed to explain a completed cas that did not swap (doc.go, "Appends"):
// such a cas c matters to a write w only if c returned after w's call and
// the state c expected may still have been the state at w's call; a state
// whose last write x was followed, certainly, by a write that returned at
// r (a decoded state shows it applied right after x, or it began after x
// returned) was gone by r. Expected values with several parses are also
// added to expects, to be matched by substring; values with none can never
// be the state.
func nonSwapBound(ops []Operation, call, ret []int64, dec *decoder, nonSwaps []int, firstSeen []int64, links [][2]int32, expects *[]string) int64 {
	bound := int64(-1)
	if len(nonSwaps) == 0 {
		return bound
	}
	applied := func(i int) bool {
		op := ops[i]
		return op.Op != Get && (op.Outcome == OK && (op.Op != CAS || op.Swapped) || firstSeen[i] != math.MaxInt64)
	}
	// gone[x]: when the state x made was certainly replaced.
	gone := make([]int64, len(ops))
	for i := range gone {
		gone[i] = math.MaxInt64
	}
	for _, l := range links {
		if applied(int(l[1])) {
			gone[l[0]] = min(gone[l[0]], ret[l[1]])
		}
	}
	// The earliest return among applied writes that began after t: writes
	// sorted by call, with suffix minima of return.
	var byCall []int
	for i := range ops {
		if applied(i) {
			byCall = append(byCall, i)
		}
	}
	slicesSortByCall(byCall, call)
	sufMin := make([]int64, len(byCall)+1)
	sufMin[len(byCall)] = math.MaxInt64
	for k := len(byCall) - 1; k >= 0; k-- {
		sufMin[k] = min(sufMin[k+1], ret[byCall[k]])
	}
	after := func(t int64) int64 {
		lo, hi := 0, len(byCall)
		for lo < hi {
			m := (lo + hi) / 2
			if call[byCall[m]] > t {
				hi = m
			} else {
				lo = m + 1
			}
		}
		return sufMin[lo]
	}
	var toks []string
	for _, c := range nonSwaps {
		d := ret[c]
		p, ok := dec.decode(ops[c].Expect, toks)
		switch {
		case ok:
			toks = p.tokens
			x := int32(-1)
			if n := len(p.tokens); n > 0 {
				x = dec.tokens[p.tokens[n-1]]
			} else if w, found := dec.bases[p.base]; found {
				x = w
			}
			if x >= 0 {
				d = min(d, gone[x], after(ret[x]))
			}
		case dec.parses == 0 && dec.usable:
			continue // never a state of this key
		default:
			*expects = append(*expects, ops[c].Expect)
		}
		bound = max(bound, d)
	}
	return bound
}

// appendClusters narrows intervals by clusters of states (see doc.go): a
// write that certainly took effect (an ok put, append or swapped cas, or
// an unknown write some decoded state names) and the reads whose decoded
// state it made last form a cluster; reads of an absent key form cluster 0.
func appendClusters(ops []Operation, call, ret []int64, notes []string, drop []bool, version []int32, firstSeen []int64, links [][2]int32) {
	cluster := make([]int, len(ops))
	for i, op := range ops {
		cluster[i] = -1
		if drop != nil && drop[i] {
			continue
		}
		switch {
		case op.Op == Get:
		case op.Outcome == OK && (op.Op != CAS || op.Swapped):
			cluster[i] = i + 1
		case op.Outcome == Info && firstSeen[i] != math.MaxInt64:
			cluster[i] = i + 1
		}
	}
	for i, op := range ops {
		if op.Op != Get || op.Outcome != OK {
			continue
		}
		if !op.Found {
			cluster[i] = 0
			continue
		}
		if w := version[i]; w >= 0 && cluster[w] > 0 {
			cluster[i] = cluster[w]
		}
	}
	// Adjacent clusters merge: a write applied right after the state of
	// another leaves nothing between their stretches.
	parent := make([]int32, len(ops)+1)
	for i := range parent {
		parent[i] = int32(i)
	}
	var find func(x int32) int32
	find = func(x int32) int32 {
		for parent[x] != x {
			parent[x] = parent[parent[x]]
			x = parent[x]
		}
		return x
	}
	for _, l := range links {
		a, b := cluster[l[0]], cluster[l[1]]
		if a > 0 && b > 0 {
			parent[find(int32(a))] = find(int32(b))
		}
	}
	for i, c := range cluster {
		if c > 0 {
			cluster[i] = int(find(int32(c)))
		}
	}
	narrowByClusters(cluster, len(ops)+1, call, ret, notes)
}
