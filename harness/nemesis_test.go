package harness

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/histories"
	"github.com/chainraft/chainraft/internal/proc"
	"github.com/chainraft/chainraft/nemesis"
)

// The nemesis tests run real clusters of real processes under every fault
// kind for a few seconds each. Budget: about 15 s for raft and 25 s for
// chain (ZooKeeper's start is most of it), 15 s for the interrupted runs;
// -short keeps two kinds per store.

// TestMain kills whatever a test leaves running, also on ^C.
func TestMain(m *testing.M) { os.Exit(proc.RunTests(m)) }

type nemTestLog struct{ t *testing.T }

func (l nemTestLog) Write(p []byte) (int, error) {
	l.t.Helper()
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// runWithNemesis runs store under kinds, one fault per kind, and asserts
// what every nemesis run must show: a linearizable verdict, every
// end-of-run check passed (none skipped but those named in mayskip), and
// for every injected fault a recovery entry for its injection and its heal.
func runWithNemesis(t *testing.T, store string, kinds []string) (*RunResult, []nemesis.Event) {
	interval := time.Second
	cfg := RunConfig{
		Store: store, Name: "nemesis", Out: t.TempDir(),
		// a quiet interval, then per kind a fault of one interval and a
		// healthy interval after it, and two intervals of slack for slow
		// injections (the schedule shifts behind them)
		TimeLimit: time.Duration(2*len(kinds)+3) * interval,
		Clients:   4,
		Workload:  WorkloadConfig{Seed: 7, Keys: 20},
		Cluster: ClusterConfig{
			Nodes: 3, Binary: proc.BuildChainraft(t), RequestTimeout: time.Second,
		},
		CheckBudget: 30 * time.Second,
		Nemesis:     NemesisConfig{Kinds: kinds, Interval: interval},
		Progress:    nemTestLog{t},
	}
	res, err := Run(context.Background(), cfg)
	require.NoError(t, err)
	s := res.Summary
	require.Equal(t, string(histories.VerdictOK), s.Verdict, "run %s", res.Dir)
	require.Empty(t, FailedChecks(s), "run %s", res.Dir)
	var names []string
	for _, c := range s.Checks {
		names = append(names, c.Name)
		require.NotNil(t, c.OK, "check %s was skipped: %s", c.Name, c.Detail)
	}
	require.Equal(t, []string{"healed", "available", "final-write", "final-reads", "replica-digests"}, names)

	events, err := nemesis.ReadEventsFile(filepath.Join(res.Dir, "nemesis.jsonl"))
	require.NoError(t, err)
	injected := map[string]bool{}
	for _, e := range events {
		if e.Event != nemesis.PhaseInject {
			continue
		}
		require.False(t, e.Skipped, "step %d %s skipped: %s", e.Step, e.Fault, e.Error)
		require.Empty(t, e.Error, "step %d %s failed", e.Step, e.Fault)
		injected[e.Fault] = true
		for _, phase := range []string{nemesis.PhaseInject, nemesis.PhaseHeal} {
			i := slices.IndexFunc(s.Recovery, func(r nemesis.Recovery) bool { return r.Step == e.Step && r.Event == phase })
			require.GreaterOrEqual(t, i, 0, "no %s recovery entry for step %d (%s)", phase, e.Step, e.Fault)
			// The final reads and write come after every heal: each event
			// has a first ok read and write after it.
			require.NotNil(t, s.Recovery[i].FirstReadMs, "step %d %s: no first read", e.Step, phase)
			require.NotNil(t, s.Recovery[i].FirstWriteMs, "step %d %s: no first write", e.Step, phase)
		}
	}
	for _, k := range kinds {
		require.True(t, injected[k], "kind %s never injected (events %+v)", k, events)
	}
	require.NotEmpty(t, s.Visualizations, "no timeline shows the faults")
	return res, events
}

func nemesisKinds(full, short []string) []string {
	if testing.Short() {
		return short
	}
	return full
}

func TestNemesisRaftEveryFault(t *testing.T) {
	kinds := nemesisKinds(
		[]string{nemesis.KindKill, nemesis.KindPause, nemesis.KindPartition, nemesis.KindMember, nemesis.KindDelay},
		[]string{nemesis.KindKill, nemesis.KindPartition})
	res, events := runWithNemesis(t, "raft", kinds)
	for _, e := range events {
		if e.Fault == nemesis.KindMember && e.Event == nemesis.PhaseHeal {
			require.Len(t, e.Added, 1, "a raft member heal adds a fresh node id")
			require.NotContains(t, e.Targets, e.Added[0])
		}
	}

	// The same seed gives the same schedule, and replaying the recorded
	// nemesis.jsonl gives it back.
	limit := time.Duration(2*len(kinds)+3) * time.Second
	cfg := RunConfig{Store: "raft", TimeLimit: limit, Nemesis: NemesisConfig{Kinds: kinds, Interval: time.Second}}
	a, err := newNemesis(context.Background(), &cfg, 7)
	require.NoError(t, err)
	b, err := newNemesis(context.Background(), &cfg, 7)
	require.NoError(t, err)
	require.Equal(t, a.steps, b.steps)
	cfg.Nemesis = NemesisConfig{Replay: filepath.Join(res.Dir, "nemesis.jsonl")}
	r, err := newNemesis(context.Background(), &cfg, 99)
	require.NoError(t, err)
	require.Equal(t, a.steps, r.steps)
	c, err := newNemesis(context.Background(), &RunConfig{Store: "raft", TimeLimit: limit, Nemesis: NemesisConfig{Kinds: kinds, Interval: time.Second}}, 8)
	require.NoError(t, err)
	require.NotEqual(t, a.steps, c.steps, "another seed, another schedule")
}

func TestNemesisChainEveryFault(t *testing.T) {
	if _, err := os.Stat("/usr/share/zookeeper"); err != nil {
		t.Skip("ZooKeeper is not installed")
	}
	kinds := nemesisKinds(
		[]string{nemesis.KindKill, nemesis.KindPause, nemesis.KindPartition, nemesis.KindZKPartition, nemesis.KindZKKill, nemesis.KindMember},
		[]string{nemesis.KindKill, nemesis.KindZKPartition})
	runWithNemesis(t, "chain", kinds)
}

// TestNemesisInterruptedRunLeavesNothing interrupts `chainraft run` with
// SIGINT and kills another with SIGKILL, each with faults in force, and
// requires that no process of theirs survives and that the next run in the
// same directory starts clean.
func TestNemesisInterruptedRunLeavesNothing(t *testing.T) {
	bin := proc.BuildChainraft(t)
	out := t.TempDir()
	store := "chain"
	if _, err := os.Stat("/usr/share/zookeeper"); err != nil || testing.Short() {
		store = "raft"
	}
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGKILL} {
		name := "killed-" + strings.ToLower(sig.String()[:4])
		cmd := exec.Command(bin, "run", "--store", store, "--out", out, "--name", name,
			"--time-limit", "60s", "--nemesis", "pause,kill,partition", "--nemesis-interval", "1s", "--clients", "2")
		cmd.Stdout, cmd.Stderr = nemTestLog{t}, nemTestLog{t}
		require.NoError(t, cmd.Start())
		// Wait until a fault is in force: some nemesis.jsonl has a line.
		require.Eventually(t, func() bool {
			ms, _ := filepath.Glob(filepath.Join(out, "*-"+name, "nemesis.jsonl"))
			for _, m := range ms {
				if b, _ := os.ReadFile(m); len(b) > 0 {
					return true
				}
			}
			return false
		}, 40*time.Second, 100*time.Millisecond)
		require.Greater(t, countProcs(t, out), 0, "no node process of the run found")
		require.NoError(t, cmd.Process.Signal(sig))
		_ = cmd.Wait()
		require.Eventually(t, func() bool { return countProcs(t, out) == 0 }, 15*time.Second, 100*time.Millisecond,
			"processes survived %v of the harness", sig)
	}
	res, err := Run(context.Background(), RunConfig{
		Store: "raft", Name: "after", Out: out, TimeLimit: time.Second, Clients: 2,
		Workload: WorkloadConfig{Seed: 1, Keys: 5}, Cluster: ClusterConfig{Binary: bin}, EndChecks: true,
	})
	require.NoError(t, err)
	require.Equal(t, string(histories.VerdictOK), res.Summary.Verdict)
	require.Empty(t, FailedChecks(res.Summary))
}

// countProcs counts the processes whose command line names dir (nodes have
// their data directory there, ZooKeeper servers their zoo.cfg).
func countProcs(t *testing.T, dir string) int {
	out, err := exec.Command("pgrep", "-f", "--", dir).Output()
	if err != nil {
		return 0 // pgrep exits 1 when nothing matches
	}
	n := 0
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" && l != "0" {
			n++
		}
	}
	return n
}
