package sim

import (
	"time"
)

// clientEndpoint is the side of the network the workload's clients sit on.
// As in the nemesis (nemesis/doc.go), partitions never cut it: the clients
// reach every node, so the checker sees what each side of a partition does.
const clientEndpoint = 0

// netParams is a seed's network weather while faults are on.
type netParams struct {
	// Every message takes a delay drawn from [minDelay, maxDelay]; with
	// probability slowP it takes up to slowMax instead, which is how
	// messages overtake each other.
	minDelay, maxDelay time.Duration
	slowP              float64
	slowMax            time.Duration
	// loss and dup are the probabilities that a message is dropped, or
	// delivered twice (each copy with its own delay).
	loss, dup float64
	// fifo keeps each directed link in order and never duplicates, as a TCP
	// stream does, for a protocol that relies on it (chain replication).
	fifo bool
}

// network carries messages between endpoints: node ids, and clientEndpoint.
// A message is judged at delivery time: a cut in force when it would arrive
// drops it, like a packet meeting a partition.
type network struct {
	w     *world
	p     netParams
	quiet bool // the liveness phase: no loss, duplication or slow messages
	cuts  map[[2]int]int
	// slowNodes adds latency to every message to or from a node (the
	// nemesis's delay fault); the largest in force applies.
	slowNodes map[int][]time.Duration
	lastAt    map[[2]int]int64 // fifo: the last delivery time per link

	sent, lost, duplicated int
}

func newNetwork(w *world, p netParams) *network {
	return &network{w: w, p: p, cuts: map[[2]int]int{}, slowNodes: map[int][]time.Duration{}, lastAt: map[[2]int]int64{}}
}

func (n *network) isCut(from, to int) bool { return n.cuts[[2]int{from, to}] > 0 }

// cut and uncut add and remove one reference to each directed cut, so
// overlapping faults heal independently.
func (n *network) cut(cs [][2]int) {
	for _, c := range cs {
		n.cuts[c]++
	}
}

func (n *network) uncut(cs [][2]int) {
	for _, c := range cs {
		if n.cuts[c] <= 1 {
			delete(n.cuts, c)
		} else {
			n.cuts[c]--
		}
	}
}

func (n *network) addSlow(node int, d time.Duration) {
	n.slowNodes[node] = append(n.slowNodes[node], d)
}

func (n *network) removeSlow(node int, d time.Duration) {
	ds := n.slowNodes[node]
	for i, x := range ds {
		if x == d {
			ds = append(ds[:i], ds[i+1:]...)
			break
		}
	}
	if len(ds) == 0 {
		delete(n.slowNodes, node)
	} else {
		n.slowNodes[node] = ds
	}
}

func (n *network) healAll() {
	clear(n.cuts)
	clear(n.slowNodes)
	n.quiet = true
}

func (n *network) delay(from, to int) time.Duration {
	d := n.w.between(n.p.minDelay, n.p.maxDelay)
	if !n.quiet && n.w.chance(n.p.slowP) {
		d = n.w.between(n.p.maxDelay, n.p.slowMax)
	}
	var extra time.Duration
	for _, x := range n.slowNodes[from] {
		extra = max(extra, x)
	}
	for _, x := range n.slowNodes[to] {
		extra = max(extra, x)
	}
	return d + extra
}

// send carries one message from one endpoint to another: deliver runs at
// its arrival, lost (if not nil) when it is dropped, at the time it would
// have arrived. The message itself lives in the closures: the caller copies
// anything the sender may still change.
func (n *network) send(from, to int, deliver, lost func()) {
	n.sent++
	copies := 1
	if !n.quiet && !n.p.fifo && n.w.chance(n.p.dup) {
		copies = 2
		n.duplicated++
	}
	for range copies {
		d := n.delay(from, to)
		at := n.w.now + int64(d)
		if n.p.fifo {
			link := [2]int{from, to}
			at = max(at, n.lastAt[link])
			n.lastAt[link] = at
		}
		dropped := n.isCut(from, to) || (!n.quiet && n.w.chance(n.p.loss))
		n.w.at(at, func() {
			if dropped || n.isCut(from, to) {
				n.lost++
				if lost != nil {
					lost()
				}
				return
			}
			deliver()
		})
	}
}
