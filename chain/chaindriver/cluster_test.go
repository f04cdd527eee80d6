package chaindriver

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/chain"
	"github.com/chainraft/chainraft/harness"
	"github.com/chainraft/chainraft/histories"
	"github.com/chainraft/chainraft/internal/proc"
	"github.com/chainraft/chainraft/kv"
	"github.com/chainraft/chainraft/nemesis"
)

// The cluster tests run real ZooKeeper and node processes: three nodes,
// three chains of three, started by the driver itself.

func startChainCluster(t *testing.T, bug string) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	d := &Driver{Chains: 3, Replicas: 3}
	c, err := d.StartCluster(ctx, harness.Env{Dir: t.TempDir(), Nodes: 3,
		Bug: bug, Binary: proc.BuildChainraft(t), RequestTimeout: 3 * time.Second, Log: testWriter{t}})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, c.Close()) })
	return c
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func TestChainClusterServesRotatedChains(t *testing.T) {
	c := startChainCluster(t, "")
	heads, tails := map[uint64]bool{}, map[uint64]bool{}
	for ch := 0; ch < c.Chains(); ch++ {
		cfg := c.Config(ch)
		require.Len(t, cfg.Members, 3)
		heads[cfg.Head().ID] = true
		tails[cfg.Tail().ID] = true
	}
	require.Len(t, heads, 3, "every node heads one chain")
	require.Len(t, tails, 3, "every node is the tail of one chain")
	m, err := c.Master()
	require.NoError(t, err)
	require.NotZero(t, m)

	cl, err := c.NewClient()
	require.NoError(t, err)
	ctx := context.Background()
	for i := 0; i < 30; i++ {
		key := fmt.Sprintf("k%d", i%6)
		require.NoError(t, cl.Append(ctx, key, fmt.Sprintf("<%d>", i)))
	}
	v, found, err := cl.Get(ctx, "k0")
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, "<0><6><12><18><24>", v)
	_, found, err = cl.Get(ctx, "absent")
	require.NoError(t, err)
	require.False(t, found)
	ok, err := cl.CAS(ctx, "k1", "<1><7><13><19><25>", "x")
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = cl.CAS(ctx, "k1", "nope", "y")
	require.NoError(t, err)
	require.False(t, ok)
	detail, err := c.CompareReplicas(ctx)
	require.NoError(t, err)
	t.Log(detail)

	// The meters: every node used CPU, and the writes above were passed
	// down the chains.
	cpu := c.NodeCPU()
	require.Len(t, cpu, 3)
	for id, d := range cpu {
		require.Positive(t, d, "node %d CPU", id)
	}
	sent := c.PeerMessagesSent(ctx)
	require.Len(t, sent, 3)
	var total uint64
	for _, n := range sent {
		total += n
	}
	require.GreaterOrEqual(t, total, uint64(2*30), "each append passes two links")

	// The nemesis's view: roles resolve to the nodes holding them now.
	tgt := c.Target(nil)
	require.ElementsMatch(t, []int{1, 2, 3}, tgt.Nodes())
	require.Nil(t, tgt.Network(), "no proxied network")
	for _, tc := range []struct {
		role string
		want uint64
	}{{"head:0", c.Head(0)}, {"middle:1", c.Middle(1)}, {"tail:2", c.Tail(2)}, {"master", m}} {
		ids, err := tgt.Resolve(ctx, tc.role)
		require.NoError(t, err, tc.role)
		require.Equal(t, []int{int(tc.want)}, ids, tc.role)
	}
	ids, err := tgt.Resolve(ctx, "head")
	require.NoError(t, err)
	require.ElementsMatch(t, []int{1, 2, 3}, ids, "every node heads a chain")
	_, err = tgt.Resolve(ctx, "leader")
	require.ErrorIs(t, err, nemesis.ErrUnsupported)
	zk := tgt.ZK()
	require.NotNil(t, zk, "the harness started ZooKeeper")
	require.Equal(t, []int{1}, zk.Servers())
	ids, err = zk.Resolve(ctx, nemesis.RoleZKLeader)
	require.NoError(t, err)
	require.Equal(t, []int{1}, ids, "the standalone server leads")

	require.NoError(t, c.Close())
	require.NoError(t, c.Close(), "Close is idempotent")
	for _, id := range c.Nodes() {
		require.False(t, c.Process(id).Running(), "node %d stopped", id)
	}
}

// chainWorkload runs clients doing appends (unique values), reads and cas
// on a few keys until faults returns, then reads every key once more. It
// returns the history and, per key, the values of acknowledged appends.
func chainWorkload(t *testing.T, c *Cluster, clients int, faults func()) ([]histories.Operation, map[string][]string, map[string]string) {
	rec := histories.NewRecorder()
	// Two keys per chain, so every chain sees traffic whatever the faults target.
	var keys []string
	for ch := 0; ch < c.Chains(); ch++ {
		for i := 0; len(keys) < 2*(ch+1); i++ {
			if k := fmt.Sprintf("k%d", i); chain.ChainOf(k, c.Chains()) == ch && !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var seq atomic.Int64
	var mu sync.Mutex
	var ops []histories.Operation
	acked := map[string][]string{}
	for w := 0; w < clients; w++ {
		cl, err := c.NewClient()
		require.NoError(t, err)
		s := rec.Session()
		rng := rand.New(rand.NewPCG(uint64(w), 7))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				op := histories.Operation{Key: keys[rng.IntN(len(keys))]}
				switch r := rng.IntN(10); {
				case r < 5:
					op.Op = histories.Append
					op.Value = fmt.Sprintf("<%d>", seq.Add(1))
				case r < 9:
					op.Op = histories.Get
				default:
					op.Op = histories.CAS
					op.Expect = "nope"
					op.Value = fmt.Sprintf("<%d>", seq.Add(1))
				}
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				var err error
				s.Begin(op)
				switch op.Op {
				case histories.Append:
					err = cl.Append(ctx, op.Key, op.Value)
				case histories.Get:
					op.Output, op.Found, err = cl.Get(ctx, op.Key)
				case histories.CAS:
					op.Swapped, err = cl.CAS(ctx, op.Key, op.Expect, op.Value)
				}
				cancel()
				switch {
				case err == nil:
					op.Outcome = histories.OK
				case kv.IsDefinite(err):
					op.Outcome = histories.Fail
				default:
					op.Outcome = histories.Info
				}
				if err != nil {
					op.Output, op.Found, op.Swapped, op.Error = "", false, false, err.Error()
				}
				done := s.End(op)
				mu.Lock()
				ops = append(ops, done)
				if done.Outcome == histories.OK && done.Op == histories.Append {
					acked[done.Key] = append(acked[done.Key], done.Value)
				}
				mu.Unlock()
			}
		}()
	}
	faults()
	close(stop)
	wg.Wait()

	cl, err := c.NewClient()
	require.NoError(t, err)
	s := rec.Session()
	final := map[string]string{}
	for _, k := range keys {
		op := histories.Operation{Op: histories.Get, Key: k}
		s.Begin(op)
		op.Output, op.Found, err = cl.Get(context.Background(), k)
		require.NoError(t, err)
		op.Outcome = histories.OK
		ops = append(ops, s.End(op))
		final[k] = op.Output
	}
	counts := map[histories.Outcome]int{}
	for _, o := range ops {
		counts[o.Outcome]++
	}
	t.Logf("history: %d operations %v", len(ops), counts)
	return ops, acked, final
}

// TestChainKillHeadMiddleTail SIGKILLs the head of a chain, then a middle
// node, then the tail, restarting each and waiting for it to rejoin (as the
// tail, then moved back into every chain's rotated order), while clients
// run; the history must be linearizable and every
// acknowledged append must be in the final reads, exactly once.
func TestChainKillHeadMiddleTail(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: real ZooKeeper and node processes")
	}
	c := startChainCluster(t, "")
	ch := 0
	victims := []struct {
		role string
		pick func() uint64
	}{
		{"head", func() uint64 { return c.Head(ch) }},
		{"middle", func() uint64 { return c.Middle(ch) }},
		{"tail", func() uint64 { return c.Tail(ch) }},
	}
	ops, acked, final := chainWorkload(t, c, 6, func() {
		time.Sleep(time.Second)
		for _, v := range victims {
			id := v.pick()
			require.NotZero(t, id, "chain %d has a %s", ch, v.role)
			t.Logf("killing %s of chain %d: node %d", v.role, ch, id)
			require.NoError(t, c.Kill(id))
			// The master splices the node out of every chain once its session expires.
			require.Eventually(t, func() bool {
				for i := 0; i < c.Chains(); i++ {
					for _, m := range c.Config(i).Members {
						if m.ID == id {
							return false
						}
					}
				}
				return true
			}, 20*time.Second, 50*time.Millisecond, "node %d spliced out", id)
			time.Sleep(500 * time.Millisecond)
			require.NoError(t, c.Restart(id))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			require.NoError(t, c.WaitServing(ctx), "node %d rejoined", id)
			cancel()
			require.Eventually(t, c.Rotated, 30*time.Second, 50*time.Millisecond,
				"the chains are back in their rotated order after node %d rejoined", id)
			time.Sleep(time.Second)
		}
	})
	for k, vs := range acked {
		for _, v := range vs {
			require.Equal(t, 1, strings.Count(final[k], v), "acknowledged append %s of %q in %q", v, k, final[k])
		}
	}
	res, err := histories.Check(context.Background(), ops, histories.CheckOptions{Budget: 30 * time.Second})
	require.NoError(t, err)
	require.Equal(t, histories.VerdictOK, res.Verdict, "keys: %+v", res.Keys)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	detail, err := c.CompareReplicas(ctx)
	require.NoError(t, err, "replicas agree after the restarts")
	t.Log(detail)
}

// TestChainPlantedEarlyReplyIsCaught runs the same workload against heads
// that answer writes before the tail applied them: the checker must see it.
func TestChainPlantedEarlyReplyIsCaught(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: real ZooKeeper and node processes")
	}
	c := startChainCluster(t, chain.BugEarlyReply)
	ops, _, _ := chainWorkload(t, c, 8, func() { time.Sleep(4 * time.Second) })
	res, err := histories.Check(context.Background(), ops, histories.CheckOptions{Budget: 30 * time.Second})
	require.NoError(t, err)
	require.Equal(t, histories.VerdictIllegal, res.Verdict)
}

// TestChainPausedTailServesNoStaleRead SIGSTOPs a chain's tail past its
// ZooKeeper session, so the master replaces it while it cannot know, then
// resumes it: it must refuse requests on waking (its lease ran out) and
// rejoin, and the history must stay linearizable.
func TestChainPausedTailServesNoStaleRead(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: real ZooKeeper and node processes")
	}
	c := startChainCluster(t, "")
	ops, acked, final := chainWorkload(t, c, 6, func() {
		time.Sleep(time.Second)
		tail := c.Tail(0)
		t.Logf("pausing tail %d of chain 0", tail)
		require.NoError(t, c.Pause(tail))
		require.Eventually(t, func() bool { return c.Tail(0) != tail }, 20*time.Second, 50*time.Millisecond)
		time.Sleep(time.Second)
		require.NoError(t, c.Resume(tail))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		require.NoError(t, c.WaitServing(ctx), "node %d rejoined", tail)
		time.Sleep(time.Second)
	})
	for k, vs := range acked {
		for _, v := range vs {
			require.Equal(t, 1, strings.Count(final[k], v), "acknowledged append %s of %q in %q", v, k, final[k])
		}
	}
	res, err := histories.Check(context.Background(), ops, histories.CheckOptions{Budget: 30 * time.Second})
	require.NoError(t, err)
	require.Equal(t, histories.VerdictOK, res.Verdict, "keys: %+v", res.Keys)
}

// TestChainServesNothingWithoutZooKeeper kills the (standalone) ZooKeeper
// server during the workload: every node loses its session's connection and
// must stop serving (no operation may succeed while ZooKeeper is down, past
// the lease), then resume once it is back; the history stays linearizable.
func TestChainServesNothingWithoutZooKeeper(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: real ZooKeeper and node processes")
	}
	c := startChainCluster(t, "")
	var down, up time.Duration
	start := time.Now()
	ops, acked, final := chainWorkload(t, c, 6, func() {
		time.Sleep(time.Second)
		require.NoError(t, c.Ensemble().Kill(0))
		down = time.Since(start)
		time.Sleep(3 * time.Second)
		up = time.Since(start)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		require.NoError(t, c.Ensemble().Restart(ctx, 0))
		require.NoError(t, c.WaitServing(ctx))
		time.Sleep(time.Second)
	})
	// The recorder's clock started a moment after start: shift by the
	// difference is unnecessary for this bound, which leaves a margin.
	lease := SessionTimeout * 2 / 3
	served := 0
	for _, o := range ops {
		if o.Outcome == histories.OK && time.Duration(o.Call) > down+lease+100*time.Millisecond && time.Duration(o.Return) < up {
			served++
		}
	}
	require.Zero(t, served, "operations succeeded while ZooKeeper was down")
	for k, vs := range acked {
		for _, v := range vs {
			require.Equal(t, 1, strings.Count(final[k], v), "acknowledged append %s of %q in %q", v, k, final[k])
		}
	}
	res, err := histories.Check(context.Background(), ops, histories.CheckOptions{Budget: 30 * time.Second})
	require.NoError(t, err)
	require.Equal(t, histories.VerdictOK, res.Verdict, "keys: %+v", res.Keys)
}
