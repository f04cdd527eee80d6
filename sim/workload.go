package sim

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/chainraft/chainraft/harness/workload"
	"github.com/chainraft/chainraft/histories"
)

// storeClient is one workload client's handle on a simulated store: do
// starts an operation and calls done once, on the simulated clock, with the
// operation's results (nil error) or the error the store's client would
// have returned (kv.IsDefinite: certainly no effect).
type storeClient interface {
	do(op histories.Operation, deadline int64, done func(histories.Operation, error))
}

// recorder keeps the history by histories.Recorder's rules — dense client
// ids from 0 in session order, a fresh id after an info outcome, taken at
// the next call, in-flight operations as info, operations sorted stably by
// call — on the simulated clock. histories.Recorder reads the monotonic
// wall clock and has no seam for another, so it cannot be used as it is
// here; a NewRecorderClock(func() int64) there would let this go.
type recorder struct {
	nextClient int
	sessions   []*session
}

type session struct {
	r        *recorder
	client   int
	inFlight bool
	pending  histories.Operation
	ops      []histories.Operation
}

func (r *recorder) session() *session {
	s := &session{r: r, client: r.nextClient}
	r.nextClient++
	r.sessions = append(r.sessions, s)
	return s
}

func (s *session) begin(op histories.Operation, now int64) histories.Operation {
	if s.inFlight {
		panic(fmt.Sprintf("sim: client %d began %s %q while %s %q is in flight", s.client, op.Op, op.Key, s.pending.Op, s.pending.Key))
	}
	if s.client < 0 {
		s.client = s.r.nextClient
		s.r.nextClient++
	}
	op.Client, op.Call = s.client, now
	s.pending, s.inFlight = op, true
	return op
}

func (s *session) end(op histories.Operation, now int64) histories.Operation {
	if !s.inFlight {
		panic(fmt.Sprintf("sim: client %d ended %s %q with nothing in flight", s.client, op.Op, op.Key))
	}
	op.Client, op.Call = s.client, s.pending.Call
	op.Return = now
	if op.Outcome == histories.Info {
		op.Return = 0
		s.client = -1
	}
	s.ops = append(s.ops, op)
	s.inFlight, s.pending = false, histories.Operation{}
	return op
}

func (r *recorder) operations() []histories.Operation {
	var out []histories.Operation
	for _, s := range r.sessions {
		out = append(out, s.ops...)
		if s.inFlight {
			op := s.pending
			op.Outcome = histories.Info
			op.Error = histories.InFlightError
			out = append(out, op)
		}
	}
	slices.SortStableFunc(out, func(a, b histories.Operation) int { return cmp.Compare(a.Call, b.Call) })
	return out
}

// worker is one workload client: one operation in flight, a think time
// between operations, recorded as the harness's client records them (only
// a definite error is fail; every other error, a deadline among them, is
// info).
type worker struct {
	r    *run
	gen  *workload.Generator
	sess *session
	sc   storeClient
	busy bool
}

func (wk *worker) next() {
	r := wk.r
	if r.stopping {
		return
	}
	op := wk.sess.begin(wk.gen.Next(), r.w.now)
	wk.busy = true
	wk.sc.do(op, r.w.now+int64(r.opts.RequestTimeout), func(res histories.Operation, err error) {
		res.Outcome = workload.OutcomeOf(err)
		if err != nil {
			res.Output, res.Found, res.Swapped = "", false, false
			res.Error = err.Error()
		}
		done := wk.sess.end(res, r.w.now)
		wk.busy = false
		wk.gen.Observe(done)
		r.observe(done)
		r.w.after(r.w.between(0, r.think), wk.next)
	})
}
