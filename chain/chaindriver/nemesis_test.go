package chaindriver

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/harness"
	"github.com/chainraft/chainraft/harness/workload"
	"github.com/chainraft/chainraft/histories"
	"github.com/chainraft/chainraft/internal/proc"
	"github.com/chainraft/chainraft/nemesis"
)

// TestNemesisChainEveryFault runs the chain store through harness.Run
// under every fault kind, one fault each (two under -short), and asserts
// what every nemesis run must show: a linearizable verdict, every
// end-of-run check passed (none skipped), and for every injected fault a
// recovery entry with a first ok read and write after its injection and
// its heal. Budget: about 25 s, ZooKeeper's start most of it.
func TestNemesisChainEveryFault(t *testing.T) {
	if _, err := os.Stat("/usr/share/zookeeper"); err != nil {
		t.Skip("ZooKeeper is not installed")
	}
	kinds := []string{nemesis.KindKill, nemesis.KindPause, nemesis.KindPartition, nemesis.KindZKPartition,
		nemesis.KindZKKill, nemesis.KindMember, nemesis.KindDelay}
	if testing.Short() {
		kinds = []string{nemesis.KindKill, nemesis.KindZKPartition}
	}
	interval := time.Second
	res, err := harness.Run(context.Background(), harness.RunConfig{
		Store: Name, Name: "nemesis", Out: t.TempDir(),
		// a quiet interval, then per kind a fault of one interval and a
		// healthy interval after it, and two intervals of slack for slow
		// injections (the schedule shifts behind them)
		TimeLimit: time.Duration(2*len(kinds)+3) * interval,
		Clients:   4,
		Workload:  workload.Config{Seed: 7, Keys: 20},
		Cluster: harness.Env{
			Nodes: 3, Binary: proc.BuildChainraft(t), RequestTimeout: time.Second,
		},
		CheckBudget: 30 * time.Second,
		Nemesis:     harness.NemesisConfig{Kinds: kinds, Interval: interval},
		Progress:    testWriter{t},
	})
	require.NoError(t, err)
	s := res.Summary
	require.Equal(t, string(histories.VerdictOK), s.Verdict, "run %s", res.Dir)
	require.Empty(t, harness.FailedChecks(s), "run %s", res.Dir)
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
		if e.Fault == nemesis.KindMember && e.Event == nemesis.PhaseHeal {
			require.Empty(t, e.Added, "a chain member heal brings the same node back")
		}
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
	require.NoError(t, leftRunning(res.Dir), "a node or ZooKeeper server outlived the run")
}

// leftRunning names a process still running whose command line names dir
// (nodes have their data directory there, ZooKeeper servers their
// zoo.cfg), or returns nil.
func leftRunning(dir string) error {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil // not Linux: nothing to look at
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(b), dir) {
			continue
		}
		// A zombie has an empty cmdline and is already gone.
		return fmt.Errorf("pid %s still running: %s", e.Name(), strings.ReplaceAll(string(b), "\x00", " "))
	}
	return nil
}
