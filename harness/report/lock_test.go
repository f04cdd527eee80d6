package report

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// A lock run's summary.json as lockload.Run writes it: a violation with one
// interleaving no pause explains, two pauses (one never resumed).
const lockViolationSummary = `{
  "workload": "lock", "name": "20261126T185105Z-lock-default", "start": "2026-11-26T18:51:05Z",
  "recipe": "naive", "fencing": false, "workers": 3, "duration_ns": 15000000000,
  "session_timeout_ns": 1000000000, "pause_for_ns": 3000000000, "seed": 7,
  "pauses": 2, "acquires": 115, "lost_events": 1, "errors": 0,
  "check": {"verdict": "violation", "requests": 228, "acquisitions": 115, "accepted_reads": 115,
    "accepted_writes": 113, "refused": 0, "stale_refused": 0, "two_holders": 2, "final": 111,
    "violations": [
      {"kind": "interleaved critical sections", "detail": "worker 2 (token 85) read 18 and wrote 19, but worker 1 (token 89) wrote 19 in between",
       "holder": {"worker": 2, "token": 85, "seq": 73, "time": 5105332271}, "other": {"worker": 1, "token": 89, "seq": 39, "time": 3351312281}, "paused": true},
      {"kind": "interleaved critical sections", "detail": "worker 2 (token 329) read 88, worker 0 (token 325) wrote 89 in between",
       "holder": {"worker": 2, "token": 329, "seq": 184, "time": 12143166771}, "other": {"worker": 0, "token": 325, "seq": 183, "time": 12080844600}, "paused": false},
      {"kind": "final counter", "detail": "final counter 111 after 113 accepted writes: 2 increment(s) lost", "holder": {"worker": 0, "token": 0, "seq": 0, "time": 0}, "paused": false}
    ],
    "violation_count": 3, "unexplained": 1}
}
`

const lockNemesis = `{"time":2104371911,"f":"pause","worker":2,"pid":480,"token":85}
{"time":5105505941,"f":"resume","worker":2,"pid":480,"token":85}
not json
{"time":7032072084,"f":"pause","worker":1,"pid":478,"token":216}
`

func writeLockRun(t *testing.T, runs, name, summary, nemesis string) string {
	t.Helper()
	dir := filepath.Join(runs, name)
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "workers"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "summary.json"), []byte(summary), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "history.jsonl"),
		[]byte(`{"seq":1,"time":86929763,"worker":1,"token":13,"op":"read","value":0,"before":0,"accepted":true}`+"\n"), 0o644))
	if nemesis != "" {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "nemesis.jsonl"), []byte(nemesis), 0o644))
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "workers", "0.jsonl"), []byte("{}\n"), 0o644))
	return dir
}

// Lock runs are never read as KV runs: ReadSummary refuses them, with or
// without the "workload" field (runs made before it), and KV summaries are
// not taken for lock runs.
func TestLockRunsAreNotKVRuns(t *testing.T) {
	runs := t.TempDir()
	dir := writeLockRun(t, runs, "lock", lockViolationSummary, "")
	_, err := ReadSummary(dir)
	require.ErrorIs(t, err, ErrLockRun)
	legacy := strings.Replace(lockViolationSummary, `"workload": "lock",`, "", 1)
	require.NotEqual(t, legacy, lockViolationSummary)
	dir = writeLockRun(t, runs, "legacy", legacy, "")
	_, err = ReadSummary(dir)
	require.ErrorIs(t, err, ErrLockRun)
	s, err := ReadLockSummary(dir)
	require.NoError(t, err)
	require.Equal(t, verdictIllegal, s.Verdict())

	kv := defaultSynth().write(t, runs)
	_, err = ReadSummary(kv)
	require.NoError(t, err)
	_, err = ReadLockSummary(kv)
	require.ErrorContains(t, err, "not a lock-workload run")
	require.Error(t, WriteLockRun(kv))
}

func TestWriteLockRun(t *testing.T) {
	dir := writeLockRun(t, t.TempDir(), "20261126T185105Z-lock-default", lockViolationSummary, lockNemesis)
	require.NoError(t, WriteLockRun(dir))
	html := readFile(t, filepath.Join(dir, "report.html"))
	require.Contains(t, html, `<span class="badge illegal" id="verdict">illegal</span>`)
	require.Contains(t, html, "recipe <b>naive</b> · fencing <b>off</b>")
	require.Contains(t, html, "lock check verdict <b>violation</b>")
	require.Contains(t, html, `<div class="error" id="unexplained"><b>1 interleaving(s) involve no paused holder:`)
	require.Contains(t, html, "nemesis.jsonl: 1 malformed line(s) skipped")
	require.Regexp(t, `(?s)<table id="violations">.*worker 2, token 85</td><td>worker 1, token 89</td>\s*<td>yes: a paused`, html)
	require.Regexp(t, `(?s)worker 2, token 329</td><td>worker 0, token 325</td>\s*<td class="never">no: a fault of the lock itself`, html)
	require.Regexp(t, `(?s)final counter</td><td class="n">–</td>`, html)
	require.Regexp(t, `(?s)<table id="pauses">.*<td class="n">2</td><td class="n">85</td><td class="n">2\.104</td><td class="n">5\.106</td><td>yes</td>`+
		`.*<td class="n">1</td><td class="n">216</td><td class="n">7\.032</td><td class="n">never resumed</td><td>no</td>`, html)
	require.Contains(t, html, "113 / 111") // accepted increments / final counter
	for _, f := range []string{"summary.json", "history.jsonl", "nemesis.jsonl", "workers/0.jsonl", "../index.html"} {
		require.Contains(t, html, `href="`+f+`"`)
	}
	require.NotRegexp(t, externalRef, html)
	require.NotContains(t, html, "<script")

	// A fenced run that passed: ok, no violations, the two holders noted.
	ok := strings.NewReplacer(`"verdict": "violation"`, `"verdict": "ok"`, `"fencing": false`, `"fencing": true`,
		`"violation_count": 3, "unexplained": 1`, `"violation_count": 0, "unexplained": 0`).Replace(lockViolationSummary)
	ok = ok[:strings.Index(ok, `"violations": [`)] + `"violation_count": 0}}`
	dir = writeLockRun(t, t.TempDir(), "fenced", ok, "")
	require.NoError(t, WriteLockRun(dir))
	html = readFile(t, filepath.Join(dir, "report.html"))
	require.Contains(t, html, `<span class="badge ok" id="verdict">ok</span>`)
	require.Contains(t, html, "fencing refused the deposed holders' writes")
	require.NotContains(t, html, `id="unexplained"`)
}

// The index lists lock runs next to KV runs, with their verdict (a
// violation is illegal, red) and a link to the lock report.
func TestIndexListsLockRuns(t *testing.T) {
	runs := t.TempDir()
	kv := defaultSynth()
	kv.verdict = "ok"
	kv.write(t, runs)
	lock := writeLockRun(t, runs, "20261126T185105Z-lock-default", lockViolationSummary, lockNemesis)
	require.NoError(t, WriteLockRun(lock))
	noReport := writeLockRun(t, runs, "20261126T190000Z-lock-unknown", strings.NewReplacer(
		`"verdict": "violation"`, `"verdict": "unknown"`, `"start": "2026-11-26T18:51:05Z",`, "").Replace(lockViolationSummary), "")
	require.NoError(t, WriteIndex(runs))
	html := readFile(t, filepath.Join(runs, "index.html"))
	require.Equal(t, 3, strings.Count(html, "<tr data-verdict="))
	require.NotContains(t, html, "skipped")
	require.Contains(t, html, "1 ok · 1 illegal · 1 unknown")
	require.Regexp(t, `(?s)<tr data-verdict="illegal" data-store="lock/naive unfenced">\s*<td data-v="20261126T185105Z-lock-default"><a href="20261126T185105Z-lock-default/report.html">`, html)
	require.Contains(t, html, `<span class="pill fail">illegal</span>`)
	require.Contains(t, html, `faults: lock workload, 3 workers, pause×2, 1 interleaving(s) with no paused holder`)
	require.Contains(t, html, `href="`+filepath.Base(noReport)+`/report.html"`) // written by WriteIndex
	require.FileExists(t, filepath.Join(noReport, "report.html"))
	require.Contains(t, html, `<option>lock/naive unfenced</option>`)
	require.Contains(t, html, `data-v="3">3</td>`)                                          // violations in the failing column
	require.Contains(t, html, `<td data-v="2026-11-26T19:00:00Z">2026-11-26 19:00:00</td>`) // no "start": from the name

}
