package report

import (
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/histories"
)

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}

func TestWriteRunShowsEverything(t *testing.T) {
	dir := defaultSynth().write(t, t.TempDir())
	require.NoError(t, WriteRun(dir))
	html := readFile(t, filepath.Join(dir, "report.html"))

	require.Contains(t, html, `<span class="badge illegal" id="verdict">illegal</span>`)
	require.Contains(t, html, "kill-leader")
	require.Contains(t, html, "$ chainraft run --store raft --seed 42 --name &#39;kill-leader x&#39;")
	// Two charts, drawn inline by gonum/plot, with the fault labels on them.
	require.Equal(t, 1, strings.Count(html, `<svg class="chart"`))
	require.NotContains(t, html, "<?xml")
	require.Equal(t, 3, strings.Count(html, ">kill n1 (leader)</text>")) // on all three charts
	require.Contains(t, html, ">partition isolate n2,n3 (follower)</text>")
	require.Contains(t, html, ">kill n2 (tail) (not healed)</text>")
	require.False(t, strings.Contains(html, ">member (tail)</text>"), "a skipped fault is drawn") // listed, not drawn
	require.Contains(t, html, ">info</text>")
	require.Contains(t, html, ">fail / info ops/s</text>")
	require.Contains(t, html, ">latency ms (log), every op</text>")
	require.Regexp(t, `>info \(\d+\)</text>`, html, "the scatter's legend counts info operations")
	// Fault table, recovery, checks.
	require.Regexp(t, `(?s)<table id="faults">.*kill.*leader.*n1.*8\.00.*11\.50.*3\.50`, html)
	require.Regexp(t, `(?s)member</td><td>tail</td><td></td>\s*<td class="n">18\.00</td>\s*<td class="n">–</td><td class="n">–</td><td class="mut">not applied</td>.*store cannot change membership`, html)
	require.Contains(t, html, "not healed")
	require.Regexp(t, `(?s)<table id="recovery">.*8\.00.*1234.*3512.*4100.*11\.50.*heal.*2\.50.*26\.00.*20\.0</td><td class="n"><span class="never">never</span>`, html)
	require.Regexp(t, `(?s)<table id="checks">.*replicas converge.*pill pass.*acknowledged writes present.*pill fail.*k3: append 17 missing`, html)
	require.Contains(t, html, "never (kill)") // worst recovery card
	// Links: visualizations of failing keys, logs, raw files.
	require.Regexp(t, `<li><a href="porcupine/key0~00000000.html">k3</a></li>\s*<li><a href="porcupine/key1~00001eef.html">a/b c</a></li>`, html)
	require.Contains(t, html, `<li><a href="porcupine/k0.html">k0</a></li>`) // other visualizations
	for _, f := range []string{"summary.json", "history.jsonl", "nemesis.jsonl", "harness.log", "nodes/n1.log", "zk/zk1.log", "../index.html"} {
		require.Contains(t, html, `href="`+f+`"`)
	}
	require.Contains(t, html, `<a href="nodes/1/">nodes/1/</a> <span class="mut">2.9 KiB of data</span>`)
	require.NotContains(t, html, "wal/0.log")
	require.NotContains(t, html, `href="report.html"`)
}

// externalRef matches a reference that would make the browser fetch
// something from the network: a src or href, a CSS url() or @import, with
// an http(s) or protocol-relative address.
var externalRef = regexp.MustCompile(`(?i)(src|href|xlink:href|action)\s*=\s*["']?\s*(https?:)?//|url\(\s*["']?\s*(https?:)?//|@import\s+["']?(https?:)?//`)

func TestPagesReferenceNothingExternal(t *testing.T) {
	runs := t.TempDir()
	dir := defaultSynth().write(t, runs)
	require.NoError(t, WriteRun(dir))
	require.NoError(t, WriteIndex(runs))
	for _, page := range []string{filepath.Join(dir, "report.html"), filepath.Join(runs, "index.html")} {
		html := readFile(t, page)
		require.NotRegexp(t, externalRef, html, page)
		require.NotContains(t, html, "<link", page) // styles are inline
		require.NotRegexp(t, `<script[^>]+src`, html, page)
	}
	// The pattern itself catches what it must.
	for _, bad := range []string{`<script src="https://cdn.example/x.js">`, `<link href="//fonts.example/css">`,
		`@font-face{src:url(https://f.example/a.woff)}`, `<img src=http://x/y.png>`} {
		require.Regexp(t, externalRef, bad)
	}
}

func TestUnknownIsNeverShownAsOK(t *testing.T) {
	for _, v := range []string{"unknown", "", "timeout", "OK?"} {
		r := defaultSynth()
		r.verdict, r.name = v, "v"+strings.ReplaceAll(v, "?", "")
		dir := r.write(t, t.TempDir())
		require.NoError(t, WriteRun(dir))
		html := readFile(t, filepath.Join(dir, "report.html"))
		require.Contains(t, html, `<span class="badge unknown" id="verdict">unknown</span>`, v)
		require.NotContains(t, html, `badge ok`, v)
		require.Contains(t, html, "<b>not</b> known to be linearizable", v)
	}
	r := defaultSynth()
	r.verdict = "ok"
	dir := r.write(t, t.TempDir())
	require.NoError(t, WriteRun(dir))
	require.Contains(t, readFile(t, filepath.Join(dir, "report.html")), `<span class="badge ok" id="verdict">ok</span>`)
}

func TestWriteRunWithoutSummaryOrHistory(t *testing.T) {
	dir := t.TempDir()
	require.ErrorIs(t, WriteRun(dir), ErrNoSummary)

	require.NoError(t, os.WriteFile(filepath.Join(dir, "summary.json"), []byte(`{"store":"chain","verdict":"ok","duration_s":3}`), 0o644))
	require.NoError(t, WriteRun(dir))
	html := readFile(t, filepath.Join(dir, "report.html"))
	require.Contains(t, html, "No history to chart: history.jsonl is missing")
	require.NotContains(t, html, "Planted bug")
	require.Contains(t, html, "(no nemesis.jsonl)")

	require.NoError(t, os.WriteFile(filepath.Join(dir, "summary.json"), []byte(`{"store":"raft","verdict":"illegal","bug":"stale-read","nodes":3,"read_mode":"lease"}`), 0o644))
	require.NoError(t, WriteRun(dir))
	html = readFile(t, filepath.Join(dir, "report.html"))
	require.Contains(t, html, "<b>Planted bug:</b> stale-read")
	require.Contains(t, html, "· 3 nodes · read mode lease")

	require.NoError(t, os.WriteFile(filepath.Join(dir, "summary.json"), []byte(`{"store":`), 0o644))
	require.Error(t, WriteRun(dir))
}

func TestTimelineBucketsAndPercentiles(t *testing.T) {
	in := strings.Join([]string{
		`{"client":0,"op":"get","key":"a","call":100000000,"return":110000000,"outcome":"ok","found":true,"output":"1"}`,
		`{"client":1,"op":"put","key":"a","value":"1","call":200000000,"return":1500000000,"outcome":"ok"}`,
		`{"client":2,"op":"get","key":"a","call":300000000,"return":330000000,"outcome":"ok"}`,
		`{"client":3,"op":"cas","key":"a","call":400000000,"return":2600000000,"outcome":"fail","error":"x"}`,
		`{"client":4,"op":"append","key":"a","call":2700000000,"outcome":"info"}`,
		`{"client":5,"op":"get","key":"a","call":2800000000,"return":3900000000,"outcome":"ok","extra":[1,2]}`,
		``,
		`{"client":6,"op":"get","key":"a","call":29000`, // torn last line
	}, "\n")
	tl, err := readTimeline(strings.NewReader(in))
	require.NoError(t, err)
	require.EqualValues(t, 6, tl.Ops)
	require.EqualValues(t, 1, tl.Malformed)
	require.Equal(t, int64(3900000000), tl.EndNS)
	require.Equal(t, 4, tl.Buckets)
	require.Equal(t, []int64{2, 0, 0, 1}, tl.OK[histories.Get])
	require.Equal(t, []int64{0, 1, 0, 0}, tl.OK[histories.Put])
	require.Equal(t, []int64{0, 0, 2, 0}, tl.Errors) // fail at its return (2.6 s), info at its call (2.7 s)
	require.Equal(t, []histories.Kind{histories.Get, histories.Put}, tl.Kinds())
	require.InDelta(t, 10, tl.Percentile(groupRead, 0, 0.5), 1e-3)
	require.InDelta(t, 30, tl.Percentile(groupRead, 0, 0.99), 1e-3)
	require.InDelta(t, 1300, tl.Percentile(groupWrite, 1, 0.5), 1e-3)
	require.True(t, math.IsNaN(tl.Percentile(groupRead, 1, 0.5)))
	require.InDelta(t, 1100, tl.Percentile(groupRead, 3, 0.99), 1e-3)
}

func TestBandsPairInjectAndHeal(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "nemesis.jsonl")
	require.NoError(t, os.WriteFile(path, []byte(defaultNemesis()+
		`{"time": 27000000000, "fault": "clock", "event": "skew", "targets": "n1"}`+"\n"+
		`{"time": 28000000000, "fault": "pause", "event": "heal", "targets": ["n9"]}`+"\n"+
		`not json`+"\n"), 0o644))
	bands, malformed, err := ReadBands(path, 30)
	require.NoError(t, err)
	require.Equal(t, 1, malformed)
	type got struct {
		kind       string
		start, end float64
		open       bool
	}
	var gs []got
	for _, b := range bands {
		gs = append(gs, got{b.Label(), b.Start, b.End, b.Open})
	}
	require.Equal(t, []got{
		{"kill n1 (leader)", 8, 11.5, false},
		{"partition isolate n2,n3 (follower)", 16, 21, false},
		{"pause n3 (follower)", 17, 19, false},
		{"member (tail)", 18, 18, false},
		{"kill n2 (tail)", 26, 30, true},
		{"clock skew n1", 27, 27, false},
		{"pause heal n9", 28, 28, false},
	}, gs)
	require.True(t, bands[3].NotApplied)
	require.Len(t, applied(bands), 6)

	// Heals pair by id before kind.
	bands = pairBands([]nemesisEvent{
		{time: 1e9, kind: "kill", event: "inject", id: "a"},
		{time: 2e9, kind: "kill", event: "inject", id: "b"},
		{time: 3e9, kind: "kill", event: "heal", id: "b"},
		{time: 5e9, kind: "kill", event: "heal", id: "a"},
	}, 10)
	require.Equal(t, 5.0, bands[0].End)
	require.Equal(t, 3.0, bands[1].End)

	// Overlapping bands get distinct label lanes.
	n := assignLanes(bands, func(b Band) (float64, float64) { return b.Start, b.Start + 0.1 })
	require.Equal(t, 2, n)
	require.NotEqual(t, bands[0].lane, bands[1].lane)
	// Labels wider than the gap between bands take another lane too.
	seq := []Band{{Start: 1, End: 2}, {Start: 2.5, End: 3}, {Start: 9, End: 9.5}}
	require.Equal(t, 2, assignLanes(seq, func(b Band) (float64, float64) { return b.Start, b.Start + 3 }))
	require.Equal(t, []int{0, 1, 0}, []int{seq[0].lane, seq[1].lane, seq[2].lane})

	none, _, err := ReadBands(filepath.Join(dir, "absent.jsonl"), 30)
	require.NoError(t, err)
	require.Empty(t, none)
}

func TestSummaryDecodingIsTolerant(t *testing.T) {
	s, err := decodeSummary([]byte(`{"store":"chain","seed":"not a number","verdict":"ok","ops_ok":5,"ops_fail":1,
		"recovery":[{"time":2.5,"fault":"pause","first_read_ms":12}],"checks":{"converged":true,"acked":{"ok":false,"detail":"lost 1"}},
		"command":"chainraft run --store chain"}`))
	require.NoError(t, err)
	require.Equal(t, "chain", s.Store)
	require.Equal(t, int64(6), s.OpsTotal)
	require.Equal(t, 2.5, s.Recovery[0].Time)
	require.Equal(t, "chainraft run --store chain", s.Command)
	require.Len(t, s.Checks, 2)
	require.Equal(t, "fail", s.Checks[0].State()) // acked, sorted by name
	require.Equal(t, "lost 1", s.Checks[0].Detail)
	require.Equal(t, "pass", s.Checks[1].State())
	require.Equal(t, "unknown", Check{Name: "x"}.State())
}

func TestWriteIndexListsEveryRun(t *testing.T) {
	runs := t.TempDir()
	a := defaultSynth()
	b := defaultSynth()
	b.store, b.name, b.verdict, b.start, b.throughput, b.p99 = "chain", "pause-tail", "ok", a.start.Add(time.Hour), 900, 120
	b.nemesis = ""
	c := defaultSynth()
	c.name, c.verdict, c.start = "budget", "unknown", a.start.Add(-time.Hour)
	var dirs []string
	for _, r := range []synthRun{a, b, c} {
		dirs = append(dirs, r.write(t, runs))
	}
	require.NoError(t, WriteRun(dirs[0]))
	require.NoError(t, os.Symlink(filepath.Base(dirs[1]), filepath.Join(runs, "latest")))
	require.NoError(t, os.MkdirAll(filepath.Join(runs, "not-a-run"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(runs, "broken"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(runs, "broken", "summary.json"), []byte("{"), 0o644))

	require.NoError(t, WriteIndex(runs))
	html := readFile(t, filepath.Join(runs, "index.html"))
	require.Equal(t, 3, strings.Count(html, "<tr data-verdict="))
	require.Contains(t, html, `href="latest/report.html"`)
	require.NotContains(t, html, "not-a-run")
	require.Contains(t, html, "skipped broken")
	// Newest first; the run with a report links to it, the others to their directory.
	ib, ia, ic := strings.Index(html, filepath.Base(dirs[1])), strings.Index(html, filepath.Base(dirs[0])), strings.Index(html, filepath.Base(dirs[2]))
	require.True(t, ib < ia && ia < ic, "order %d %d %d", ib, ia, ic)
	require.Contains(t, html, `href="`+filepath.Base(dirs[0])+`/report.html"`)
	require.Contains(t, html, `href="`+filepath.Base(dirs[1])+`/"`)
	require.Contains(t, html, `data-v="900">900</td>`)
	require.NotContains(t, html, "recovery ms", "the index shows availability, not the old recovery column")
	require.Contains(t, html, `data-v="369">369</td>`) // p99 over all ops
	require.Contains(t, html, `<option>chain</option><option>raft</option>`)
	require.Contains(t, html, "1 ok · 1 illegal · 1 unknown")
	require.Contains(t, html, `<div class="faults">faults: kill×2, partition, pause</div>`) // member was skipped
	require.Contains(t, html, `<div class="faults">no faults</div>`)
}

func TestWriteRunEdgeHistories(t *testing.T) {
	for name, history := range map[string]string{
		"empty":     "",
		"all-info":  `{"client":0,"op":"put","key":"a","value":"1","call":5,"outcome":"info"}` + "\n",
		"one-op":    `{"client":0,"op":"get","key":"a","call":0,"return":0,"outcome":"ok"}` + "\n",
		"far-times": `{"client":0,"op":"get","key":"a","call":1,"return":900000000000000000,"outcome":"ok"}` + "\n",
		"garbage":   "\x00\x01 not json\n[1,2]\n",
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			require.NoError(t, os.WriteFile(filepath.Join(dir, "summary.json"), []byte(`{"store":"raft","verdict":"ok","duration_s":1}`), 0o644))
			require.NoError(t, os.WriteFile(filepath.Join(dir, "history.jsonl"), []byte(history), 0o644))
			require.NoError(t, os.WriteFile(filepath.Join(dir, "nemesis.jsonl"), []byte(`{"time":0,"fault":"kill","event":"inject","targets":[1]}`+"\n"), 0o644))
			require.NoError(t, WriteRun(dir))
			html := readFile(t, filepath.Join(dir, "report.html"))
			switch name {
			case "empty", "garbage":
				require.Contains(t, html, "No history to chart: history.jsonl has no operations")
				if name == "garbage" {
					require.Contains(t, html, "history.jsonl: 2 malformed line(s) skipped")
				}
			default:
				require.Contains(t, html, `<svg class="chart"`)
				require.Contains(t, html, ">kill n1 (not healed)</text>")
			}
		})
	}
}

func TestLogTicksLabelSmallAndLargeRanges(t *testing.T) {
	labels := func(min, max float64) []string {
		var out []string
		for _, tk := range (logTicks{}).Ticks(min, max) {
			if tk.Label != "" {
				out = append(out, tk.Label)
			}
		}
		return out
	}
	require.Equal(t, []string{"0.1", "0.2", "0.5", "1", "2", "5"}, labels(0.1, 6))
	require.Equal(t, []string{"0.01", "0.1", "1", "10", "100", "1000", "10000"}, labels(0.01, 50000))
	require.Empty(t, (logTicks{}).Ticks(0, 10))
}
