package raftdriver_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/harness"
	"github.com/chainraft/chainraft/harness/workload"
	"github.com/chainraft/chainraft/histories"
	"github.com/chainraft/chainraft/internal/powerfs"
	"github.com/chainraft/chainraft/internal/proc"
	"github.com/chainraft/chainraft/nemesis"
	"github.com/chainraft/chainraft/raftkv/raftdriver"
)

// TestNemesisEveryFault runs a raft cluster of real processes through
// harness.Run under every fault kind the driver declares, one fault per
// kind (two kinds with -short), and asserts what every nemesis run must
// show: a linearizable verdict, every end-of-run check passed (none
// skipped), a recovery entry with a first ok read and write for every
// injection and heal, a fresh node id for every member heal, and a
// schedule that the seed determines and the recorded nemesis.jsonl gives
// back. Budget: about 15 s.
func TestNemesisEveryFault(t *testing.T) {
	kinds := []string{nemesis.KindKill, nemesis.KindPause, nemesis.KindPartition, nemesis.KindMember, nemesis.KindDelay, nemesis.KindPower}
	if powerfs.Available() != nil {
		kinds = kinds[:len(kinds)-1]
	}
	if testing.Short() {
		kinds = []string{nemesis.KindKill, nemesis.KindPartition}
	}
	// Clock faults need hosts: a correct raft store under them is the
	// clean run of chainrafttest's wall-lease detection (netns hosts).
	require.ElementsMatch(t, raftdriver.New().FaultKinds(), []string{nemesis.KindKill, nemesis.KindPause, nemesis.KindPartition, nemesis.KindMember, nemesis.KindDelay, nemesis.KindPower, nemesis.KindClock},
		"the test covers every kind the driver declares but clock")
	interval := time.Second
	// a quiet interval, then per kind a fault of one interval and a healthy
	// interval after it, and two intervals of slack for slow injections
	// (the schedule shifts behind them)
	limit := time.Duration(2*len(kinds)+3) * interval
	const seed = 7
	res, err := harness.Run(context.Background(), harness.RunConfig{
		Store: raftdriver.Name, Name: "nemesis", Out: t.TempDir(),
		TimeLimit: limit,
		Clients:   4,
		Workload:  workload.Config{Seed: seed, Keys: 20},
		Cluster: harness.Env{
			Nodes: 3, Binary: proc.BuildChainraft(t), RequestTimeout: time.Second,
		},
		CheckBudget: 30 * time.Second,
		Nemesis:     harness.NemesisConfig{Kinds: kinds, Interval: interval},
		Progress:    testLog{t},
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
			require.Len(t, e.Added, 1, "a raft member heal adds a fresh node id")
			require.NotContains(t, e.Targets, e.Added[0])
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

	// The same seed gives the same schedule, and replaying the recorded
	// nemesis.jsonl gives it back.
	var roles []string
	for _, r := range raftdriver.New().Roles() {
		roles = append(roles, r.Name)
	}
	gen := func(seed int64) []nemesis.Step {
		steps, err := nemesis.Generate(seed, nemesis.ScheduleOptions{Kinds: kinds, Interval: interval, Total: limit, Roles: roles})
		require.NoError(t, err)
		return steps
	}
	a, b := gen(seed), gen(seed)
	require.Equal(t, a, b)
	r, err := nemesis.Replay(events)
	require.NoError(t, err)
	// A late injection (a member change waits for its conf change)
	// shifts the rest of the schedule, so the seed's last step may fall
	// past the end; every step that ran is the seed's, in order.
	require.GreaterOrEqual(t, len(r), len(kinds), "a step per kind ran")
	require.LessOrEqual(t, len(r), len(a))
	require.Equal(t, a[:len(r)], r, "the run's schedule is the seed's, and its nemesis.jsonl replays it")
	require.NotEqual(t, a, gen(seed+1), "another seed, another schedule")
}
