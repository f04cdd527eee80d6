package chainrafttest

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chainraft/chainraft/harness"
	"github.com/chainraft/chainraft/harness/workload"

	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/internal/proc"
	"github.com/chainraft/chainraft/nemesis"
)

// TestNightly is the nightly matrix behind `make nightly` (scripts/nightly.sh
// sets its environment; without CHAINRAFT_NIGHTLY_DIR it skips). Round after
// round, one seed per round, it runs every seeded bug with the faults that
// expose it and both correct stores under each fault mix, until the budget
// (NIGHTLY_BUDGET, default 10m) would be overrun. Every run is kept under
// CHAINRAFT_NIGHTLY_DIR; runs.jsonl there lists them as they finish. At the
// end the night is appended to $CHAINRAFT_NIGHTLY_TREND/trend.jsonl, the
// trend page trend.html is rendered next to it, and the README's "What it
// catches" table ($CHAINRAFT_NIGHTLY_README) is rewritten. A false alarm —
// a correct store judged not linearizable or failing an end-of-run check —
// or a failed run fails the test, after the trend is written.
func TestNightly(t *testing.T) {
	dir := os.Getenv("CHAINRAFT_NIGHTLY_DIR")
	if dir == "" {
		t.Skip("CHAINRAFT_NIGHTLY_DIR is not set: run `make nightly`")
	}
	budget := envDuration(t, "NIGHTLY_BUDGET", 10*time.Minute)
	runTime := envDuration(t, "NIGHTLY_RUN_TIME", 10*time.Second)
	trendDir := os.Getenv("CHAINRAFT_NIGHTLY_TREND")
	if trendDir == "" {
		trendDir = filepath.Join(filepath.Dir(dir), "nightly")
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	bin := proc.BuildChainraft(t)
	began := time.Now()

	// A run's cost: the workload, start-up and teardown, the check.
	slack := 20 * time.Second
	var runs []harness.NightRun
	out, err := os.OpenFile(filepath.Join(dir, "runs.jsonl"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	require.NoError(t, err)
	defer out.Close()
	record := func(r harness.NightRun) {
		runs = append(runs, r)
		line, err := json.Marshal(r)
		require.NoError(t, err)
		_, err = out.Write(append(line, '\n'))
		require.NoError(t, err)
		what := r.Bug
		if what == "" {
			what = "correct store, faults " + r.Faults
		}
		t.Logf("%6.0fs %s %s seed %d: verdict %s, caught %v%s (%s)", time.Since(began).Seconds(), r.Store, what, r.Seed, r.Verdict, r.Caught, errNote(r.Error), r.Dir)
	}
	fits := func() bool { return time.Since(began)+runTime+slack <= budget }

rounds:
	for seed := int64(1); ; seed++ {
		for _, b := range harness.SeededBugs() {
			if !slices.Contains(harness.Stores(), b.Store) {
				continue
			}
			if !fits() {
				break rounds
			}
			cfg := detectConfig(t, bin, b, dir, seed)
			cfg.TimeLimit = max(runTime, b.RunTime)
			cfg.Progress = nil
			require.NoError(t, harness.ApplySeededBug(&cfg, false)) // the schedule for this run length
			start := time.Now()
			res, err := harness.Run(context.Background(), cfg)
			record(harness.NightRunOf(res, err, b.Kinds(), time.Since(start).Seconds()))
		}
		for _, store := range []string{"raft", "chain"} {
			if !slices.Contains(harness.Stores(), store) {
				continue
			}
			for _, mix := range nightlyMixes[store] {
				if !fits() {
					break rounds
				}
				kinds, err := nemesis.ParseKinds(mix)
				require.NoError(t, err)
				cfg := harness.RunConfig{
					Store: store, Name: "night-" + strings.ReplaceAll(mix, ",", "+"), Out: dir, TimeLimit: runTime, Clients: 12,
					Workload: workload.Config{Seed: seed, Keys: 10, ReadFraction: 0.5, AppendFraction: -1, CASFraction: -1},
					Cluster: harness.Env{Nodes: 3, Binary: bin,
						RequestTimeout: detectTimeout, Log: testLogWriter{t}},
					Nemesis:     harness.NemesisConfig{Kinds: kinds, Interval: 2 * time.Second},
					EndChecks:   true,
					CheckBudget: 60 * time.Second,
				}
				start := time.Now()
				res, err := harness.Run(context.Background(), cfg)
				record(harness.NightRunOf(res, err, mix, time.Since(start).Seconds()))
			}
		}
	}

	rec := harness.SummarizeNight(harness.NightRecord{
		Date: time.Now().UTC().Format("2006-01-02"), Commit: os.Getenv("CHAINRAFT_NIGHTLY_COMMIT"),
		BudgetS: budget.Seconds(), ElapsedS: time.Since(began).Seconds(), Dir: dir,
	}, runs)
	require.NoError(t, harness.AppendTrend(filepath.Join(trendDir, "trend.jsonl"), rec))
	f, err := os.Open(filepath.Join(trendDir, "trend.jsonl"))
	require.NoError(t, err)
	nights, err := harness.ReadTrend(f)
	f.Close()
	require.NoError(t, err)
	require.NoError(t, harness.WriteTrendPage(filepath.Join(trendDir, "trend.html"), nights))
	night, err := json.MarshalIndent(rec, "", "  ")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "night.json"), append(night, '\n'), 0o644))
	if readme := os.Getenv("CHAINRAFT_NIGHTLY_README"); readme != "" {
		require.NoError(t, harness.UpdateCatchesTable(readme, rec))
	}
	t.Logf("night: %d runs in %.0fs; trend page %s", len(runs), time.Since(began).Seconds(), filepath.Join(trendDir, "trend.html"))
	for _, s := range rec.Stores {
		t.Logf("store %s: %d runs, %d ok, %d false alarms, %d unknown, %d failed; median %.0f ops/s, p99 %.1f ms, recovery %.0f ms, check %.1f s",
			s.Store, s.Runs, s.OK, s.FalseAlarms, s.Unknown, s.Failed, s.Throughput, s.P99MS, s.RecoveryMS, s.CheckSeconds)
	}
	for _, b := range rec.Bugs {
		t.Logf("bug %s/%s: caught %d/%d (%.0f%%), median time to detection %.1fs", b.Store, b.Bug, b.Caught, b.Runs, 100*b.Rate, b.MedianDetectS)
	}
	for _, r := range runs {
		if r.Bug == "" && (r.Caught || r.Error != "") {
			t.Errorf("correct %s store, faults %s, seed %d: verdict %s, failed checks %v, error %q (run %s)",
				r.Store, r.Faults, r.Seed, r.Verdict, r.FailedChecks, r.Error, r.Dir)
		}
	}
}

// nightlyMixes are the fault mixes of the correct stores, per store.
var nightlyMixes = map[string][]string{
	"raft":  {"none", "kill", "pause", "partition", "member", "all"},
	"chain": {"none", "kill", "pause", "partition", "zk", "all"},
}

func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	require.NoError(t, err, "%s=%q", name, v)
	return d
}

func TestNightSummaryAndTrendPage(t *testing.T) {
	runs := []harness.NightRun{
		{Store: "raft", Faults: "kill", Seed: 1, Verdict: "ok", Seconds: 10, Throughput: 1000, P99MS: 5, RecoveryMS: 1500, CheckSeconds: 1},
		{Store: "raft", Faults: "none", Seed: 1, Verdict: "illegal", Caught: true, Seconds: 10, Throughput: 2000, P99MS: 3, CheckSeconds: 2},
		{Store: "raft", Bug: "early-ack", Seed: 1, Verdict: "ok", Seconds: 10},
		{Store: "raft", Bug: "early-ack", Seed: 2, Verdict: "illegal", Caught: true, Seconds: 12},
		{Store: "raft", Bug: "early-ack", Seed: 3, Verdict: "illegal", Caught: true, Seconds: 9},
	}
	rec := harness.SummarizeNight(harness.NightRecord{Date: "2026-11-26", BudgetS: 600}, runs)
	require.Equal(t, []harness.StoreNight{{Store: "raft", Runs: 2, OK: 1, FalseAlarms: 1, Throughput: 1500, P99MS: 4, RecoveryMS: 1500, CheckSeconds: 1.5}}, rec.Stores)
	require.Len(t, rec.Bugs, 1)
	require.Equal(t, harness.BugNight{Bug: "early-ack", Store: "raft", Exposes: rec.Bugs[0].Exposes, Runs: 3, Caught: 2, Rate: 2.0 / 3,
		MedianDetectS: 15.5, FirstDetectS: 22}, rec.Bugs[0])

	dir := t.TempDir()
	trend := filepath.Join(dir, "trend.jsonl")
	require.NoError(t, harness.AppendTrend(trend, rec))
	rec2 := rec
	rec2.Date = "2026-11-27"
	require.NoError(t, harness.AppendTrend(trend, rec2))
	f, err := os.Open(trend)
	require.NoError(t, err)
	nights, err := harness.ReadTrend(f)
	f.Close()
	require.NoError(t, err)
	require.Len(t, nights, 2)
	page := filepath.Join(dir, "trend.html")
	require.NoError(t, harness.WriteTrendPage(page, nights))
	html, err := os.ReadFile(page)
	require.NoError(t, err)
	for _, want := range []string{"<svg", "Throughput", "p99", "Recovery", "Check time", "detection rate", "2026-11-27", "raft/early-ack", "67%"} {
		require.Contains(t, string(html), want)
	}
	require.NotContains(t, string(html), "<script", "the page is self-contained and static")

	readme := filepath.Join(dir, "README.md")
	require.NoError(t, os.WriteFile(readme, []byte("# x\n\n## What it catches\n\n"+harness.CatchesBegin+"\nold\n"+harness.CatchesEnd+"\n\n## Next\n"), 0o644))
	require.NoError(t, harness.UpdateCatchesTable(readme, rec))
	got, err := os.ReadFile(readme)
	require.NoError(t, err)
	require.Contains(t, string(got), "| raft | `early-ack` |")
	require.Contains(t, string(got), "2/3 (67%)")
	require.Contains(t, string(got), "| chain | `head-read` |")
	require.NotContains(t, string(got), "\nold\n")
	require.Contains(t, string(got), "## Next")
	require.ErrorIs(t, harness.UpdateCatchesTable(page, rec), harness.ErrNoCatchesSection)
}
