package raftdriver_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/harness"
	"github.com/chainraft/chainraft/histories"
	"github.com/chainraft/chainraft/internal/proc"
	"github.com/chainraft/chainraft/kv"
	"github.com/chainraft/chainraft/raftkv/raftdriver"
)

// TestClusterLeaderKill runs three real node processes under an
// append-and-read workload, SIGKILLs the leader, restarts it, and checks
// the history for linearizability and that every acknowledged append is in
// the final value exactly once (no loss, no double apply of a retry).
func TestClusterLeaderKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node processes for ~8s")
	}
	runFaults(t, func(ctx context.Context, c *raftdriver.Cluster) {
		time.Sleep(time.Second)
		old, err := c.Leader(ctx)
		require.NoError(t, err)
		cpuBefore := c.NodeCPU()[old]
		require.Positive(t, cpuBefore, "the leader has worked")
		require.NoError(t, c.Kill(old))
		t.Logf("killed leader %d", old)
		defer func() {
			require.GreaterOrEqual(t, c.NodeCPU()[old], cpuBefore,
				"the restarted leader's CPU time still counts its first life")
		}()
		require.Eventually(t, func() bool {
			now, err := c.Leader(ctx)
			return err == nil && now != old
		}, 10*time.Second, 50*time.Millisecond, "a new leader is elected")
		time.Sleep(500 * time.Millisecond)
		require.NoError(t, c.Restart(old))
		time.Sleep(1500 * time.Millisecond)
	})
}

// TestClusterRepeatedFaults SIGKILLs or SIGSTOPs a node (the leader every
// other time) at arbitrary moments of a busy workload, restarting or
// resuming it shortly after: every crash must leave a data directory the
// node restarts from, no acknowledged write may be lost, and a paused
// leader that wakes up must not serve a stale read.
func TestClusterRepeatedFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node processes for ~10s")
	}
	runFaults(t, func(ctx context.Context, c *raftdriver.Cluster) {
		for round := range 4 {
			time.Sleep(time.Duration(500+rand.IntN(1000)) * time.Millisecond)
			victim := c.Nodes()[rand.IntN(len(c.Nodes()))]
			if round%2 == 0 {
				if l, err := c.Leader(ctx); err == nil {
					victim = l
				}
			}
			if round%4 < 2 {
				require.NoError(t, c.Kill(victim))
				time.Sleep(time.Duration(200+rand.IntN(800)) * time.Millisecond)
				require.NoError(t, c.Restart(victim))
				t.Logf("round %d: killed and restarted node %d", round, victim)
			} else {
				require.NoError(t, c.Pause(victim))
				time.Sleep(time.Duration(1000+rand.IntN(1500)) * time.Millisecond)
				require.NoError(t, c.Resume(victim))
				t.Logf("round %d: paused and resumed node %d", round, victim)
			}
		}
		time.Sleep(1500 * time.Millisecond)
		for _, id := range c.Nodes() {
			require.True(t, c.Process(id).Running(), "node %d died after a restart: see its log", id)
		}
	})
}

// startCluster starts a cluster with the driver directly (not through the
// harness's registry), for the tests that reach past harness.Cluster.
func startCluster(t *testing.T, ctx context.Context, env harness.Env) *raftdriver.Cluster {
	t.Helper()
	env.Dir, env.Binary, env.Log = t.TempDir(), proc.BuildChainraft(t), testLog{t}
	c, err := raftdriver.New().StartCluster(ctx, env)
	require.NoError(t, err)
	return c
}

// runFaults starts a 3-node cluster, runs 6 append/get clients while
// faults runs, then checks the history and the final values.
func runFaults(t *testing.T, faults func(context.Context, *raftdriver.Cluster)) {
	ctx := context.Background()
	c := startCluster(t, ctx, harness.Env{Nodes: 3, RequestTimeout: 2 * time.Second})
	defer func() {
		require.NoError(t, c.Close())
		require.NoError(t, c.Close(), "Close is idempotent")
		for _, id := range c.Nodes() {
			require.False(t, c.Process(id).Running(), "node %d outlived Close", id)
		}
	}()

	msgBase := c.PeerMessagesSent(ctx)
	require.Len(t, msgBase, 3, "every node reports its peer message count")

	rec := histories.NewRecorder()
	keys := []string{"k0", "k1", "k2"}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 6 {
		store, err := c.NewClient()
		require.NoError(t, err)
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := rec.Session()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				op := histories.Operation{Key: keys[(i+n)%len(keys)]}
				if n%3 == 2 {
					op.Op = histories.Get
				} else {
					op.Op, op.Value = histories.Append, fmt.Sprintf("c%d-%d;", i, n)
				}
				record(ctx, s, store, op)
			}
		}()
	}
	func() {
		defer func() { close(stop); wg.Wait() }()
		faults(ctx, c)
	}()

	msgEnd := c.PeerMessagesSent(ctx)
	var sent uint64
	for id, n := range msgEnd {
		if b := msgBase[id]; n >= b {
			sent += n - b
		} else {
			sent += n // restarted: counting again from zero
		}
	}

	// Final reads, recorded too, through a fresh client.
	store, err := c.NewClient()
	require.NoError(t, err)
	final := map[string]string{}
	s := rec.Session()
	for _, k := range keys {
		got := record(ctx, s, store, histories.Operation{Op: histories.Get, Key: k})
		require.Equal(t, histories.OK, got.Outcome, "final read of %s: %s", k, got.Error)
		final[k] = got.Output
	}

	ops := rec.Operations()
	acked := 0
	counts := map[histories.Outcome]int{}
	for _, op := range ops {
		counts[op.Outcome]++
		if op.Op != histories.Append {
			continue
		}
		n := strings.Count(final[op.Key], op.Value)
		require.LessOrEqual(t, n, 1, "append %q applied twice", op.Value)
		switch op.Outcome {
		case histories.OK:
			acked++
			require.Equal(t, 1, n, "acknowledged append %q to %s lost", op.Value, op.Key)
		case histories.Fail:
			require.Zero(t, n, "append %q reported as certainly failed took effect", op.Value)
		}
	}
	require.Greater(t, acked, 100, "the workload made progress")
	okOps := counts[histories.OK]
	t.Logf("%d peer messages for %d ok operations: %.2f per op", sent, okOps, float64(sent)/float64(okOps))
	require.Greater(t, float64(sent)/float64(okOps), 0.0, "nodes count the messages they send each other")

	res, err := histories.Check(ctx, ops, histories.CheckOptions{Budget: 30 * time.Second})
	require.NoError(t, err)
	require.Equal(t, histories.VerdictOK, res.Verdict)
	// A second opinion from code that shares none of Check's pruning: the
	// verdict of a real run must not depend on the checker's cleverness.
	ref, err := histories.CheckReference(ctx, ops, 60*time.Second)
	require.NoError(t, err)
	if ref == histories.VerdictUnknown {
		t.Logf("reference checker: unknown within its budget")
	} else {
		require.Equal(t, res.Verdict, ref, "the reference checker disagrees with Check")
	}

	// Every node catches up with the leader's commit.
	lead, err := c.Leader(ctx)
	require.NoError(t, err)
	ls, err := c.NodeStatus(ctx, lead)
	require.NoError(t, err)
	for _, id := range c.Nodes() {
		require.Eventually(t, func() bool {
			st, err := c.NodeStatus(ctx, id)
			return err == nil && st.GetApplied() >= ls.GetCommit()
		}, 10*time.Second, 50*time.Millisecond, "node %d catches up to %d", id, ls.GetCommit())
	}
	t.Logf("%d operations %v, %d acknowledged appends", len(ops), counts, acked)
}

func record(ctx context.Context, s *histories.Session, store kv.KV, op histories.Operation) histories.Operation {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	s.Begin(op)
	var err error
	switch op.Op {
	case histories.Get:
		op.Output, op.Found, err = store.Get(ctx, op.Key)
	case histories.Append:
		err = store.Append(ctx, op.Key, op.Value)
	}
	switch {
	case err == nil:
		op.Outcome = histories.OK
	case kv.IsDefinite(err):
		op.Outcome, op.Output, op.Found = histories.Fail, "", false
	default:
		op.Outcome, op.Output, op.Found = histories.Info, "", false
	}
	if err != nil {
		op.Error = err.Error()
	}
	return s.End(op)
}

// TestClusterMembership adds a node, removes the leader, and checks the
// cluster keeps serving with every write kept and that ids are not reused.
func TestClusterMembership(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := startCluster(t, ctx, harness.Env{Nodes: 3})
	defer c.Close()
	store, err := c.NewClient()
	require.NoError(t, err)
	require.NoError(t, store.Put(ctx, "k", "1"))

	id, err := c.AddNode(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(4), id)
	require.NoError(t, store.Append(ctx, "k", "2"))
	require.Eventually(t, func() bool {
		st, err := c.NodeStatus(ctx, id)
		return err == nil && st.GetApplied() > 0 && len(st.GetMembers()) == 4
	}, 20*time.Second, 100*time.Millisecond, "the new node catches up and learns the members")

	lead, err := c.Leader(ctx)
	require.NoError(t, err)
	require.NoError(t, c.RemoveNode(ctx, lead))
	require.NoError(t, store.Append(ctx, "k", "3"), "the cluster serves after its leader was removed")
	v, found, err := store.Get(ctx, "k")
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, "123", v)
	now, err := c.Leader(ctx)
	require.NoError(t, err)
	require.NotEqual(t, lead, now)
	st, err := c.NodeStatus(ctx, now)
	require.NoError(t, err)
	require.Len(t, st.GetMembers(), 3)

	next, err := c.AddNode(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(5), next, "ids are never reused")
}

// TestClusterNodeCPUs starts nodes under a CPU quota: each node process is
// in a cgroup of its own.
func TestClusterNodeCPUs(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node processes")
	}
	if err := proc.CheckCPULimit(); err != nil {
		t.Skipf("this machine cannot run the test: %v", err)
	}
	ctx := context.Background()
	c := startCluster(t, ctx, harness.Env{Nodes: 3, NodeCPUs: 0.5, RequestTimeout: 2 * time.Second})
	defer func() { require.NoError(t, c.Close()) }()
	groups := map[string]bool{}
	for _, id := range c.Nodes() {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", c.Process(id).Pid()))
		require.NoError(t, err)
		var group string
		for _, line := range strings.Split(string(b), "\n") {
			if i := strings.Index(line, "/chainraft/"); i >= 0 {
				group = line[i:]
			}
		}
		require.NotEmpty(t, group, "node %d is in no chainraft cgroup: %s", id, b)
		groups[group] = true
	}
	require.Len(t, groups, 3, "one cgroup per node")
}

// TestClusterLeaseReads: --read-mode reaches the nodes, and a lease-read
// cluster serves reads of its writes.
func TestClusterLeaseReads(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := startCluster(t, ctx, harness.Env{Nodes: 3, ReadMode: raftdriver.ReadModeLease, NoFsync: true})
	defer func() { require.NoError(t, c.Close()) }()
	store, err := c.NewClient()
	require.NoError(t, err)
	require.NoError(t, store.Put(ctx, "k", "v"))
	v, found, err := store.Get(ctx, "k")
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, "v", v)
	for _, id := range c.Nodes() {
		require.Contains(t, c.Process(id).Spec().Args, "lease", "node %d runs with --read-mode lease", id)
	}
}
