package report

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// compareSynth writes a raft run with faults and recoveries and a chain
// run without, linked from a compare directory as the harness does, and
// returns the compare directory.
func compareSynth(t *testing.T, chainVerdict string, extra map[string]any) string {
	t.Helper()
	runs := t.TempDir()
	raft := defaultSynth()
	raft.verdict = "ok"
	raftDir := raft.write(t, runs)
	chain := defaultSynth()
	chain.store, chain.name, chain.verdict, chain.nemesis = "chain", "steady", chainVerdict, ""
	chain.outageFrom, chain.outageTo = 0, 0
	chain.throughput = 900
	chainDir := chain.write(t, runs)
	if extra != nil {
		// Fields a store may add to its summary (messages_per_op).
		b, err := os.ReadFile(filepath.Join(chainDir, "summary.json"))
		require.NoError(t, err)
		var m map[string]any
		require.NoError(t, json.Unmarshal(b, &m))
		for k, v := range extra {
			m[k] = v
		}
		b, err = json.Marshal(m)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(chainDir, "summary.json"), b, 0o644))
	}
	// The chain run has no faults: drop the recoveries defaultSynth gives
	// every run, so the table must show "–" for it.
	patchSummary(t, raftDir, map[string]any{"availability": map[string]any{
		"healthy_throughput": 700, "unavailable_s": 3.0, "unavailable_below": 0.1,
		"faults": []map[string]any{{
			"step": 0, "fault": "kill", "role": "leader", "targets": []int{1}, "inject_s": 8, "heal_s": 11.5, "horizon_s": 16,
			"unavailable_s": 3.0, "read_outage_s": 3.0, "write_outage_s": 3.0, "first_read_ms": 3512, "first_write_ms": nil,
			"read_after_heal_ms": 40, "write_after_heal_ms": 40, "back_after_heal_ms": nil,
		}},
	}})
	patchSummary(t, chainDir, map[string]any{"recovery": nil, "availability": map[string]any{
		"healthy_throughput": 905, "unavailable_s": 0.0, "unavailable_below": 0.1,
	}})

	dir := filepath.Join(runs, "20261126T170000Z-compare")
	require.NoError(t, os.Mkdir(dir, 0o755))
	require.NoError(t, os.Symlink("../"+filepath.Base(raftDir), filepath.Join(dir, "raft")))
	require.NoError(t, os.Symlink("../"+filepath.Base(chainDir), filepath.Join(dir, "chain")))
	cj := map[string]any{
		"seed": 42, "time_limit_s": 30, "clients": 4, "keys": 5, "read_fraction": 0.4, "targets": "role", "faults": true,
		"command": []string{"chainraft", "compare", "--time-limit", "30s"},
		"runs": []map[string]any{
			{"store": "raft", "dir": "raft", "verdict": "ok"},
			{"store": "chain", "dir": "chain", "verdict": chainVerdict},
		},
	}
	b, err := json.Marshal(cj)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "compare.json"), b, 0o644))
	return dir
}

// patchSummary sets fields of dir/summary.json (nil deletes one).
func patchSummary(t *testing.T, dir string, fields map[string]any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "summary.json"))
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	for k, v := range fields {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	b, err = json.Marshal(m)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "summary.json"), b, 0o644))
}

func compareRowOf(t *testing.T, rows []CompareRow, metric string) CompareRow {
	t.Helper()
	for _, r := range rows {
		if r.Metric == metric {
			return r
		}
	}
	require.Failf(t, "no row", "metric %q not in the table", metric)
	return CompareRow{}
}

func compareHasRow(rows []CompareRow, metric string) bool {
	for _, r := range rows {
		if r.Metric == metric {
			return true
		}
	}
	return false
}

func TestCompareRowsSideBySide(t *testing.T) {
	dir := compareSynth(t, "illegal", map[string]any{"throughput_by_op": map[string]float64{"get": 300, "put": 100, "cas": 50}})
	rows := CompareRows([]string{filepath.Join(dir, "raft"), filepath.Join(dir, "chain"), ""})
	for _, r := range rows {
		require.Len(t, r.Values, 3, r.Metric)
		require.Len(t, r.Text, 3, r.Metric)
		require.Equal(t, "–", r.Text[2], "a run without a directory has no numbers: %s", r.Metric)
	}
	require.Equal(t, []string{"ok", "illegal", "–"}, compareRowOf(t, rows, "verdict").Text)
	tp := compareRowOf(t, rows, "ok ops/s")
	require.Equal(t, []string{"640", "900", "–"}, tp.Text)
	require.Equal(t, "higher", tp.Better)
	require.Equal(t, 1, compareBest(CompareRow{Values: tp.Values[:2], Text: tp.Text[:2], Better: tp.Better}))

	// Read and write throughput: from throughput_by_op when the summary
	// has it, else not known (these latencies have no counts).
	require.Equal(t, []string{"–", "300", "–"}, compareRowOf(t, rows, "read ops/s").Text)
	require.Equal(t, []string{"–", "150", "–"}, compareRowOf(t, rows, "write ops/s").Text)

	// Latency rows exist for the kinds the summaries have, and no others.
	require.Equal(t, "410", compareRowOf(t, rows, "put p99 ms").Text[0])
	require.Equal(t, "900", compareRowOf(t, rows, "get p99.9 ms").Text[0])
	require.False(t, compareHasRow(rows, "cas p50 ms"), "no run completed a cas")

	// Availability leads: healthy throughput and unavailable seconds,
	// each with the chain / raft ratio.
	require.Equal(t, "availability", rows[3].Section, "right after the verdict rows")
	healthy := compareRowOf(t, rows, "healthy ok ops/s (outside faults and recovery)")
	require.Equal(t, []string{"700", "905", "–"}, healthy.Text)
	require.Equal(t, []string{"1.29×", "–"}, healthy.Ratio)
	down := compareRowOf(t, rows, "unavailable s (ok rate < 10% of healthy)")
	require.Equal(t, []string{"3.0", "0.0", "–"}, down.Text)
	require.Equal(t, 1, compareBest(CompareRow{Values: down.Values[:2], Text: down.Text[:2], Better: down.Better, Noise: down.Noise}))

	// Per fault, the words say what did not happen.
	fw := compareRowOf(t, rows, "first ok write after the inject, ms")
	require.Equal(t, "fault kill leader", fw.Section)
	require.Equal(t, []string{"not before the heal", "–", "–"}, fw.Text)
	require.Equal(t, "3512", compareRowOf(t, rows, "first ok read after the inject, ms").Text[0])
	require.Equal(t, "not back before the next fault", compareRowOf(t, rows, "throughput back after the heal, ms").Text[0])
	require.Equal(t, "3.0", compareRowOf(t, rows, "writes out s").Text[0])

	// Neither synthetic run counts messages: the row is left out, not invented.
	require.False(t, compareHasRow(rows, "messages between nodes per op"))
}

func TestCompareRowsSayWhenAFaultWasNotApplied(t *testing.T) {
	dir := compareSynth(t, "ok", nil)
	// The chain run's nemesis could not kill (the synthetic raft run did).
	require.NoError(t, os.WriteFile(filepath.Join(dir, "chain", "nemesis.jsonl"),
		[]byte(`{"time":8000000000,"step":0,"fault":"kill","event":"inject","role":"head","error":"nemesis: unsupported","skipped":true}`+"\n"), 0o644))
	rows := CompareRows([]string{filepath.Join(dir, "raft"), filepath.Join(dir, "chain")})
	require.Equal(t, []string{"3512", "not applied"}, compareRowOf(t, rows, "first ok read after the inject, ms").Text)
}

func TestCompareRowsMessagesOnlyWhenReported(t *testing.T) {
	dir := compareSynth(t, "ok", map[string]any{"messages_per_op": 2.5})
	rows := CompareRows([]string{filepath.Join(dir, "raft"), filepath.Join(dir, "chain")})
	m := compareRowOf(t, rows, "messages between nodes per op")
	require.Equal(t, []string{"–", "2.50"}, m.Text)
}

func TestCompareRowsNodeCPU(t *testing.T) {
	dir := compareSynth(t, "ok", map[string]any{"node_cpu_us_per_op": 21.04, "busiest_node_cpu_us_per_op": 7.26, "node_cpus": 0.25})
	rows := CompareRows([]string{filepath.Join(dir, "raft"), filepath.Join(dir, "chain")})
	require.Equal(t, []string{"–", "21.0"}, compareRowOf(t, rows, "node CPU per op µs, all nodes").Text)
	busiest := compareRowOf(t, rows, "node CPU per op µs, busiest node")
	require.Equal(t, []string{"–", "7.3"}, busiest.Text)
	require.Equal(t, "cost", busiest.Section)
	require.Equal(t, []string{"none", "0.25"}, compareRowOf(t, rows, "CPU quota per node, cores").Text)

	plain := compareSynth(t, "ok", nil)
	rows = CompareRows([]string{filepath.Join(plain, "raft"), filepath.Join(plain, "chain")})
	require.False(t, compareHasRow(rows, "node CPU per op µs, all nodes"), "no run measured node CPU: no row")
	require.False(t, compareHasRow(rows, "CPU quota per node, cores"), "no run had a quota: no row")
}

func TestCompareBestNeedsAPlainWinner(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	require.Equal(t, -1, compareBest(CompareRow{Better: "higher", Values: []*float64{f(4115), f(4077)}, Text: []string{"4115", "4077"}}),
		"1% apart is noise, not a winner")
	require.Equal(t, 0, compareBest(CompareRow{Better: "higher", Values: []*float64{f(4457), f(3006)}, Text: []string{"4457", "3006"}}))
	require.Equal(t, -1, compareBest(CompareRow{Better: "lower", Noise: 0.5, Values: []*float64{f(0.1), f(0.4)}, Text: []string{"0.1", "0.4"}}),
		"within the row's absolute noise")
	require.Equal(t, 0, compareBest(CompareRow{Better: "lower", Values: []*float64{f(1), f(2)}, Text: []string{"1", "2"}}))
	require.Equal(t, 1, compareBest(CompareRow{Better: "higher", Values: []*float64{f(1), f(2)}, Text: []string{"1", "2"}}))
	require.Equal(t, -1, compareBest(CompareRow{Better: "lower", Values: []*float64{f(1), nil}, Text: []string{"1", "never"}}))
	require.Equal(t, -1, compareBest(CompareRow{Better: "lower", Values: []*float64{f(0.0001), f(0.0002)}, Text: []string{"0.000", "0.000"}}),
		"a difference the printed values hide is no winner")
	require.Equal(t, -1, compareBest(CompareRow{Values: []*float64{f(1), f(2)}, Text: []string{"1", "2"}}))
}

func TestWriteCompare(t *testing.T) {
	dir := compareSynth(t, "illegal", nil)
	require.NoError(t, WriteRun(filepath.Join(dir, "raft")))
	require.NoError(t, WriteCompare(dir))
	html := readFile(t, filepath.Join(dir, "compare.html"))
	require.Contains(t, html, `<span class="badge illegal" id="verdict">illegal</span>`, "the worst verdict heads the page")
	require.Contains(t, html, `<th class="n">raft</th><th class="n">chain</th>`)
	require.Contains(t, html, `href="raft/report.html"`, "a run with a report links it")
	require.Contains(t, html, `href="chain/"`, "a run without one links its directory")
	require.Contains(t, html, "first ok write after the inject, ms")
	require.Contains(t, html, `<th class="n ratio">chain / raft</th>`)
	require.Contains(t, html, "chainraft compare --time-limit 30s")
	require.Equal(t, 3, strings.Count(html, `<svg class="chart"`), "the overlay and one stack per run")
	require.NotRegexp(t, externalRef, html)
	require.NotContains(t, html, "<link")
	require.NotRegexp(t, `<script[^>]+src`, html)

	both := compareSynth(t, "ok", nil)
	require.NoError(t, WriteCompare(both))
	require.Contains(t, readFile(t, filepath.Join(both, "compare.html")), `<span class="badge ok" id="verdict">ok</span>`)
}

func TestWriteCompareSurvivesAMissingRun(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "compare.json"),
		[]byte(`{"runs":[{"store":"raft","dir":"raft","verdict":"unknown","error":"starting raft cluster: boom"},{"store":"chain","dir":""}]}`), 0o644))
	require.NoError(t, WriteCompare(dir))
	html := readFile(t, filepath.Join(dir, "compare.html"))
	require.Contains(t, html, `<span class="badge unknown" id="verdict">unknown</span>`)
	require.Contains(t, html, "starting raft cluster: boom")
	require.Contains(t, html, "the run did not start")

	require.Error(t, WriteCompare(t.TempDir()), "no compare.json")
}

func TestCompareChecksCountsByState(t *testing.T) {
	yes, no := true, false
	require.Equal(t, "–", compareChecks(nil))
	require.Equal(t, "1 fail, 1 unknown, 2 pass, 1 skipped", compareChecks([]Check{
		{Name: "a", OK: &yes}, {Name: "b", OK: &no}, {Name: "c", Status: "pass"},
		{Name: "d", Status: "skipped"}, {Name: "e", Status: "weird"},
	}))
}

// TestComparePageRendersOffline opens compare.html from disk in headless
// Chromium: every chart renders, no request leaves file://, and a
// screenshot is left in $CHAINRAFT_SCREENSHOTS (or a temporary directory).
func TestComparePageRendersOffline(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	bin := chromium(t)
	dir := compareSynth(t, "ok", nil)
	require.NoError(t, WriteRun(filepath.Join(dir, "raft")))
	require.NoError(t, WriteRun(filepath.Join(dir, "chain")))
	require.NoError(t, WriteCompare(dir))
	url := "file://" + filepath.Join(dir, "compare.html")
	dom, netLog := browse(t, bin, url, "--dump-dom")
	for _, u := range requestedURLs(t, netLog) {
		require.True(t, strings.HasPrefix(u, "file://"), "compare.html requested %s", u)
	}
	require.Equal(t, 3, strings.Count(dom, `<svg class="chart"`))
	require.Contains(t, dom, `<table id="compare">`)

	shots := os.Getenv("CHAINRAFT_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	require.NoError(t, os.MkdirAll(shots, 0o755))
	png := filepath.Join(shots, "compare.png")
	browse(t, bin, url, "--screenshot="+png, "--window-size=1280,3200")
	fi, err := os.Stat(png)
	require.NoError(t, err)
	require.Greater(t, fi.Size(), int64(20_000), "the screenshot looks empty")
	t.Logf("screenshot %s", png)
}
