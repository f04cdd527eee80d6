package harness

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/chainraft/chainraft/histories"
	"github.com/chainraft/chainraft/kv"
)

// NodeReporter is implemented by a store's client (or by the errors it
// returns) when it knows which node answered; the harness records the node
// in the history, where it shows in the visualization's tooltips.
type NodeReporter interface {
	LastNode() string
}

// counters are one client's running totals for the progress line. Written
// by the client's goroutine only and read by the progress goroutine, so
// atomics without contention; padded so that clients do not share a cache
// line.
type counters struct {
	ok, fail, info atomic.Int64
	_              [40]byte
}

// client is one workload goroutine's state: its store handle, its recorder
// session, its operation generator. It keeps exactly one operation in flight.
type client struct {
	store   kv.KV
	node    NodeReporter // store as a NodeReporter, or nil
	session *histories.Session
	gen     *generator
	timeout time.Duration
	count   *counters
}

// run issues operations until stop is done. Each operation runs under its
// own deadline derived from hard, not from stop: reaching the time limit
// lets the operations in flight finish (so the history does not end in a
// burst of artificial timeouts), while cancelling hard (SIGINT) cuts them.
func (c *client) run(stop <-chan struct{}, hard context.Context) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		if hard.Err() != nil {
			return
		}
		op := c.gen.next()
		done := c.do(hard, op)
		c.gen.observe(done)
	}
}

// do performs one operation and records it. The mapping of errors to
// outcomes is the soundness boundary of the whole harness: only an error
// the store marked definite (kv.ErrDefinite) becomes fail; every other error,
// a deadline among them, is info, because the operation may have taken effect.
func (c *client) do(hard context.Context, op histories.Operation) histories.Operation {
	ctx, cancel := context.WithTimeout(hard, c.timeout)
	defer cancel()
	c.session.Begin(op)
	var err error
	switch op.Op {
	case histories.Get:
		op.Output, op.Found, err = c.store.Get(ctx, op.Key)
	case histories.Put:
		err = c.store.Put(ctx, op.Key, op.Value)
	case histories.Append:
		err = c.store.Append(ctx, op.Key, op.Value)
	case histories.CAS:
		op.Swapped, err = c.store.CAS(ctx, op.Key, op.Expect, op.Value)
	}
	switch {
	case err == nil:
		op.Outcome = histories.OK
	case kv.IsDefinite(err):
		op.Outcome = histories.Fail
	default:
		op.Outcome = histories.Info
	}
	if err != nil {
		// Results that came with an error mean nothing.
		op.Output, op.Found, op.Swapped = "", false, false
		op.Error = err.Error()
		var nr NodeReporter
		if errors.As(err, &nr) {
			op.Node = nr.LastNode()
		}
	}
	if op.Node == "" && c.node != nil {
		op.Node = c.node.LastNode()
	}
	done := c.session.End(op)
	switch done.Outcome {
	case histories.OK:
		c.count.ok.Add(1)
	case histories.Fail:
		c.count.fail.Add(1)
	default:
		c.count.info.Add(1)
	}
	return done
}
