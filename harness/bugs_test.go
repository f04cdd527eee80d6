package harness

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/nemesis"
)

func TestLookupBug(t *testing.T) {
	b, err := LookupBug("raft", "no-dedup")
	require.NoError(t, err)
	require.Equal(t, "kill", b.Kinds())
	_, err = LookupBug("raft", "head-read")
	require.ErrorIs(t, err, ErrInvalidConfig, "a chain bug is not a raft bug")
	require.Contains(t, err.Error(), "local-read, no-dedup", "the error lists the store's bugs")
	_, err = LookupBug("memory", "local-read")
	require.ErrorIs(t, err, ErrInvalidConfig)
	require.Equal(t, []string{"local-read", "early-ack", "no-dedup"}, BugNames("raft"))
	require.Equal(t, []string{"head-read", "no-resend", "stale-tail"}, BugNames("chain"))
}

func TestBugStepsStayInTheRun(t *testing.T) {
	for _, b := range SeededBugs {
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
	lr, err := LookupBug("raft", "local-read")
	require.NoError(t, err)
	steps := lr.Steps(1, 8*time.Second, time.Second, 2*time.Second)
	require.Len(t, steps, 2)
	require.Equal(t, nemesis.KindPartition, steps[0].Fault.Kind)
	require.Equal(t, nemesis.KindPause, steps[1].Fault.Kind)
	require.Equal(t, steps[0].At+lr.Stagger, steps[1].At, "the pause lands while the partition holds")
	require.Equal(t, steps[0].At+steps[0].Duration, steps[1].At+steps[1].Duration, "a compound fault heals at once")
}

func TestApplySeededBugWritesAReplayableSchedule(t *testing.T) {
	out := t.TempDir()
	cfg := RunConfig{Store: "raft", Out: out, TimeLimit: 8 * time.Second,
		Workload: WorkloadConfig{Seed: 3, AppendFraction: -1}, Cluster: ClusterConfig{Bug: "no-dedup"}}
	require.NoError(t, ApplySeededBug(&cfg, false))
	require.True(t, cfg.EndChecks)
	require.Equal(t, 5, cfg.Workload.Keys)
	require.Equal(t, 0.3, cfg.Workload.AppendFraction)
	require.Equal(t, filepath.Join(out, "schedules", "raft-no-dedup-seed3.jsonl"), cfg.Nemesis.Replay)
	events, err := nemesis.ReadEventsFile(cfg.Nemesis.Replay)
	require.NoError(t, err)
	steps, err := nemesis.Replay(events)
	require.NoError(t, err)
	b, _ := LookupBug("raft", "no-dedup")
	require.Equal(t, b.Steps(3, 8*time.Second, BugFaultInterval, BugFaultDuration), steps)

	given := RunConfig{Store: "raft", Out: out, TimeLimit: time.Second, Cluster: ClusterConfig{Bug: "no-dedup"},
		Nemesis: NemesisConfig{Kinds: []string{"pause"}}}
	require.NoError(t, ApplySeededBug(&given, true))
	require.Equal(t, []string{"pause"}, given.Nemesis.Kinds, "faults the caller chose stay")

	bad := RunConfig{Store: "raft", Out: out, TimeLimit: time.Second, Cluster: ClusterConfig{Bug: "nope"}}
	err = ApplySeededBug(&bad, false)
	require.ErrorIs(t, err, ErrInvalidConfig)
	require.True(t, strings.Contains(err.Error(), "early-ack"), err.Error())
}

func TestNightSummaryAndTrendPage(t *testing.T) {
	runs := []NightRun{
		{Store: "raft", Faults: "kill", Seed: 1, Verdict: "ok", Seconds: 10, Throughput: 1000, P99MS: 5, RecoveryMS: 1500, CheckSeconds: 1},
		{Store: "raft", Faults: "none", Seed: 1, Verdict: "illegal", Caught: true, Seconds: 10, Throughput: 2000, P99MS: 3, CheckSeconds: 2},
		{Store: "raft", Bug: "early-ack", Seed: 1, Verdict: "ok", Seconds: 10},
		{Store: "raft", Bug: "early-ack", Seed: 2, Verdict: "illegal", Caught: true, Seconds: 12},
		{Store: "raft", Bug: "early-ack", Seed: 3, Verdict: "illegal", Caught: true, Seconds: 9},
	}
	rec := SummarizeNight(NightRecord{Date: "2026-11-26", BudgetS: 600}, runs)
	require.Equal(t, []StoreNight{{Store: "raft", Runs: 2, OK: 1, FalseAlarms: 1, Throughput: 1500, P99MS: 4, RecoveryMS: 1500, CheckSeconds: 1.5}}, rec.Stores)
	require.Len(t, rec.Bugs, 1)
	require.Equal(t, BugNight{Bug: "early-ack", Store: "raft", Exposes: rec.Bugs[0].Exposes, Runs: 3, Caught: 2, Rate: 2.0 / 3,
		MedianDetectS: 15.5, FirstDetectS: 22}, rec.Bugs[0])

	dir := t.TempDir()
	trend := filepath.Join(dir, "trend.jsonl")
	require.NoError(t, AppendTrend(trend, rec))
	rec2 := rec
	rec2.Date = "2026-11-27"
	require.NoError(t, AppendTrend(trend, rec2))
	f, err := os.Open(trend)
	require.NoError(t, err)
	nights, err := ReadTrend(f)
	f.Close()
	require.NoError(t, err)
	require.Len(t, nights, 2)
	page := filepath.Join(dir, "trend.html")
	require.NoError(t, WriteTrendPage(page, nights))
	html, err := os.ReadFile(page)
	require.NoError(t, err)
	for _, want := range []string{"<svg", "Throughput", "p99", "Recovery", "Check time", "detection rate", "2026-11-27", "raft/early-ack", "67%"} {
		require.Contains(t, string(html), want)
	}
	require.NotContains(t, string(html), "<script", "the page is self-contained and static")

	readme := filepath.Join(dir, "README.md")
	require.NoError(t, os.WriteFile(readme, []byte("# x\n\n## What it catches\n\n"+CatchesBegin+"\nold\n"+CatchesEnd+"\n\n## Next\n"), 0o644))
	require.NoError(t, UpdateCatchesTable(readme, rec))
	got, err := os.ReadFile(readme)
	require.NoError(t, err)
	require.Contains(t, string(got), "| raft | `early-ack` |")
	require.Contains(t, string(got), "2/3 (67%)")
	require.Contains(t, string(got), "| chain | `head-read` |")
	require.NotContains(t, string(got), "\nold\n")
	require.Contains(t, string(got), "## Next")
	require.ErrorIs(t, UpdateCatchesTable(page, rec), ErrNoCatchesSection)
}
