package harness

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

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
	var runs []NightRun
	out, err := os.OpenFile(filepath.Join(dir, "runs.jsonl"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	require.NoError(t, err)
	defer out.Close()
	record := func(r NightRun) {
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
		for _, b := range SeededBugs {
			if !slices.Contains(Stores(), b.Store) || !bugPlantable(b) {
				continue
			}
			if !fits() {
				break rounds
			}
			cfg := detectConfig(t, bin, b, dir, seed)
			cfg.TimeLimit = max(runTime, b.RunTime)
			cfg.Progress = nil
			cfg.Sidecars = nil
			require.NoError(t, ApplySeededBug(&cfg, false)) // the schedule for this run length
			start := time.Now()
			res, err := Run(context.Background(), cfg)
			record(NightRunOf(res, err, b.Kinds(), time.Since(start).Seconds()))
		}
		for _, store := range []string{"raft", "chain"} {
			if !slices.Contains(Stores(), store) {
				continue
			}
			for _, mix := range nightlyMixes[store] {
				if !fits() {
					break rounds
				}
				kinds, err := nemesis.ParseKinds(mix)
				require.NoError(t, err)
				cfg := RunConfig{
					Store: store, Name: "night-" + strings.ReplaceAll(mix, ",", "+"), Out: dir, TimeLimit: runTime, Clients: 12,
					Workload: WorkloadConfig{Seed: seed, Keys: 10, ReadFraction: 0.5, AppendFraction: -1, CASFraction: -1},
					Cluster: ClusterConfig{Nodes: 3, Chains: 3, Replicas: 3, ZKServers: 1, Binary: bin,
						RequestTimeout: detectTimeout, Log: testLogWriter{t}},
					Nemesis:     NemesisConfig{Kinds: kinds, Interval: 2 * time.Second},
					EndChecks:   true,
					CheckBudget: 60 * time.Second,
				}
				start := time.Now()
				res, err := Run(context.Background(), cfg)
				record(NightRunOf(res, err, mix, time.Since(start).Seconds()))
			}
		}
	}

	rec := SummarizeNight(NightRecord{
		Date: time.Now().UTC().Format("2006-01-02"), Commit: os.Getenv("CHAINRAFT_NIGHTLY_COMMIT"),
		BudgetS: budget.Seconds(), ElapsedS: time.Since(began).Seconds(), Dir: dir,
	}, runs)
	require.NoError(t, AppendTrend(filepath.Join(trendDir, "trend.jsonl"), rec))
	f, err := os.Open(filepath.Join(trendDir, "trend.jsonl"))
	require.NoError(t, err)
	nights, err := ReadTrend(f)
	f.Close()
	require.NoError(t, err)
	require.NoError(t, WriteTrendPage(filepath.Join(trendDir, "trend.html"), nights))
	night, err := json.MarshalIndent(rec, "", "  ")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "night.json"), append(night, '\n'), 0o644))
	if readme := os.Getenv("CHAINRAFT_NIGHTLY_README"); readme != "" {
		require.NoError(t, UpdateCatchesTable(readme, rec))
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
