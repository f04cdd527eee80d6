package harness

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/harness/workload"
	"github.com/chainraft/chainraft/nemesis"
)

func TestLookupBug(t *testing.T) {
	b, err := LookupBug(leaderDriver, "lost-ack")
	require.NoError(t, err)
	require.Equal(t, "kill", b.Kinds())
	require.Equal(t, "test-leader", b.Store, "a bug carries its store's name")
	_, err = LookupBug(leaderDriver, "head-read")
	require.ErrorIs(t, err, ErrInvalidConfig, "another store's bug is not this store's")
	require.Contains(t, err.Error(), "lost-ack, quiet", "the error lists the store's bugs")
	mem, err := LookupDriver("memory")
	require.NoError(t, err)
	_, err = LookupBug(mem, "lost-ack")
	require.ErrorIs(t, err, ErrInvalidConfig)
	require.Contains(t, err.Error(), "has no seeded bugs")
	require.Equal(t, []string{"lost-ack", "quiet"}, BugNames("test-leader"))
	require.Empty(t, BugNames("test-chain"))
}

func TestBugStepsStayInTheRun(t *testing.T) {
	staggered := SeededBug{Name: "staggered", Faults: []nemesis.Fault{
		{Kind: nemesis.KindPartition, Shape: nemesis.ShapeIsolate, Role: "leader"},
		{Kind: nemesis.KindPause, Role: "leader"},
	}, Stagger: 2 * time.Second, Duration: 4 * time.Second}
	for _, b := range append(SeededBugs(), staggered) {
		steps := b.Steps(7, 8*time.Second, time.Second, 2*time.Second)
		if len(b.Faults) == 0 {
			require.Empty(t, steps, b.Name)
			continue
		}
		require.NotEmpty(t, steps, b.Name)
		for _, s := range steps {
			require.LessOrEqual(t, s.At+s.Duration, 8*time.Second, "%s step %d heals by the end", b.Name, s.ID)
			require.GreaterOrEqual(t, s.At, 2*time.Second, "%s starts after a quiet period", b.Name)
			require.NoError(t, s.Fault.Validate(), b.Name)
		}
		require.Equal(t, steps, b.Steps(7, 8*time.Second, time.Second, 2*time.Second), "a seed gives one schedule")
	}
	lr := staggered
	steps := lr.Steps(1, 8*time.Second, time.Second, 2*time.Second)
	require.Len(t, steps, 2)
	require.Equal(t, nemesis.KindPartition, steps[0].Fault.Kind)
	require.Equal(t, nemesis.KindPause, steps[1].Fault.Kind)
	require.Equal(t, steps[0].At+lr.Stagger, steps[1].At, "the pause lands while the partition holds")
	require.Equal(t, steps[0].At+steps[0].Duration, steps[1].At+steps[1].Duration, "a compound fault heals at once")
}

func TestApplySeededBugWritesAReplayableSchedule(t *testing.T) {
	out := t.TempDir()
	cfg := RunConfig{Store: "test-leader", Out: out, TimeLimit: 8 * time.Second,
		Workload: workload.Config{Seed: 3, AppendFraction: -1}, Cluster: Env{Bug: "lost-ack"}}
	require.NoError(t, ApplySeededBug(&cfg, false))
	require.True(t, cfg.EndChecks)
	require.Equal(t, 5, cfg.Workload.Keys)
	require.Equal(t, 0.3, cfg.Workload.AppendFraction)
	require.Equal(t, filepath.Join(out, "schedules", "test-leader-lost-ack-seed3.jsonl"), cfg.Nemesis.Replay)
	events, err := nemesis.ReadEventsFile(cfg.Nemesis.Replay)
	require.NoError(t, err)
	steps, err := nemesis.Replay(events)
	require.NoError(t, err)
	b, _ := LookupBug(leaderDriver, "lost-ack")
	require.Equal(t, b.Steps(3, 8*time.Second, BugFaultInterval, BugFaultDuration), steps)

	given := RunConfig{Store: "test-leader", Out: out, TimeLimit: time.Second, Cluster: Env{Bug: "lost-ack"},
		Nemesis: NemesisConfig{Kinds: []string{"pause"}}}
	require.NoError(t, ApplySeededBug(&given, true))
	require.Equal(t, []string{"pause"}, given.Nemesis.Kinds, "faults the caller chose stay")

	bad := RunConfig{Store: "test-leader", Out: out, TimeLimit: time.Second, Cluster: Env{Bug: "nope"}}
	err = ApplySeededBug(&bad, false)
	require.ErrorIs(t, err, ErrInvalidConfig)
	require.True(t, strings.Contains(err.Error(), "lost-ack"), err.Error())

	// A bug that shows without faults runs with no nemesis, and the run
	// refuses an unknown bug before anything starts.
	quiet := RunConfig{Store: "test-leader", Out: out, TimeLimit: time.Second, Cluster: Env{Bug: "quiet"}}
	require.NoError(t, ApplySeededBug(&quiet, false))
	require.False(t, quiet.Nemesis.Enabled())
	run := baseConfig(t, "test-leader")
	run.Cluster.Bug = "nope"
	_, err = Run(context.Background(), run)
	require.ErrorIs(t, err, ErrInvalidConfig)
}
