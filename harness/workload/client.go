package workload

import (
	"context"
	"errors"
	"io"
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

// Counters are one client's running totals for the progress line. Written
// by the client's goroutine only and read by the progress goroutine, so
// atomics without contention; padded so that clients do not share a cache
// line.
type Counters struct {
	OK, Fail, Info atomic.Int64
	_              [40]byte
}

// Client is one workload goroutine's state: its store handle, its recorder
// session, its operation generator. It keeps exactly one operation in flight.
type Client struct {
	store   kv.KV
	node    NodeReporter // store as a NodeReporter, or nil
	session *histories.Session
	gen     *Generator
	timeout time.Duration
	count   *Counters

	interval time.Duration // between operation starts; 0: none
	due      time.Time     // when the next operation may start
}

// Pace makes Run start an operation at most every interval (see
// Config.Interval). A client that falls behind, its store slower than the
// pace, starts the next one at once rather than in a burst to catch up,
// so the pace caps the load and never adds to it.
func (c *Client) Pace(interval time.Duration) { c.interval = interval }

// wait sleeps until the next operation is due; false if stop or hard came
// first.
func (c *Client) wait(stop <-chan struct{}, hard context.Context) bool {
	if c.interval <= 0 {
		return true
	}
	now := time.Now()
	if c.due.IsZero() || !c.due.After(now) {
		c.due = now.Add(c.interval)
		return true
	}
	t := time.NewTimer(c.due.Sub(now))
	defer t.Stop()
	select {
	case <-t.C:
		c.due = c.due.Add(c.interval)
		return true
	case <-stop:
		return false
	case <-hard.Done():
		return false
	}
}

// NewClient returns a client of store recording into session, each
// operation under its own timeout; gen may be nil for a client driven by
// Do alone. count may be nil.
func NewClient(store kv.KV, session *histories.Session, gen *Generator, timeout time.Duration, count *Counters) *Client {
	if count == nil {
		count = &Counters{}
	}
	nr, _ := store.(NodeReporter)
	return &Client{store: store, node: nr, session: session, gen: gen, timeout: timeout, count: count}
}

// Run issues operations until stop is done. Each operation runs under its
// own deadline derived from hard, not from stop: reaching the time limit
// lets the operations in flight finish (so the history does not end in a
// burst of artificial timeouts), while cancelling hard (SIGINT) cuts them.
func (c *Client) Run(stop <-chan struct{}, hard context.Context) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		if hard.Err() != nil || !c.wait(stop, hard) {
			return
		}
		op := c.gen.Next()
		done := c.Do(hard, op)
		c.gen.Observe(done)
	}
}

// Do performs one operation and records it, its outcome by [OutcomeOf].
func (c *Client) Do(hard context.Context, op histories.Operation) histories.Operation {
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
	op.Outcome = OutcomeOf(err)
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
		c.count.OK.Add(1)
	case histories.Fail:
		c.count.Fail.Add(1)
	default:
		c.count.Info.Add(1)
	}
	return done
}

// OutcomeOf maps a store's error to the history's outcome. It is the
// soundness boundary of the whole harness: only an error the store marked
// definite (kv.ErrDefinite) becomes fail, which the checker drops; every
// other error, a deadline among them, is info, because the operation may
// have taken effect.
func OutcomeOf(err error) histories.Outcome {
	switch {
	case err == nil:
		return histories.OK
	case kv.IsDefinite(err):
		return histories.Fail
	default:
		return histories.Info
	}
}

// Close closes the client's store handle if it holds anything.
func (c *Client) Close() error {
	if cl, ok := c.store.(io.Closer); ok {
		return cl.Close()
	}
	return nil
}
