package chain

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// Failure detection on the data path: the master's side. Nodes report the
// peers they suspect (Core: a successor silent, or behind without
// progress, for the detection time) in their node znodes; the master turns
// the reports into broken links and decides whom to take out of the
// chains. design.md ("Failure detection on the data path") has the policy
// and why it is safe; this file is its code.

// Link is a broken link between two live nodes as reported: A < B. Node
// level and undirected: a cut either way stalls a chain in which the two
// are neighbours, and either report names the same link.
type Link struct{ A, B uint64 }

func linkOf(x, y uint64) Link {
	if x > y {
		x, y = y, x
	}
	return Link{A: x, B: y}
}

func (l Link) String() string { return fmt.Sprintf("%d-%d", l.A, l.B) }

// reportedLinks is every link a live node reports broken to another live
// node, with how many reports name each node as a suspect. A report about
// a node without a session is left out: the session's expiry splices it.
func reportedLinks(live map[uint64]LiveNode) (links []Link, accused map[uint64]int) {
	accused = map[uint64]int{}
	seen := map[Link]bool{}
	for id, n := range live {
		for _, s := range n.Suspects {
			if _, ok := live[s]; !ok || s == id {
				continue
			}
			accused[s]++
			if l := linkOf(id, s); !seen[l] {
				seen[l] = true
				links = append(links, l)
			}
		}
	}
	slices.SortFunc(links, func(a, b Link) int {
		if c := cmp.Compare(a.A, b.A); c != 0 {
			return c
		}
		return cmp.Compare(a.B, b.B)
	})
	return links, accused
}

// Cover decides whom to take out of the chains for a set of broken links:
// a greedy vertex cover. It takes the node with the most broken links,
// removes its links, and repeats until none is left. Ties go to the node
// named suspect by more reports, then to a node other than the master (it
// keeps coordinating either way, but its own chains stay whole), then to
// the higher id, so that every master decides the same.
//
// Why the most links: a node cut off from the others is an endpoint of
// every link it reports and of every link reported about it, so it has the
// most and goes first, and with it every link; no healthy node goes,
// however loudly the cut-off node suspects them. A single broken link
// (a one-way cut between two nodes that both reach the rest) cannot be
// attributed: one of its two ends goes, either keeps the chains going.
func Cover(links []Link, accused map[uint64]int, master uint64) []uint64 {
	left := slices.Clone(links)
	var out []uint64
	for len(left) > 0 {
		deg := map[uint64]int{}
		for _, l := range left {
			deg[l.A]++
			deg[l.B]++
		}
		var best uint64
		better := func(x uint64) bool {
			switch {
			case best == 0:
				return true
			case deg[x] != deg[best]:
				return deg[x] > deg[best]
			case accused[x] != accused[best]:
				return accused[x] > accused[best]
			case (x == master) != (best == master):
				return best == master
			}
			return x > best
		}
		for x := range deg {
			if better(x) {
				best = x
			}
		}
		out = append(out, best)
		left = slices.DeleteFunc(left, func(l Link) bool { return l.A == best || l.B == best })
	}
	slices.Sort(out)
	return out
}

// Detection timing at the master.
const (
	// settleTime is how long the set of reported links must stand
	// unchanged before the master acts on it: the reports of the other
	// nodes on the same cut come within a tick or two (every neighbour of
	// a cut-off node times out at about the same moment), and Cover needs
	// them all to tell the cut-off node from the healthy ones it suspects.
	// settleMax bounds the wait when new links keep coming.
	settleTime = 300 * time.Millisecond
	settleMax  = time.Second
	// holdBase is how long a node taken out for suspicion is kept from
	// being promoted back into a chain after it was last suspected; each
	// further removal within forgiveAfter doubles it, up to holdMax. It
	// bounds flapping: a node on a link that comes and goes is removed at
	// most once per hold, and the holds grow.
	holdBase     = 2 * time.Second
	holdMax      = 30 * time.Second
	forgiveAfter = time.Minute
)

// holdFor is the hold after the k-th removal in a row (k ≥ 1).
func holdFor(k int) time.Duration {
	d := holdBase << min(k-1, 8)
	return min(d, holdMax)
}

// hold is what the detector remembers of a node it took out.
type hold struct {
	in      bool      // in the last cover
	strikes int       // removals in a row (reset after forgiveAfter)
	lastIn  time.Time // last time it was in the cover
	until   time.Time // not promoted before
}

// detector is the master's memory for the policy: when each link was first
// reported, and the holds. It lives as long as the master's term (a new
// master starts afresh: at worst one more removal of a flapping node). It
// is owned by the master's loop goroutine.
type detector struct {
	firstSeen map[Link]time.Time
	holds     map[uint64]*hold
}

func newDetector() *detector {
	return &detector{firstSeen: map[Link]time.Time{}, holds: map[uint64]*hold{}}
}

// decision is one round of the policy.
type decision struct {
	links []Link          // reported now
	cover []uint64        // taken out for links that stood settleTime
	out   map[uint64]bool // cover plus nodes held down
	wake  time.Time       // when the decision may change by time alone (zero: never)
}

// decide runs the policy at now over the live nodes' reports.
func (d *detector) decide(now time.Time, live map[uint64]LiveNode, master uint64) decision {
	links, accused := reportedLinks(live)
	var dec decision
	dec.links = links
	earliest := func(t time.Time) {
		if dec.wake.IsZero() || t.Before(dec.wake) {
			dec.wake = t
		}
	}
	// The links are acted on together once the set has stood settleTime
	// unchanged (a cut's reports come in a burst); links that keep coming
	// cannot put a decision off beyond settleMax for the oldest of them.
	current := map[Link]bool{}
	var youngest, oldest time.Time
	for _, l := range links {
		current[l] = true
		first, ok := d.firstSeen[l]
		if !ok {
			first = now
			d.firstSeen[l] = now
		}
		if youngest.IsZero() || first.After(youngest) {
			youngest = first
		}
		if oldest.IsZero() || first.Before(oldest) {
			oldest = first
		}
	}
	for l := range d.firstSeen {
		if !current[l] {
			delete(d.firstSeen, l)
		}
	}
	var settled []Link
	switch {
	case len(links) == 0:
	case now.Sub(youngest) >= settleTime:
		settled = links
	case now.Sub(oldest) >= settleMax:
		for _, l := range links {
			if now.Sub(d.firstSeen[l]) >= settleTime {
				settled = append(settled, l)
			}
		}
		earliest(youngest.Add(settleTime))
	default:
		earliest(youngest.Add(settleTime))
		earliest(oldest.Add(settleMax))
	}
	dec.cover = Cover(settled, accused, master)
	dec.out = map[uint64]bool{}
	inCover := map[uint64]bool{}
	for _, id := range dec.cover {
		inCover[id] = true
		dec.out[id] = true
		h := d.holds[id]
		if h == nil {
			h = &hold{}
			d.holds[id] = h
		}
		if !h.in {
			if now.Sub(h.lastIn) > forgiveAfter {
				h.strikes = 0
			}
			h.strikes++
		}
		h.in, h.lastIn = true, now
		h.until = now.Add(holdFor(h.strikes))
	}
	for id, h := range d.holds {
		if inCover[id] {
			continue
		}
		h.in = false
		if now.Before(h.until) {
			dec.out[id] = true
			earliest(h.until)
		} else if now.Sub(h.lastIn) > forgiveAfter {
			delete(d.holds, id)
		}
	}
	return dec
}
