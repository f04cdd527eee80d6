package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/harness"
	"github.com/chainraft/chainraft/kv"
	"github.com/chainraft/chainraft/nemesis"
)

// cmdtest-lost acknowledges every fifth put without applying it: a store
// the run must judge not linearizable (exit 1).
func init() { harness.RegisterDriver(lostDriver{}) }

type lostDriver struct{}

func (lostDriver) Name() string { return "cmdtest-lost" }
func (lostDriver) Start(context.Context, harness.Env) (harness.Cluster, error) {
	return &lostStore{m: kv.NewMemory()}, nil
}

type lostStore struct {
	m    *kv.Memory
	mu   sync.Mutex
	puts int
}

func (l *lostStore) NewClient() (kv.KV, error) { return lostClient{l.m, l}, nil }
func (l *lostStore) Close() error              { return nil }

type lostClient struct {
	*kv.Memory
	l *lostStore
}

func (c lostClient) Put(ctx context.Context, key, value string) error {
	c.l.mu.Lock()
	c.l.puts++
	lost := c.l.puts%5 == 0
	c.l.mu.Unlock()
	if lost {
		return nil
	}
	return c.Memory.Put(ctx, key, value)
}

// captureStderr runs f and returns what it wrote to os.Stderr, where
// execute reports errors.
func captureStderr(t *testing.T, f func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	require.NoError(t, err)
	old := os.Stderr
	os.Stderr = w
	done := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		done <- string(b)
	}()
	defer func() { os.Stderr = old }()
	f()
	w.Close()
	return <-done
}

func TestRunMemoryExitsOK(t *testing.T) {
	out := t.TempDir()
	code := execute([]string{"run", "--store", "memory", "--time-limit", "300ms", "--clients", "4", "--keys", "10", "--rate", "8000",
		"--out", out, "--name", "cmd", "--quiet"})
	require.Equal(t, exitOK, code)
	s, err := harness.ReadSummary(filepath.Join(out, "latest", "summary.json"))
	require.NoError(t, err)
	require.Equal(t, "ok", s.Verdict)
	require.Equal(t, "memory", s.Store)
	require.Equal(t, 4, s.Clients)
	require.Equal(t, 10, s.Keys)
	require.Positive(t, s.OpsOK)
	require.Contains(t, strings.Join(s.Command, " "), "chainraft")
}

func TestRunBrokenStoreExitsIllegal(t *testing.T) {
	out := t.TempDir()
	code := execute([]string{"run", "--store", "cmdtest-lost", "--time-limit", "300ms", "--clients", "4", "--keys", "3", "--rate", "8000",
		"--out", out, "--quiet"})
	require.Equal(t, exitIllegal, code)
	s, err := harness.ReadSummary(filepath.Join(out, "latest", "summary.json"))
	require.NoError(t, err)
	require.Equal(t, "illegal", s.Verdict)
	require.NotEmpty(t, s.FailingKeys)
}

// tailSchedule is a recorded schedule that kills a chain tail.
func tailSchedule(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "nemesis.jsonl")
	require.NoError(t, harness.WriteSchedule(path, []nemesis.Step{
		{ID: 1, At: time.Second, Duration: time.Second, Fault: nemesis.Fault{Kind: nemesis.KindKill, Role: nemesis.RoleTail}},
	}))
	return path
}

func TestRunUsageErrors(t *testing.T) {
	tcs := []struct {
		args []string
		want string
	}{
		{[]string{"--clients", "0"}, "--clients"},
		{[]string{"--keys", "-1"}, "--keys"},
		{[]string{"--read-fraction", "1.5"}, "--read-fraction"},
		{[]string{"--store", "nope"}, "--store"},
		{[]string{"--time-limit", "0s"}, "--time-limit"},
		{[]string{"--request-timeout", "0s"}, "--request-timeout"},
		{[]string{"--zk-servers", "2", "--store", "chain"}, "--zk-servers"},
		{[]string{"--read-mode", "fast"}, "--read-mode"},
		{[]string{"--read-mode", "fast", "--store", "raft"}, "index, lease"},
		{[]string{"--store", "raft", "--nemesis", "zk-kill"}, "cannot take zk-kill faults"},
		{[]string{"--store", "raft", "--replay", tailSchedule(t)}, `the raft store has no role "tail"`},
		{[]string{"--store", "nosuch"}, "(known: chain, cmdtest-lost, "},
		{[]string{"--node-cpus", "-1", "--store", "raft"}, "--node-cpus must not be negative"},
		{[]string{"--node-cpus", "0.5"}, "the memory store has no node processes"},
		{[]string{"--name", "a/b"}, "name"},
		{[]string{"--no-such-flag"}, "no-such-flag"},
		{[]string{"extra-arg"}, "extra-arg"},
	}
	for _, tc := range tcs {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out := t.TempDir()
			var code int
			msg := captureStderr(t, func() {
				code = execute(append([]string{"run", "--out", out, "--time-limit", "100ms"}, tc.args...))
			})
			require.Equal(t, exitUsage, code, msg)
			require.Contains(t, msg, tc.want)
			entries, err := os.ReadDir(out)
			require.NoError(t, err)
			require.Empty(t, entries, "bad usage starts nothing")
		})
	}
}
