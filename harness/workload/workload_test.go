package workload

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/histories"
	"github.com/chainraft/chainraft/kv"
)

func TestKeyNames(t *testing.T) {
	require.Equal(t, []string{"k000", "k001", "k002"}, KeyNames(3))
	keys := KeyNames(1500)
	require.Equal(t, "k0000", keys[0])
	require.Equal(t, "k1499", keys[1499])
}

func TestGeneratorMixAndUniqueValues(t *testing.T) {
	w := Config{Seed: 3, Keys: 20, ReadFraction: 0.4, AppendFraction: -1, CASFraction: -1, ValueSize: 12}
	require.NoError(t, w.Validate())
	keys := KeyNames(w.Keys)
	counts := map[histories.Kind]int{}
	seen := map[string]bool{}
	const n = 40000
	for worker := range 2 {
		g := NewGenerator(w, keys, worker)
		for range n / 2 {
			op := g.Next()
			counts[op.Op]++
			require.Contains(t, keys, op.Key)
			if op.Op != histories.Get {
				require.False(t, seen[op.Value], "value %q written twice", op.Value)
				seen[op.Value] = true
				require.GreaterOrEqual(t, len(op.Value), 12, "padded to the value size")
			}
		}
	}
	// Reads 40%; writes split half put, a quarter append, a quarter cas.
	require.InDelta(t, 0.40, float64(counts[histories.Get])/n, 0.02)
	require.InDelta(t, 0.30, float64(counts[histories.Put])/n, 0.02)
	require.InDelta(t, 0.15, float64(counts[histories.Append])/n, 0.02)
	require.InDelta(t, 0.15, float64(counts[histories.CAS])/n, 0.02)
}

func TestGeneratorIsSeeded(t *testing.T) {
	w := Config{Seed: 11, Keys: 100, ReadFraction: 0.5, AppendFraction: -1, CASFraction: -1}
	seq := func(seed int64, worker int) []histories.Operation {
		w.Seed = seed
		g := NewGenerator(w, KeyNames(w.Keys), worker)
		var ops []histories.Operation
		for range 100 {
			ops = append(ops, g.Next())
		}
		return ops
	}
	require.Equal(t, seq(11, 0), seq(11, 0))
	require.NotEqual(t, seq(11, 0), seq(12, 0))
	require.NotEqual(t, seq(11, 0), seq(11, 1), "clients differ")
}

func TestGeneratorCASExpectsLastSeen(t *testing.T) {
	w := Config{Seed: 1, Keys: 1, CASFraction: 1}
	g := NewGenerator(w, KeyNames(1), 0)
	g.Observe(histories.Operation{Op: histories.Get, Key: "k000", Outcome: histories.OK, Found: true, Output: "w9-4"})
	op := g.Next()
	require.Equal(t, histories.CAS, op.Op)
	require.Equal(t, "w9-4", op.Expect)
	// A failed or unknown operation teaches nothing.
	g.Observe(histories.Operation{Op: histories.Put, Key: "k000", Value: "zz", Outcome: histories.Info})
	require.Equal(t, "w9-4", g.Next().Expect)
	g.Observe(histories.Operation{Op: histories.CAS, Key: "k000", Value: "w0-2", Outcome: histories.OK, Swapped: true})
	require.Equal(t, "w0-2", g.Next().Expect)
}

func TestWorkloadValidate(t *testing.T) {
	ok := Config{Keys: 1, ReadFraction: 0.5, AppendFraction: -1, CASFraction: -1}
	require.NoError(t, ok.Validate())
	bad := ok
	bad.ReadFraction = -0.1
	require.ErrorContains(t, bad.Validate(), "read fraction")
	bad = ok
	bad.AppendFraction, bad.CASFraction = 0.3, 0.3
	require.ErrorContains(t, bad.Validate(), "sum")
}

// errStore answers every operation with one error, for the outcome mapping.
type errStore struct {
	kv.KV
	err error
}

func (e errStore) Put(context.Context, string, string) error { return e.err }

type nodeErr struct{ node string }

func (n nodeErr) Error() string    { return "connection reset by " + n.node }
func (n nodeErr) LastNode() string { return n.node }

func TestClientOutcomes(t *testing.T) {
	rec := histories.NewRecorder()
	tcs := []struct {
		name    string
		err     error
		outcome histories.Outcome
		node    string
	}{
		{"nil is ok", nil, histories.OK, ""},
		{"definite is fail", kv.Definitef("not leader"), histories.Fail, ""},
		{"other is info", errors.New("broken pipe"), histories.Info, ""},
		{"deadline is info", context.DeadlineExceeded, histories.Info, ""},
		{"wrapped definite is fail", fmt.Errorf("put: %w", kv.Definitef("rejected")), histories.Fail, ""},
		{"node from error", nodeErr{"n3"}, histories.Info, "n3"},
	}
	for _, tc := range tcs {
		t.Run(tc.name, func(t *testing.T) {
			c := NewClient(errStore{kv.NewMemory(), tc.err}, rec.Session(), nil, time.Second, nil)
			id := c.session.Client()
			done := c.Do(context.Background(), histories.Operation{Op: histories.Put, Key: "k", Value: "v"})
			require.Equal(t, tc.outcome, done.Outcome)
			require.Equal(t, tc.node, done.Node)
			if tc.err != nil {
				require.Equal(t, tc.err.Error(), done.Error)
			}
			if tc.outcome == histories.Info {
				require.NotEqual(t, id, c.session.Client(), "a new client id after info")
			} else {
				require.Equal(t, id, c.session.Client())
			}
		})
	}
}

// BenchmarkClientMemory is the harness's whole per-operation cost (generate,
// deadline, call, classify, record) against kv.Memory from parallel
// clients: the ceiling on what a run can measure.
func BenchmarkClientMemory(b *testing.B) {
	rec := histories.NewRecorder()
	m := kv.NewMemory()
	w := Config{Seed: 1, Keys: 100, ReadFraction: 0.5, AppendFraction: -1, CASFraction: -1}
	keys := KeyNames(w.Keys)
	var worker atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		c := NewClient(m, rec.Session(), NewGenerator(w, keys, int(worker.Add(1))), time.Second, nil)
		ctx := context.Background()
		for pb.Next() {
			c.gen.Observe(c.Do(ctx, c.gen.Next()))
		}
	})
}

func TestPaceCapsTheRate(t *testing.T) {
	w := Config{Seed: 1, Keys: 3, ReadFraction: 0.5, AppendFraction: -1, CASFraction: -1, Rate: 100}
	require.NoError(t, w.Validate())
	require.Equal(t, 40*time.Millisecond, w.Interval(4), "4 clients share 100 ops/s: one each 40 ms")
	require.Zero(t, Config{}.Interval(4), "no rate, no pacing")
	require.ErrorContains(t, Config{Keys: 1, Rate: -1}.Validate(), "rate must not be negative")

	rec := histories.NewRecorder()
	c := NewClient(kv.NewMemory(), rec.Session(), NewGenerator(w, KeyNames(w.Keys), 0), time.Second, nil)
	c.Pace(20 * time.Millisecond)
	stop := make(chan struct{})
	time.AfterFunc(200*time.Millisecond, func() { close(stop) })
	c.Run(stop, context.Background())
	n := c.count.OK.Load()
	// Starts at 0, 20, ..., 180 ms: at most 10 (11 if the stop timer runs
	// late); without pacing the memory store does thousands.
	require.Positive(t, n)
	require.LessOrEqual(t, n, int64(11))
}
