package histories

import (
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRecorderTimesAndOrder(t *testing.T) {
	r := NewRecorder()
	s := r.Session()
	require.Equal(t, 0, s.Client())

	call := s.Begin(Operation{Op: Put, Key: "k", Value: "c0-1"})
	got := s.End(Operation{Op: Put, Key: "k", Value: "c0-1", Outcome: OK, Node: "n1"})
	require.Equal(t, call, got.Call)
	require.GreaterOrEqual(t, got.Return, got.Call)
	require.Equal(t, 0, got.Client)
	require.Equal(t, "n1", got.Node)

	s.Begin(Operation{Op: Get, Key: "k"})
	got2 := s.End(Operation{Op: Get, Key: "k", Outcome: OK, Found: true, Output: "c0-1"})
	require.GreaterOrEqual(t, got2.Call, got.Return, "a client's next call follows its previous return")

	ops := r.Operations()
	require.Len(t, ops, 2)
	require.Equal(t, []Operation{got, got2}, ops)
}

func TestRecorderRotatesClientAfterInfo(t *testing.T) {
	r := NewRecorder()
	a, b := r.Session(), r.Session()
	require.Equal(t, 0, a.Client())
	require.Equal(t, 1, b.Client())

	a.Begin(Operation{Op: Append, Key: "k", Value: "x"})
	info := a.End(Operation{Op: Append, Key: "k", Value: "x", Outcome: Info, Error: "timeout"})
	require.Equal(t, 0, info.Client)
	require.Zero(t, info.Return, "an info operation has no return")
	require.Equal(t, 2, a.Client(), "the next dense id")

	// A definite failure is complete: the client keeps its id.
	b.Begin(Operation{Op: CAS, Key: "k", Expect: "x", Value: "y"})
	fail := b.End(Operation{Op: CAS, Key: "k", Expect: "x", Value: "y", Outcome: Fail, Error: "not leader"})
	require.NotZero(t, fail.Return)
	require.Equal(t, 1, b.Client())

	a.Begin(Operation{Op: Get, Key: "k"})
	next := a.End(Operation{Op: Get, Key: "k", Outcome: OK})
	require.Equal(t, 2, next.Client)
}

func TestRecorderMisusePanics(t *testing.T) {
	r := NewRecorder()
	s := r.Session()
	require.PanicsWithValue(t, `histories: client 0 ended get "k" with no operation in flight`, func() {
		s.End(Operation{Op: Get, Key: "k", Outcome: OK})
	})
	s.Begin(Operation{Op: Get, Key: "k"})
	require.Panics(t, func() { s.Begin(Operation{Op: Put, Key: "k", Value: "v"}) }, "two operations in flight")
	require.Panics(t, func() { s.End(Operation{Op: Get, Key: "other", Outcome: OK}) }, "ending another operation")
	require.Panics(t, func() { s.End(Operation{Op: Get, Key: "k", Outcome: "maybe"}) }, "bad outcome")
	s.End(Operation{Op: Get, Key: "k", Outcome: OK})
}

func TestRecorderInFlightBecomesInfo(t *testing.T) {
	r := NewRecorder()
	s := r.Session()
	s.Begin(Operation{Op: Put, Key: "k", Value: "c0-1"})
	ops := r.Operations()
	require.Len(t, ops, 1)
	require.Equal(t, Info, ops[0].Outcome)
	require.Equal(t, InFlightError, ops[0].Error)
	require.Zero(t, ops[0].Return)
	require.Equal(t, 0, r.Len(), "Len counts completed operations only")
}

// TestRecorderConcurrent records from many goroutines at once (run it with
// -race) and checks the merge: sorted by call, nothing lost, each client's
// operations sequential.
func TestRecorderConcurrent(t *testing.T) {
	r := NewRecorder()
	const clients, each = 8, 2000
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := r.Session()
			for i := range each {
				op := Operation{Op: Put, Key: "k", Value: fmt.Sprintf("c%d-%d", c, i)}
				s.Begin(op)
				op.Outcome = OK
				if i%100 == 99 {
					op.Outcome = Info
				}
				s.End(op)
			}
		}()
	}
	// Reading while recording must be safe.
	_ = r.Operations()
	wg.Wait()

	ops := r.Operations()
	require.Len(t, ops, clients*each)
	last := map[int]int64{}
	for i, op := range ops {
		if i > 0 {
			require.GreaterOrEqual(t, op.Call, ops[i-1].Call, "sorted by call")
		}
		if op.Outcome == OK {
			require.GreaterOrEqual(t, op.Call, last[op.Client], "client %d overlaps itself", op.Client)
			last[op.Client] = op.Return
		} else {
			last[op.Client] = 1 << 62 // nothing may follow an info op under its id
		}
	}
	// 8 first ids plus one per info outcome but each client's last (whose
	// next id is never used, so never taken), dense from 0.
	require.Equal(t, clients+clients*(each/100-1), len(last))
	for id := range len(last) {
		_, ok := last[id]
		require.True(t, ok, "client id %d missing: ids must be dense", id)
	}
}

// BenchmarkRecorder is the recorder's hot path from parallel clients: one
// Begin and one End per iteration. It must stay far above any store's
// throughput so that the harness never bounds what it measures.
func BenchmarkRecorder(b *testing.B) {
	r := NewRecorder()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		s := r.Session()
		op := Operation{Op: Put, Key: "k001", Value: "c1-1"}
		for pb.Next() {
			s.Begin(op)
			res := op
			res.Outcome = OK
			s.End(res)
		}
	})
}
