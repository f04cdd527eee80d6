package harness

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/harness/workload"
	"github.com/chainraft/chainraft/histories"
	"github.com/chainraft/chainraft/kv"
)

// staleCluster serves reads from a copy of the data refreshed only every 20
// writes: acknowledged writes are invisible to reads for a while.
type staleCluster struct {
	m      *kv.Memory
	mu     sync.Mutex
	writes int
	old    map[string]string
}

func (c *staleCluster) NewClient() (kv.KV, error) { return paced(staleClient{c}), nil }
func (c *staleCluster) Close() error              { return nil }

func (c *staleCluster) wrote() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes++
	if c.writes%20 == 0 {
		c.old = c.m.Snapshot()
	}
}

type staleClient struct{ c *staleCluster }

func (s staleClient) Get(_ context.Context, key string) (string, bool, error) {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	v, ok := s.c.old[key]
	return v, ok, nil
}

func (s staleClient) Put(ctx context.Context, key, value string) error {
	defer s.c.wrote()
	return s.c.m.Put(ctx, key, value)
}

func (s staleClient) Append(ctx context.Context, key, value string) error {
	defer s.c.wrote()
	return s.c.m.Append(ctx, key, value)
}

func (s staleClient) CAS(ctx context.Context, key, expect, value string) (bool, error) {
	defer s.c.wrote()
	return s.c.m.CAS(ctx, key, expect, value)
}

// lostCluster acknowledges every seventh put without applying it.
type lostCluster struct {
	m    *kv.Memory
	puts atomic.Int64
}

func (c *lostCluster) NewClient() (kv.KV, error) { return paced(lostClient{c.m, c}), nil }
func (c *lostCluster) Close() error              { return nil }

type lostClient struct {
	*kv.Memory
	c *lostCluster
}

func (l lostClient) Put(ctx context.Context, key, value string) error {
	if l.c.puts.Add(1)%7 == 0 {
		return nil
	}
	return l.Memory.Put(ctx, key, value)
}

// trackedCluster is a correct store that remembers whether it and its
// clients were closed, and can be told to panic or to hang.
type trackedCluster struct {
	m       *kv.Memory
	closed  atomic.Bool
	clients atomic.Int64 // open clients
	// panicOnGet makes every get panic in the client goroutine.
	panicOnGet atomic.Bool
	// hang makes every operation ignore its deadline until Close.
	hang     atomic.Bool
	hangOnce sync.Once
	closeCh  chan struct{}
}

var (
	trackedMu sync.Mutex
	tracked   []*trackedCluster
)

func (c *trackedCluster) NewClient() (kv.KV, error) {
	c.clients.Add(1)
	return &trackedClient{Memory: c.m, c: c}, nil
}

func (c *trackedCluster) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.closeChan()
		close(c.closeCh)
	}
	return nil
}

func (c *trackedCluster) closeChan() chan struct{} {
	c.hangOnce.Do(func() { c.closeCh = make(chan struct{}) })
	return c.closeCh
}

type trackedClient struct {
	*kv.Memory
	c      *trackedCluster
	closed bool
}

func (t *trackedClient) Close() error {
	if !t.closed {
		t.closed = true
		t.c.clients.Add(-1)
	}
	return nil
}

func (t *trackedClient) Get(ctx context.Context, key string) (string, bool, error) {
	if t.c.panicOnGet.Load() {
		panic("tracked store: get exploded")
	}
	if t.c.hang.Load() {
		<-t.c.closeChan() // ignores ctx on purpose
		return "", false, errors.New("cluster closed")
	}
	return t.Memory.Get(ctx, key)
}

func (t *trackedClient) LastNode() string { return "n1" }

func lastTracked(t *testing.T) *trackedCluster {
	trackedMu.Lock()
	defer trackedMu.Unlock()
	require.NotEmpty(t, tracked)
	return tracked[len(tracked)-1]
}

func baseConfig(t *testing.T, store string) RunConfig {
	return RunConfig{
		Store:     store,
		Name:      "test",
		Out:       t.TempDir(),
		TimeLimit: 500 * time.Millisecond,
		Clients:   8,
		Workload: workload.Config{
			Seed: 7, Keys: 10, ReadFraction: 0.5, AppendFraction: -1, CASFraction: -1,
		},
		Cluster:     Env{RequestTimeout: time.Second},
		CheckBudget: 30 * time.Second,
	}
}

func TestRunMemoryIsLinearizable(t *testing.T) {
	cfg := baseConfig(t, "memory")
	cfg.TimeLimit = time.Second
	if testing.Short() {
		cfg.TimeLimit = 300 * time.Millisecond
	}
	cfg.Clients = 16
	cfg.Workload.Keys = 50
	var progress bytes.Buffer
	cfg.Progress = &progress
	cfg.ProgressEvery = 200 * time.Millisecond

	res, err := Run(context.Background(), cfg)
	require.NoError(t, err)
	s := res.Summary
	t.Logf("%d operations, %.0f ok ops/s, check %.1fs", s.OpsTotal, s.Throughput, s.CheckSeconds)
	require.Equal(t, "ok", s.Verdict, "the memory store is linearizable")
	require.Empty(t, s.Error)
	require.Empty(t, s.FailingKeys)
	require.Nil(t, s.PeerMessages, "the memory store has no nodes to message")
	require.Nil(t, s.MessagesPerOp)

	// The run directory: named, linked, complete.
	require.True(t, strings.HasSuffix(res.Dir, "-memory-test"), res.Dir)
	require.Regexp(t, `^\d{8}T\d{6}Z-memory-test$`, filepath.Base(res.Dir))
	link, err := os.Readlink(filepath.Join(cfg.Out, "latest"))
	require.NoError(t, err)
	require.Equal(t, filepath.Base(res.Dir), link)
	for _, f := range []string{"history.jsonl", "summary.json", "harness.log"} {
		require.FileExists(t, filepath.Join(res.Dir, f))
	}

	// The summary on disk is the one returned, and it is sane.
	onDisk, err := ReadSummary(filepath.Join(res.Dir, "summary.json"))
	require.NoError(t, err)
	require.Equal(t, s.OpsTotal, onDisk.OpsTotal)
	require.Equal(t, "memory", onDisk.Store)
	require.Equal(t, int64(7), onDisk.Seed)
	require.Equal(t, 16, onDisk.Clients)
	require.Equal(t, 50, onDisk.Keys)
	require.Positive(t, s.OpsOK)
	require.Equal(t, s.OpsTotal, s.OpsOK+s.OpsFail+s.OpsInfo)
	require.Zero(t, s.OpsInfo, "nothing times out against memory")
	require.InDelta(t, cfg.TimeLimit.Seconds(), s.DurationS, 0.5)
	require.InDelta(t, float64(s.OpsOK)/s.DurationS, s.Throughput, 1e-6)
	for _, k := range []string{"get", "put", "append", "cas", "all"} {
		l, ok := s.Latency[k]
		require.True(t, ok, "latency of %s", k)
		require.Positive(t, l.Count)
		require.LessOrEqual(t, l.P50MS, l.P99MS)
		require.LessOrEqual(t, l.P99MS, l.P999MS)
		require.LessOrEqual(t, l.P999MS, l.MaxMS)
	}
	var byOp float64
	for _, v := range s.ThroughputByOp {
		byOp += v
	}
	require.InDelta(t, s.Throughput, byOp, 1e-6*s.Throughput)
	require.InDelta(t, 0.5, float64(s.OpsByKind["get"]["ok"])/float64(s.OpsOK), 0.05)

	// The history on disk is every operation, readable, and did real work:
	// some cas swapped, some reads found what was written.
	ops, err := histories.ReadFile(filepath.Join(res.Dir, "history.jsonl"))
	require.NoError(t, err)
	require.Len(t, ops, s.OpsTotal)
	var swapped, found int
	for _, op := range ops {
		if op.Op == histories.CAS && op.Swapped {
			swapped++
		}
		if op.Op == histories.Get && op.Found {
			found++
		}
	}
	require.Positive(t, swapped, "a cas expects the last value seen, so some swap")
	require.Positive(t, found)

	require.Contains(t, progress.String(), "ops/s")
}

// TestRunCatchesBrokenStores runs stores that lie and requires the verdict
// illegal, with the failing keys named and drawn.
func TestRunCatchesBrokenStores(t *testing.T) {
	for _, store := range []string{"test-stale", "test-lost"} {
		t.Run(store, func(t *testing.T) {
			cfg := baseConfig(t, store)
			cfg.Workload.Keys = 5
			res, err := Run(context.Background(), cfg)
			require.NoError(t, err)
			s := res.Summary
			require.Equal(t, "illegal", s.Verdict)
			require.NotEmpty(t, s.FailingKeys)
			require.NotEmpty(t, s.KeyResults)
			var illegal int
			for _, k := range s.KeyResults {
				if k.Verdict == "illegal" {
					illegal++
					require.NotEmpty(t, k.Visualization)
					require.FileExists(t, filepath.Join(res.Dir, k.Visualization))
				}
			}
			require.Positive(t, illegal)
		})
	}
}

func TestRunInterruptClosesEverything(t *testing.T) {
	before := runtime.NumGoroutine()
	cfg := baseConfig(t, "test-tracked")
	cfg.TimeLimit = time.Minute
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)

	began := time.Now()
	res, err := Run(ctx, cfg)
	require.ErrorIs(t, err, ErrInterrupted)
	require.Less(t, time.Since(began), 10*time.Second, "an interrupt ends the run promptly")

	c := lastTracked(t)
	require.True(t, c.closed.Load(), "cluster closed")
	require.Zero(t, c.clients.Load(), "every client closed")
	require.NotNil(t, res)
	require.Equal(t, "interrupted", res.Summary.Error)
	require.Equal(t, "unknown", res.Summary.Verdict, "an unchecked run is never ok")
	require.Positive(t, res.Summary.OpsTotal)
	ops, err := histories.ReadFile(filepath.Join(res.Dir, "history.jsonl"))
	require.NoError(t, err)
	require.Len(t, ops, res.Summary.OpsTotal, "what was recorded is written")
	onDisk, err := ReadSummary(filepath.Join(res.Dir, "summary.json"))
	require.NoError(t, err)
	require.Equal(t, "interrupted", onDisk.Error)

	require.Eventually(t, func() bool { return runtime.NumGoroutine() <= before+1 }, 5*time.Second, 50*time.Millisecond,
		"goroutines left running: %d, was %d", runtime.NumGoroutine(), before)
}

func TestRunClientPanicClosesCluster(t *testing.T) {
	cfg := baseConfig(t, "test-tracked")
	cfg.TimeLimit = 10 * time.Second
	cfg.Sidecars = []Sidecar{sidecarFunc(func(ctx context.Context, env SidecarEnv) error {
		// Arm the panic once the workload is running.
		env.Cluster.(*trackedCluster).panicOnGet.Store(true)
		<-ctx.Done()
		return nil
	})}
	res, err := Run(context.Background(), cfg)
	require.Error(t, err)
	require.Contains(t, err.Error(), "get exploded")
	require.True(t, lastTracked(t).closed.Load())
	require.Contains(t, res.Summary.Error, "panic")
	require.Equal(t, "unknown", res.Summary.Verdict)
}

func TestRunStuckClientIsInfo(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out the stop grace period")
	}
	cfg := baseConfig(t, "test-tracked")
	cfg.TimeLimit = 200 * time.Millisecond
	cfg.Clients = 2
	cfg.Workload.ReadFraction = 1
	cfg.Cluster.RequestTimeout = 100 * time.Millisecond
	cfg.Sidecars = []Sidecar{sidecarFunc(func(ctx context.Context, env SidecarEnv) error {
		env.Cluster.(*trackedCluster).hang.Store(true)
		<-ctx.Done()
		return nil
	})}
	res, err := Run(context.Background(), cfg)
	require.NoError(t, err, "closing the cluster frees the stuck clients")
	require.True(t, lastTracked(t).closed.Load())
	ops, err := histories.ReadFile(filepath.Join(res.Dir, "history.jsonl"))
	require.NoError(t, err)
	last := ops[len(ops)-1]
	require.Equal(t, histories.Info, last.Outcome, "a get stuck past its deadline is unknown")
	require.Equal(t, "ok", res.Summary.Verdict, "info reads have no effect to check")
}

func TestRunStartFailure(t *testing.T) {
	cfg := baseConfig(t, "test-fail-start")
	res, err := Run(context.Background(), cfg)
	require.Error(t, err)
	require.Contains(t, err.Error(), "node 2 would not start")
	require.NotNil(t, res)
	s, err := ReadSummary(filepath.Join(res.Dir, "summary.json"))
	require.NoError(t, err)
	require.Contains(t, s.Error, "node 2 would not start")
	require.Equal(t, "unknown", s.Verdict)
}

func TestRunRejectsBadConfig(t *testing.T) {
	for name, mutate := range map[string]func(*RunConfig){
		"store":    func(c *RunConfig) { c.Store = "nope" },
		"clients":  func(c *RunConfig) { c.Clients = 0 },
		"keys":     func(c *RunConfig) { c.Workload.Keys = 0 },
		"fraction": func(c *RunConfig) { c.Workload.ReadFraction = 1.5 },
		"sum":      func(c *RunConfig) { c.Workload.ReadFraction, c.Workload.CASFraction = 0.9, 0.5 },
		"name":     func(c *RunConfig) { c.Name = "../x" },
		"time":     func(c *RunConfig) { c.TimeLimit = 0 },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := baseConfig(t, "memory")
			mutate(&cfg)
			res, err := Run(context.Background(), cfg)
			require.ErrorIs(t, err, ErrInvalidConfig)
			require.Nil(t, res)
			entries, err := os.ReadDir(cfg.Out)
			require.NoError(t, err)
			require.Empty(t, entries, "a refused run leaves no directory")
		})
	}
}

func TestRunDirsAndLatest(t *testing.T) {
	out := t.TempDir()
	at := time.Date(2026, 11, 26, 18, 45, 0, 0, time.UTC)
	a, err := makeRunDir(out, at, "raft", "x")
	require.NoError(t, err)
	b, err := makeRunDir(out, at, "raft", "x")
	require.NoError(t, err)
	require.Equal(t, filepath.Join(out, "20261126T184500Z-raft-x"), a)
	require.NotEqual(t, a, b, "a second run in the same second gets its own directory")

	require.NoError(t, linkLatest(out, a))
	require.NoError(t, linkLatest(out, b))
	link, err := os.Readlink(filepath.Join(out, "latest"))
	require.NoError(t, err)
	require.Equal(t, filepath.Base(b), link)
	entries, err := os.ReadDir(out)
	require.NoError(t, err)
	require.Len(t, entries, 3, "no temporary links left behind")
}

type sidecarFunc func(ctx context.Context, env SidecarEnv) error

func (f sidecarFunc) Run(ctx context.Context, env SidecarEnv) error       { return f(ctx, env) }
func (f sidecarFunc) Finish(*Summary, *RunHistory) []histories.Annotation { return nil }
