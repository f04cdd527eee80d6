package sim

import (
	"container/heap"
	"math/rand/v2"
	"time"
)

// world is the simulated universe of one seed: a clock that jumps from event
// to event, the queue of pending events, and the one random source every
// choice is drawn from. It is owned by the goroutine running the seed and
// never touched by another.
type world struct {
	now    int64 // simulated ns since the start of the run
	seq    uint64
	events eventQueue
	rng    *rand.Rand
	steps  int // events run, for the runaway guard
}

func newWorld(seed int64) *world {
	return &world{rng: rand.New(rand.NewPCG(uint64(seed), 0x5eed_c4a1_4af7))}
}

// event is one thing that happens at a simulated instant. Events at the same
// instant run in the order they were scheduled (seq), so the order never
// depends on the heap's internal layout.
type event struct {
	at  int64
	seq uint64
	fn  func()
}

type eventQueue []*event

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(*event)) }
func (q *eventQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	return e
}

// at schedules fn at simulated time t (never in the past).
func (w *world) at(t int64, fn func()) {
	if t < w.now {
		t = w.now
	}
	w.seq++
	heap.Push(&w.events, &event{at: t, seq: w.seq, fn: fn})
}

// after schedules fn d from now.
func (w *world) after(d time.Duration, fn func()) { w.at(w.now+int64(d), fn) }

// runUntil runs events in time order until the next one lies past t or stop
// says so (checked after every event); the clock ends at t unless stopped
// early.
func (w *world) runUntil(t int64, stop func() bool) {
	for w.events.Len() > 0 && w.events[0].at <= t {
		e := heap.Pop(&w.events).(*event)
		w.now = e.at
		w.steps++
		e.fn()
		if stop != nil && stop() {
			return
		}
	}
	if w.now < t {
		w.now = t
	}
}

// between draws a duration uniformly from [lo, hi].
func (w *world) between(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(w.rng.Int64N(int64(hi-lo)+1))
}

// chance is true with probability p.
func (w *world) chance(p float64) bool { return p > 0 && w.rng.Float64() < p }
