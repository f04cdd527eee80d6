package chaindriver

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/harness"
	"github.com/chainraft/chainraft/harness/workload"
	"github.com/chainraft/chainraft/histories"
	"github.com/chainraft/chainraft/internal/proc"
	"github.com/chainraft/chainraft/internal/zkserver"
	"github.com/chainraft/chainraft/nemesis"
	"github.com/chainraft/chainraft/zkrecipes"
)

func requireZooKeeper(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/usr/share/zookeeper"); err != nil {
		t.Skip("ZooKeeper is not installed")
	}
}

func TestRunRoot(t *testing.T) {
	require.Equal(t, "/chainraft/20250101T000000Z-chain-x", runRoot("runs/20250101T000000Z-chain-x"))
	require.Equal(t, "/chainraft/a_b", runRoot("/tmp/a b/"))
	require.Equal(t, "/chainraft/run", runRoot(".."))
}

// zkKiller is the chain driver with a ZooKeeper that dies on its own: its
// only server is SIGKILLed (not through the nemesis) a while after the
// cluster serves.
type zkKiller struct {
	Driver
	after  time.Duration
	killed chan time.Time
}

func (d *zkKiller) Start(ctx context.Context, env harness.Env) (harness.Cluster, error) {
	c, err := d.StartCluster(ctx, env)
	if err != nil {
		return nil, err
	}
	time.AfterFunc(d.after, func() {
		_ = c.Ensemble().Kill(0)
		d.killed <- time.Now()
	})
	return c, nil
}

// TestZooKeeperSIGKILLEndsTheRun: the harness notices a ZooKeeper server
// that died without a zk-kill fault and ends the run as an infrastructure
// failure (exit 4) naming it, within 10 s, instead of failing the store's
// availability check 40 s later; the history up to then is kept and
// checked.
func TestZooKeeperSIGKILLEndsTheRun(t *testing.T) {
	requireZooKeeper(t)
	d := &zkKiller{Driver: Driver{Chains: 3, Replicas: 3}, after: 3 * time.Second, killed: make(chan time.Time, 1)}
	began := time.Now()
	res, err := harness.Run(context.Background(), harness.RunConfig{
		Driver: d, Name: "zk-sigkill", Out: t.TempDir(), TimeLimit: 40 * time.Second, Clients: 4,
		Workload: workload.Config{Seed: 3, Keys: 10},
		Cluster:  harness.Env{Nodes: 3, Binary: proc.BuildChainraft(t), RequestTimeout: time.Second},
		Progress: testWriter{t}, EndChecks: true,
	})
	require.ErrorIs(t, err, harness.ErrInfrastructure)
	require.ErrorContains(t, err, "ZooKeeper server 1")
	require.ErrorContains(t, err, "without a zk-kill fault")
	killedAt := <-d.killed
	require.NotNil(t, res)
	require.Less(t, res.Summary.DurationS, (d.after + 10*time.Second).Seconds(),
		"the workload ran %.1fs; ZooKeeper died %.1fs after the start", res.Summary.DurationS, killedAt.Sub(began).Seconds())
	require.Contains(t, res.Summary.Error, "ZooKeeper server 1")
	require.Equal(t, string(histories.VerdictOK), res.Summary.Verdict, "the history up to the death was checked")
	require.Positive(t, res.Summary.OpsOK)
	require.NoError(t, leftRunning(res.Dir))
}

// TestTwoRunsOnOneExternalZooKeeper: each run keeps its znodes under
// /chainraft/<run id> and removes them at its end, so a second run against
// the same ensemble starts from nothing and passes too.
func TestTwoRunsOnOneExternalZooKeeper(t *testing.T) {
	requireZooKeeper(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ens, err := zkserver.Start(ctx, zkserver.Config{Dir: t.TempDir()})
	require.NoError(t, err)
	defer ens.Close()
	bin := proc.BuildChainraft(t)
	out := t.TempDir()
	for i := 0; i < 2; i++ {
		res, err := harness.Run(context.Background(), harness.RunConfig{
			Driver: &Driver{Chains: 3, Replicas: 3, ZK: ens.ConnectString()}, Name: "external-zk", Out: out,
			TimeLimit: 3 * time.Second, Clients: 2, Workload: workload.Config{Seed: int64(i), Keys: 5},
			Cluster:  harness.Env{Nodes: 3, Binary: bin, RequestTimeout: time.Second},
			Progress: testWriter{t}, EndChecks: true,
		})
		require.NoError(t, err, "run %d", i+1)
		require.Equal(t, string(histories.VerdictOK), res.Summary.Verdict, "run %d", i+1)
		require.Empty(t, harness.FailedChecks(res.Summary), "run %d", i+1)
		conn, _, err := zkrecipes.Connect(ens.Addrs(), 5*time.Second)
		require.NoError(t, err)
		ok, _, err := conn.Exists(runRoot(res.Dir))
		require.NoError(t, err)
		require.False(t, ok, "run %d left %s behind", i+1, runRoot(res.Dir))
		kids, _, err := conn.Children("/chainraft")
		require.NoError(t, err)
		require.Empty(t, kids, "nothing of either run is left")
		conn.Close()
	}
}

// TestCloseStopsNodesWithSIGTERM: every node, the master among them, exits
// cleanly on SIGTERM (the master used to retry its election znode's
// release on a closed connection until the SIGKILL after 5 s), and a
// ZooKeeper kill through the nemesis is no unplanned death.
func TestCloseStopsNodesWithSIGTERM(t *testing.T) {
	requireZooKeeper(t)
	c := startChainCluster(t, "")
	master, err := c.Master()
	require.NoError(t, err)
	require.NoError(t, c.Unplanned())
	zt := c.Target(nil).ZK()
	require.NoError(t, zt.Kill(context.Background(), 1))
	require.NoError(t, c.Unplanned(), "a zk-kill fault is planned")
	require.NoError(t, zt.Restart(context.Background(), 1))
	require.NoError(t, c.Unplanned())

	began := time.Now()
	require.NoError(t, c.Close())
	t.Logf("cluster closed in %v", time.Since(began))
	for _, id := range c.Nodes() {
		require.NoError(t, c.Process(id).ExitErr(), "node %d (master %d) did not exit on SIGTERM", id, master)
	}
}

// TestChainPartitionRecovery is the README's run, shortened: the replayed
// schedule isolates the head at 2 s, a middle node at 10 s and the tail at
// 18 s, each for 6 s (the README's isolates each for 10 s), with their
// ZooKeeper links intact. The nodes' neighbours report
// the cut-off node and the master takes it out of its chains, so writes
// come back within the session timeout plus 1.5 s (3.5 s with the harness's
// 2 s) of each cut, not at its heal; the verdict is linearizable and every
// end-of-run check passes; a cut that waited for its heal would show its
// first write after 6 s. About 35 s.
func TestChainPartitionRecovery(t *testing.T) {
	requireZooKeeper(t)
	if testing.Short() {
		t.Skip("a 26 s run")
	}
	const bound = SessionTimeout + 1500*time.Millisecond
	sched, err := filepath.Abs(filepath.Join("testdata", "isolate-head-middle-tail-short.jsonl"))
	require.NoError(t, err)
	res, err := harness.Run(context.Background(), harness.RunConfig{
		Store: Name, Name: "partition-recovery", Out: t.TempDir(), TimeLimit: 26 * time.Second, Clients: 8,
		Workload:    workload.Config{Seed: 15, Keys: 30, ReadFraction: 0.5, CASFraction: 0.1},
		Cluster:     harness.Env{Nodes: 3, Binary: proc.BuildChainraft(t), RequestTimeout: time.Second},
		CheckBudget: 60 * time.Second,
		Nemesis:     harness.NemesisConfig{Replay: sched},
		Progress:    testWriter{t},
	})
	require.NoError(t, err)
	s := res.Summary
	require.Equal(t, string(histories.VerdictOK), s.Verdict, "run %s", res.Dir)
	require.Empty(t, harness.FailedChecks(s), "run %s", res.Dir)
	for _, c := range s.Checks {
		require.NotNil(t, c.OK, "check %s was skipped: %s", c.Name, c.Detail)
	}
	events, err := nemesis.ReadEventsFile(filepath.Join(res.Dir, "nemesis.jsonl"))
	require.NoError(t, err)
	var roles []string
	for _, e := range events {
		if e.Event != nemesis.PhaseInject {
			continue
		}
		require.False(t, e.Skipped, "step %d skipped: %s", e.Step, e.Error)
		require.Empty(t, e.Error)
		roles = append(roles, e.Role)
		i := slices.IndexFunc(s.Recovery, func(r nemesis.Recovery) bool { return r.Step == e.Step && r.Event == nemesis.PhaseInject })
		require.GreaterOrEqual(t, i, 0, "no recovery entry for step %d", e.Step)
		r := s.Recovery[i]
		require.NotNil(t, r.FirstWriteMs, "step %d (%s): no write after the cut", e.Step, e.Role)
		t.Logf("isolate %s (node %v): first write %.0f ms after the cut", e.Role, r.Targets, *r.FirstWriteMs)
		require.LessOrEqual(t, *r.FirstWriteMs, float64(bound.Milliseconds()),
			"isolate %s: the first write came %.0f ms after the cut (the cut lasts 6 s)", e.Role, *r.FirstWriteMs)
	}
	require.Equal(t, []string{"head", "middle", "tail"}, roles)
	require.NoError(t, leftRunning(res.Dir))
}
