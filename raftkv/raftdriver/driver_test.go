package raftdriver_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/harness"
	"github.com/chainraft/chainraft/internal/proc"
	"github.com/chainraft/chainraft/nemesis"
	"github.com/chainraft/chainraft/raftkv"
	"github.com/chainraft/chainraft/raftkv/raftdriver"
)

// TestRegistered: importing the package registers the driver as "raft",
// with every capability the harness looks for.
func TestRegistered(t *testing.T) {
	d, err := harness.LookupDriver("raft")
	require.NoError(t, err)
	require.IsType(t, &raftdriver.Driver{}, d)
	require.Equal(t, "raft", d.Name())
	for _, ok := range []bool{
		isA[harness.FaultDriver](d), isA[harness.ReadModeDriver](d), isA[harness.BugDriver](d),
		isA[harness.NodeDriver](d), isA[harness.Validator](d),
	} {
		require.True(t, ok)
	}
}

func isA[T any](v any) bool { _, ok := v.(T); return ok }

// TestDeclarations: the roles, kinds, read modes and bugs agree with each
// other and with raftkv, so a schedule built from them is one the cluster
// can take.
func TestDeclarations(t *testing.T) {
	d := raftdriver.New()
	roles := d.Roles()
	require.Equal(t, []string{nemesis.RoleLeader, nemesis.RoleFollower}, []string{roles[0].Name, roles[1].Name})
	require.Equal(t, harness.JobOrderWrites, roles[0].Jobs[0], "the leader orders writes first of all")
	require.Contains(t, roles[0].Jobs, harness.JobAnswerReads)
	require.Equal(t, []string{harness.JobReplicate}, roles[1].Jobs)
	require.NotContains(t, d.FaultKinds(), nemesis.KindZKKill, "raft has no ZooKeeper")
	require.Equal(t, "index", d.ReadModes()[0], "the default read mode comes first")

	var names []string
	for _, b := range d.SeededBugs() {
		names = append(names, b.Name)
		require.Equal(t, "raft", b.Store)
		require.NotEmpty(t, b.Mistake)
		require.NotEmpty(t, b.Faults, "%s: every raft bug needs a fault to show", b.Name)
		for _, f := range b.Faults {
			require.Contains(t, d.FaultKinds(), f.Kind, "%s: a fault the driver takes", b.Name)
			require.True(t, f.Role == nemesis.RoleAll || slices.ContainsFunc(roles, func(r harness.Role) bool { return r.Name == f.Role }),
				"%s: role %q is one of the driver's (or every node)", b.Name, f.Role)
		}
		require.NoError(t, d.Validate(harness.Env{Bug: b.Name}), "%s: the nodes take it", b.Name)
	}
	require.Equal(t, append(raftkv.KnownBugs(), raftdriver.BugNoFsync), names)
}

func TestValidate(t *testing.T) {
	d := raftdriver.New()
	require.NoError(t, d.Validate(harness.Env{}))
	require.NoError(t, d.Validate(harness.Env{ReadMode: "lease"}))
	require.ErrorContains(t, d.Validate(harness.Env{ReadMode: "quorum"}), "--read-mode")
	require.ErrorContains(t, d.Validate(harness.Env{Bug: "lost-write"}), "--bug")
}

// TestNodeMainBadFlags: every mistake on a node's command line is an
// error naming the flag, marked as bad usage, before anything listens.
func TestNodeMainBadFlags(t *testing.T) {
	dir := t.TempDir()
	ok := []string{"--id", "1", "--listen", "127.0.0.1:0", "--peers", "1=127.0.0.1:1", "--data-dir", dir}
	with := func(extra ...string) []string { return append(slices.Clone(ok), extra...) }
	for _, tc := range []struct {
		args []string
		want string
	}{
		{with("--nonsense"), "--nonsense"},
		{with("--id", "x"), "--id"},
		{with("--id", "0"), "--id"},
		{[]string{"--id", "1", "--peers", "1=127.0.0.1:1"}, "--data-dir"},
		{with("--peers", "1=127.0.0.1:1,two=127.0.0.1:2"), "--peers"},
		{with("--peers", "+3"), "--peers"},
		{[]string{"--id", "1", "--peers", "2=127.0.0.1:2", "--data-dir", dir}, "--peers must include this node"},
		{with("--read-mode", "quorum"), "--read-mode"},
		{with("--bug", "lost-write"), "--bug"},
		{with("--snapshot-every", "-1"), "--snapshot-every"},
		{with("stray"), "stray"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := raftdriver.New().NodeMain(ctx, tc.args)
		cancel()
		require.ErrorContains(t, err, tc.want, "args %q", tc.args)
		require.True(t, errors.Is(err, harness.ErrInvalidConfig), "args %q: %v is bad usage", tc.args, err)
	}
}

// TestNodeMainRuns: a node with a good command line serves until its
// context ends, then stops cleanly; run again on the same data directory,
// it recovers its state.
func TestNodeMainRuns(t *testing.T) {
	addrs, err := proc.FreeAddrs(1)
	require.NoError(t, err)
	dir := t.TempDir()
	args := []string{"--id", "1", "--listen", addrs[0], "--peers", "1=" + addrs[0], "--data-dir", dir, "--no-fsync"}
	for range 2 {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- raftdriver.New().NodeMain(ctx, args) }()
		conns, err := raftkv.Dial(context.Background(), raftkv.ClientOptions{Members: []raftkv.Member{{ID: 1, Addr: addrs[0]}}, RequestTimeout: 5 * time.Second})
		require.NoError(t, err)
		cl := conns.NewClient()
		require.NoError(t, cl.Append(context.Background(), "k", "x"))
		conns.Close()
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Fatal("NodeMain did not return after its context ended")
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- raftdriver.New().NodeMain(ctx, args) }()
	defer func() { cancel(); require.NoError(t, <-done) }()
	conns, err := raftkv.Dial(context.Background(), raftkv.ClientOptions{Members: []raftkv.Member{{ID: 1, Addr: addrs[0]}}, RequestTimeout: 5 * time.Second})
	require.NoError(t, err)
	defer conns.Close()
	v, found, err := conns.NewClient().Get(context.Background(), "k")
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, "xx", v, "both lives' writes are kept")
}

// TestStartFailsClean: a cluster whose nodes cannot start is an error, and
// leaves no process behind.
func TestStartFailsClean(t *testing.T) {
	_, err := raftdriver.New().Start(context.Background(), harness.Env{Dir: t.TempDir()})
	require.ErrorContains(t, err, "binary")
	_, err = raftdriver.New().Start(context.Background(), harness.Env{Dir: t.TempDir(), Binary: "/bin/false", Log: testLog{t}})
	require.ErrorContains(t, err, "exited")
	require.Zero(t, proc.Live(), "no node process outlives a failed Start")
	_, err = raftdriver.New().Start(context.Background(), harness.Env{Dir: t.TempDir(), Binary: "/bin/true", ReadMode: "quorum"})
	require.ErrorContains(t, err, "--read-mode")
}
