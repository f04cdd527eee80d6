package chainrafttest

import (
	"context"
	"encoding/json"
	"fmt"
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
// CHAINRAFT_NIGHTLY_DIR; runs.jsonl there lists them as they finish.
//
// CHAINRAFT_NIGHTLY_SHARD=i/N runs only shard i of N of each round (see
// harness.Shard), into runs-shard-i-of-N.jsonl, and leaves the summing up
// to TestNightlyMerge once every shard is in the night directory.
// Unsharded, at the end the night is appended to
// $CHAINRAFT_NIGHTLY_TREND/trend.jsonl, the trend page trend.html is
// rendered next to it, and the README's "What it catches" table
// ($CHAINRAFT_NIGHTLY_README) is rewritten. A false alarm — a correct store
// judged not linearizable or failing an end-of-run check — or a failed run
// fails the test, after the trend (or the shard's record) is written.
func TestNightly(t *testing.T) {
	dir := os.Getenv("CHAINRAFT_NIGHTLY_DIR")
	if dir == "" {
		t.Skip("CHAINRAFT_NIGHTLY_DIR is not set: run `make nightly`")
	}
	shard, err := harness.ParseShard(os.Getenv("CHAINRAFT_NIGHTLY_SHARD"))
	require.NoError(t, err)
	budget := envDuration(t, "NIGHTLY_BUDGET", 10*time.Minute)
	runTime := envDuration(t, "NIGHTLY_RUN_TIME", 10*time.Second)
	require.NoError(t, os.MkdirAll(dir, 0o755))
	bin := proc.BuildChainraft(t)
	began := time.Now()

	// A run's cost: the workload, start-up and teardown, the check.
	slack := 20 * time.Second
	var runs []harness.NightRun
	out, err := os.OpenFile(filepath.Join(dir, "runs"+shard.Name()+".jsonl"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
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

	items := nightlyItems()
	mine := 0
	for k := range items {
		if shard.Owns(k) {
			mine++
		}
	}
	t.Logf("shard %d/%d: %d of the %d runs of each round", shard.I, shard.N, mine, len(items))
	suffix := strings.ReplaceAll(shard.Name(), "-shard-", "-s")
rounds:
	for seed := int64(1); mine > 0; seed++ {
		for k, it := range items {
			if !shard.Owns(k) {
				continue
			}
			if !fits() {
				break rounds
			}
			if it.bug != nil {
				cfg := detectConfig(t, bin, *it.bug, dir, seed)
				cfg.Name += suffix
				cfg.TimeLimit = max(runTime, it.bug.RunTime)
				cfg.Progress = nil
				require.NoError(t, harness.ApplySeededBug(&cfg, false)) // the schedule for this run length
				start := time.Now()
				res, err := harness.Run(context.Background(), cfg)
				record(harness.NightRunOf(res, err, it.bug.Kinds(), time.Since(start).Seconds()))
				continue
			}
			kinds, err := nemesis.ParseKinds(it.mix)
			require.NoError(t, err)
			cfg := harness.RunConfig{
				Store: it.store, Name: "night-" + strings.ReplaceAll(it.mix, ",", "+") + suffix, Out: dir, TimeLimit: runTime, Clients: 12,
				Workload: workload.Config{Seed: seed, Keys: 10, ReadFraction: 0.5, AppendFraction: -1, CASFraction: -1},
				Cluster: harness.Env{Nodes: 3, Binary: bin,
					RequestTimeout: detectTimeout, Log: testLogWriter{t}},
				Nemesis:     harness.NemesisConfig{Kinds: kinds, Interval: 2 * time.Second},
				EndChecks:   true,
				CheckBudget: 60 * time.Second,
			}
			start := time.Now()
			res, err := harness.Run(context.Background(), cfg)
			record(harness.NightRunOf(res, err, it.mix, time.Since(start).Seconds()))
		}
	}

	if shard.N > 1 {
		require.NoError(t, harness.WriteShardNight(dir, shard, harness.ShardNight{
			Shard: fmt.Sprintf("%d/%d", shard.I, shard.N), BudgetS: budget.Seconds(), ElapsedS: time.Since(began).Seconds(),
			Commit: os.Getenv("CHAINRAFT_NIGHTLY_COMMIT"), Runs: len(runs),
		}))
		t.Logf("shard %d/%d: %d runs in %.0fs; `make nightly-merge` sums the night up once every shard is in %s", shard.I, shard.N, len(runs), time.Since(began).Seconds(), dir)
	} else {
		finishNight(t, dir, budget, time.Since(began))
	}
	for _, r := range runs {
		if r.Bug == "" && (r.Caught || r.Error != "") {
			t.Errorf("correct %s store, faults %s, seed %d: verdict %s, failed checks %v, error %q (run %s)",
				r.Store, r.Faults, r.Seed, r.Verdict, r.FailedChecks, r.Error, r.Dir)
		}
	}
}

// TestNightlyMerge is the merge step of a sharded night (`make
// nightly-merge`, the nightly workflow's last job): with every shard's
// runs copied into CHAINRAFT_NIGHTLY_DIR, it sums the night up as an
// unsharded night ends. Without CHAINRAFT_NIGHTLY_MERGE it skips.
func TestNightlyMerge(t *testing.T) {
	dir := os.Getenv("CHAINRAFT_NIGHTLY_DIR")
	if dir == "" || os.Getenv("CHAINRAFT_NIGHTLY_MERGE") == "" {
		t.Skip("CHAINRAFT_NIGHTLY_DIR and CHAINRAFT_NIGHTLY_MERGE are not set: run `make nightly-merge`")
	}
	finishNight(t, dir, 0, 0)
}

// finishNight writes the night's sum (harness.FinishNight) and logs it.
func finishNight(t *testing.T, dir string, budget, elapsed time.Duration) {
	trendDir := os.Getenv("CHAINRAFT_NIGHTLY_TREND")
	if trendDir == "" {
		trendDir = filepath.Join(filepath.Dir(dir), "nightly")
	}
	date := os.Getenv("CHAINRAFT_NIGHTLY_DATE")
	if date == "" {
		date = time.Now().UTC().Format("2006-01-02")
	}
	rec, runs, err := harness.FinishNight(dir, harness.NightRecord{
		Date: date, Commit: os.Getenv("CHAINRAFT_NIGHTLY_COMMIT"), BudgetS: budget.Seconds(), ElapsedS: elapsed.Seconds(),
	}, harness.NightOutputs{TrendDir: trendDir, README: os.Getenv("CHAINRAFT_NIGHTLY_README")})
	require.NoError(t, err)
	t.Logf("night: %d runs in %.0fs%s; trend page %s, runs %s", len(runs), rec.ElapsedS, shardsNote(rec), filepath.Join(trendDir, "trend.html"), filepath.Join(dir, "index.html"))
	for _, s := range rec.Stores {
		t.Logf("store %s: %d runs, %d ok, %d false alarms, %d unknown, %d failed; median %.0f ops/s, p99 %.1f ms, recovery %.0f ms, check %.1f s",
			s.Store, s.Runs, s.OK, s.FalseAlarms, s.Unknown, s.Failed, s.Throughput, s.P99MS, s.RecoveryMS, s.CheckSeconds)
	}
	for _, b := range rec.Bugs {
		t.Logf("bug %s/%s: caught %d/%d (%.0f%%), median time to detection %.1fs", b.Store, b.Bug, b.Caught, b.Runs, 100*b.Rate, b.MedianDetectS)
	}
	require.Empty(t, rec.MissingShards, "every shard of the night left its record")
}

func shardsNote(rec harness.NightRecord) string {
	if rec.Shards <= 1 {
		return ""
	}
	return fmt.Sprintf(" on %d shards", rec.Shards)
}

// nightItem is one run of a round: a seeded bug with its faults, or a
// correct store under a fault mix.
type nightItem struct {
	bug   *harness.SeededBug
	store string
	mix   string
}

// nightlyItems is a round in its fixed order, the order shards split: the
// seeded bugs, then each correct store's fault mixes.
func nightlyItems() []nightItem {
	var items []nightItem
	for _, b := range harness.SeededBugs() {
		if slices.Contains(harness.Stores(), b.Store) {
			items = append(items, nightItem{bug: &b})
		}
	}
	for _, store := range []string{"raft", "chain"} {
		if !slices.Contains(harness.Stores(), store) {
			continue
		}
		for _, mix := range nightlyMixes[store] {
			items = append(items, nightItem{store: store, mix: mix})
		}
	}
	return items
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

// TestShardedNightMerges splits a round over shards and merges a night from
// two shards' files, one of which never wrote its record.
func TestShardedNightMerges(t *testing.T) {
	whole, err := harness.ParseShard("")
	require.NoError(t, err)
	require.Equal(t, harness.Shard{I: 1, N: 1}, whole)
	for _, bad := range []string{"0/2", "3/2", "2", "a/b", "1/0"} {
		_, err := harness.ParseShard(bad)
		require.Error(t, err, bad)
	}
	// Every item of a round is run by exactly one of N shards.
	items := nightlyItems()
	require.NotEmpty(t, items)
	for n := 1; n <= 5; n++ {
		owners := make([]int, len(items))
		for i := 1; i <= n; i++ {
			sh, err := harness.ParseShard(fmt.Sprintf("%d/%d", i, n))
			require.NoError(t, err)
			for k := range items {
				if sh.Owns(k) {
					owners[k]++
				}
			}
		}
		for k, o := range owners {
			require.Equal(t, 1, o, "item %d with %d shards", k, n)
		}
	}

	dir := filepath.Join(t.TempDir(), "nightly-2026-12-04")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	write := func(name string, runs ...harness.NightRun) {
		var b strings.Builder
		for _, r := range runs {
			line, err := json.Marshal(r)
			require.NoError(t, err)
			b.Write(append(line, '\n'))
		}
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(b.String()), 0o644))
	}
	write("runs-shard-1-of-2.jsonl",
		harness.NightRun{Store: "raft", Bug: "early-ack", Seed: 1, Verdict: "ok", Seconds: 10},
		harness.NightRun{Store: "raft", Bug: "early-ack", Seed: 2, Verdict: "illegal", Caught: true, Seconds: 12})
	write("runs-shard-2-of-2.jsonl",
		harness.NightRun{Store: "raft", Faults: "kill", Seed: 1, Verdict: "ok", Seconds: 10, Throughput: 1000},
		harness.NightRun{Store: "chain", Faults: "none", Seed: 1, Verdict: "ok", Seconds: 10, Throughput: 3000})
	sh, err := harness.ParseShard("1/2")
	require.NoError(t, err)
	require.NoError(t, harness.WriteShardNight(dir, sh, harness.ShardNight{Shard: "1/2", BudgetS: 600, ElapsedS: 590, Commit: "abc", Runs: 2}))

	trend := t.TempDir()
	rec, runs, err := harness.FinishNight(dir, harness.NightRecord{Date: "2026-12-04"}, harness.NightOutputs{TrendDir: trend})
	require.NoError(t, err)
	require.Len(t, runs, 4)
	require.Equal(t, 2, rec.Shards)
	require.Equal(t, []string{"2/2"}, rec.MissingShards)
	require.Equal(t, 590.0, rec.ElapsedS)
	require.Equal(t, "abc", rec.Commit)
	require.Len(t, rec.Stores, 2, "both shards' stores")
	require.Len(t, rec.Bugs, 1)
	require.Equal(t, 22.0, rec.Bugs[0].FirstDetectS, "the bug's runs kept their order")
	for _, f := range []string{filepath.Join(dir, "index.html"), filepath.Join(dir, "night.json"), filepath.Join(trend, "trend.jsonl"), filepath.Join(trend, "trend.html")} {
		_, err := os.Stat(f)
		require.NoError(t, err)
	}
	html, err := os.ReadFile(filepath.Join(trend, "trend.html"))
	require.NoError(t, err)
	require.Contains(t, string(html), "on 2 runners")
	require.Contains(t, string(html), "no record from shard 2/2")
}
