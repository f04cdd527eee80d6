package report

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Lock-workload runs (harness/lockload) share the runs directory with KV
// runs but not their schema: history.jsonl is the counter resource's log,
// not KV operations, and summary.json holds the lock check's verdict
// ("ok", "violation", "unknown") under "check". They are recognised by
// "workload": "lock" (or, for runs made before that field, by "recipe" next
// to a "check" object), never decoded as KV summaries (ReadSummary returns
// ErrLockRun), listed in the index with their own columns' meaning, and
// given their own report page, written by WriteLockRun. As for KV runs,
// the decoding is the report's own: no harness package is imported.

// WorkloadLock is summary.json's "workload" of a lock-workload run.
const WorkloadLock = "lock"

// LockHolding is one acquisition named in a lock violation.
type LockHolding struct {
	Worker int   `json:"worker"`
	Token  int64 `json:"token"`
	Seq    int64 `json:"seq"`
	Time   int64 `json:"time"` // ns since the run's start
}

// LockViolation is one broken property of a lock run.
type LockViolation struct {
	Kind   string       `json:"kind"`
	Detail string       `json:"detail"`
	Holder LockHolding  `json:"holder"`
	Other  *LockHolding `json:"other"`
	Paused bool         `json:"paused"`
}

// LockCheck is the lock check's verdict and counts.
type LockCheck struct {
	Verdict        string          `json:"verdict"`
	Requests       int             `json:"requests"`
	Acquisitions   int             `json:"acquisitions"`
	AcceptedReads  int             `json:"accepted_reads"`
	AcceptedWrites int             `json:"accepted_writes"`
	Refused        int             `json:"refused"`
	StaleRefused   int             `json:"stale_refused"`
	TwoHolders     int             `json:"two_holders"`
	Final          int64           `json:"final"`
	Violations     []LockViolation `json:"violations"`
	ViolationCount int             `json:"violation_count"`
	Unexplained    int             `json:"unexplained"`
}

// LockSummary is the report's reading of a lock run's summary.json.
type LockSummary struct {
	Workload         string    `json:"workload"`
	Name             string    `json:"name"`
	Start            time.Time `json:"start"`
	Recipe           string    `json:"recipe"`
	Fencing          bool      `json:"fencing"`
	Workers          int       `json:"workers"`
	DurationNS       int64     `json:"duration_ns"`
	SessionTimeoutNS int64     `json:"session_timeout_ns"`
	PauseForNS       int64     `json:"pause_for_ns"`
	Seed             int64     `json:"seed"`
	ZK               string    `json:"zk"`
	Pauses           int       `json:"pauses"`
	Acquires         int       `json:"acquires"`
	LostEvents       int       `json:"lost_events"`
	Errors           int       `json:"errors"`
	Check            LockCheck `json:"check"`
	ElapsedNS        int64     `json:"elapsed_ns"`
}

// Verdict maps the lock check's verdict onto the report's three badges: a
// violation is shown as illegal (red), only "ok" as ok.
func (s *LockSummary) Verdict() string {
	switch s.Check.Verdict {
	case "ok":
		return verdictOK
	case "violation":
		return verdictIllegal
	}
	return verdictUnknown
}

// isLockSummary tells a lock run's summary.json from a KV run's.
func isLockSummary(b []byte) bool {
	var probe struct {
		Workload string          `json:"workload"`
		Recipe   json.RawMessage `json:"recipe"`
		Check    json.RawMessage `json:"check"`
	}
	if json.Unmarshal(b, &probe) != nil {
		var fields map[string]json.RawMessage
		if json.Unmarshal(b, &fields) != nil {
			return false
		}
		_ = json.Unmarshal(fields["workload"], &probe.Workload)
		probe.Recipe, probe.Check = fields["recipe"], fields["check"]
	}
	if probe.Workload != "" {
		return probe.Workload == WorkloadLock
	}
	var check struct {
		Verdict *string `json:"verdict"`
	}
	return len(probe.Recipe) > 0 && json.Unmarshal(probe.Check, &check) == nil && check.Verdict != nil
}

// ReadLockSummary reads <dir>/summary.json of a lock run. It fails with
// ErrNoSummary when there is none, and when the run is not a lock run.
func ReadLockSummary(dir string) (*LockSummary, error) {
	b, err := os.ReadFile(filepath.Join(dir, "summary.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", dir, ErrNoSummary)
	}
	if err != nil {
		return nil, err
	}
	if !isLockSummary(b) {
		return nil, fmt.Errorf("%s: not a lock-workload run", dir)
	}
	var s LockSummary
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: summary.json: %w", dir, err)
	}
	return &s, nil
}

// lockPause is one SIGSTOP..SIGCONT of a lock holder, from nemesis.jsonl.
type lockPause struct {
	Worker          int
	Token           int64
	Start, End      float64 // seconds since the run's start; End < 0: never resumed
	Err             string
	InViolation     bool // a violation names this acquisition
	StartT, EndText string
}

// readLockPauses pairs the nemesis's pause and resume lines per worker;
// malformed lines are counted.
func readLockPauses(path string) ([]lockPause, int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	var out []lockPause
	open := map[int]int{} // worker -> index in out of its unresumed pause
	bad := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var e struct {
			Time   int64  `json:"time"`
			F      string `json:"f"`
			Worker int    `json:"worker"`
			Token  int64  `json:"token"`
			Err    string `json:"error"`
		}
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			bad++
			continue
		}
		t := float64(e.Time) / 1e9
		switch e.F {
		case "pause":
			open[e.Worker] = len(out)
			out = append(out, lockPause{Worker: e.Worker, Token: e.Token, Start: t, End: -1})
		case "resume":
			if i, ok := open[e.Worker]; ok {
				out[i].End, out[i].Err = t, e.Err
				delete(open, e.Worker)
			}
		case "skip":
			out = append(out, lockPause{Worker: e.Worker, Start: t, End: t, Err: "skipped: " + e.Err})
		}
	}
	return out, bad, sc.Err()
}

type lockViolationRow struct {
	V              LockViolation
	At             string
	Holder, Other  string
	PausedText     string
	PausedExplains bool
}

type lockPage struct {
	Title, Verdict, VerdictPill string
	S                           *LockSummary
	CSS                         template.CSS
	Warnings                    []string
	Duration, Session, PauseFor string
	Started                     string
	Violations                  []lockViolationRow
	MoreViolations              int
	Pauses                      []lockPause
	Files                       []link
	Generated                   string
}

// WriteLockRun renders <dir>/report.html for a lock-workload run from its
// summary.json and nemesis.jsonl: verdict, the check's counts, every
// recorded violation with whether a pause explains it, the pause
// intervals, and links to the raw files. Written atomically, as WriteRun.
func WriteLockRun(dir string) error {
	s, err := ReadLockSummary(dir)
	if err != nil {
		return err
	}
	page := lockPage{S: s, CSS: styleCSS, Generated: time.Now().UTC().Format(time.RFC3339)}
	page.Title = s.Name
	if page.Title == "" {
		page.Title = filepath.Base(dir)
	}
	page.Verdict = s.Verdict()
	page.VerdictPill = map[string]string{verdictOK: "pass", verdictIllegal: "fail"}[page.Verdict]
	if page.VerdictPill == "" {
		page.VerdictPill = "unknown"
	}
	page.Duration = time.Duration(s.DurationNS).String()
	page.Session = time.Duration(s.SessionTimeoutNS).String()
	page.PauseFor = time.Duration(s.PauseForNS).String()
	if !s.Start.IsZero() {
		page.Started = s.Start.UTC().Format("2006-01-02 15:04:05 UTC")
	}

	involved := map[[2]int64]bool{}
	for _, v := range s.Check.Violations {
		row := lockViolationRow{V: v, PausedText: "–"}
		if v.Holder.Seq > 0 {
			row.At = fmt.Sprintf("%.3f s", float64(v.Holder.Time)/1e9)
			row.Holder = fmt.Sprintf("worker %d, token %d", v.Holder.Worker, v.Holder.Token)
			involved[[2]int64{int64(v.Holder.Worker), v.Holder.Token}] = true
		}
		if v.Other != nil {
			row.Other = fmt.Sprintf("worker %d, token %d", v.Other.Worker, v.Other.Token)
			involved[[2]int64{int64(v.Other.Worker), v.Other.Token}] = true
		}
		if v.Holder.Seq > 0 {
			row.PausedExplains = v.Paused
			if v.Paused {
				row.PausedText = "yes: a paused (deposed) holder"
			} else if v.Kind == "interleaved critical sections" {
				row.PausedText = "no: a fault of the lock itself"
			} else {
				row.PausedText = "no"
			}
		}
		page.Violations = append(page.Violations, row)
	}
	page.MoreViolations = s.Check.ViolationCount - len(s.Check.Violations)

	pauses, bad, err := readLockPauses(filepath.Join(dir, "nemesis.jsonl"))
	switch {
	case errors.Is(err, os.ErrNotExist):
		if s.Pauses > 0 {
			page.Warnings = append(page.Warnings, "nemesis.jsonl is missing")
		}
	case err != nil:
		page.Warnings = append(page.Warnings, "nemesis.jsonl: "+err.Error())
	}
	if bad > 0 {
		page.Warnings = append(page.Warnings, fmt.Sprintf("nemesis.jsonl: %d malformed line(s) skipped", bad))
	}
	for i := range pauses {
		p := &pauses[i]
		p.InViolation = involved[[2]int64{int64(p.Worker), p.Token}]
		p.StartT = fmt.Sprintf("%.3f", p.Start)
		p.EndText = "never resumed"
		if p.End >= 0 {
			p.EndText = fmt.Sprintf("%.3f", p.End)
		}
	}
	page.Pauses = pauses

	page.Files = fileLinks(dir)
	if entries, err := os.ReadDir(filepath.Join(dir, "workers")); err == nil {
		sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
		for _, e := range entries {
			if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
				rel := "workers/" + e.Name()
				page.Files = append(page.Files, link{Name: rel, Href: relHref(rel), Size: humanSize(fi.Size())})
			}
		}
	}

	var buf bytes.Buffer
	if err := lockTemplate.Execute(&buf, page); err != nil {
		return fmt.Errorf("report %s: %w", dir, err)
	}
	return writeAtomic(filepath.Join(dir, "report.html"), buf.Bytes())
}

// lockRow is a lock run's line in the index: the KV columns are filled
// with the lock workload's nearest counterparts (store: the recipe and
// fencing; ops: resource requests; ok ops/s: accepted increments per second;
// failing keys: violations), latency and recovery are not measured.
func lockRow(dir string, e os.DirEntry, s *LockSummary) indexRow {
	fencing := "unfenced"
	if s.Fencing {
		fencing = "fenced"
	}
	r := indexRow{
		Dir: e.Name(), Store: fmt.Sprintf("lock/%s %s", s.Recipe, fencing), Verdict: s.Verdict(),
		Duration: float64(s.DurationNS) / 1e9, Ops: int64(s.Check.Requests), Seed: s.Seed,
		Failing: s.Check.ViolationCount, P99Text: "–", RecoveryText: "–",
	}
	if r.Duration > 0 {
		r.Throughput = float64(s.Check.AcceptedWrites) / r.Duration
	}
	r.Pill = map[string]string{verdictOK: "pass", verdictIllegal: "fail"}[r.Verdict]
	if r.Pill == "" {
		r.Pill = "unknown"
	}
	parts := []string{fmt.Sprintf("lock workload, %d workers", s.Workers)}
	if s.Pauses > 0 {
		parts = append(parts, fmt.Sprintf("pause×%d", s.Pauses))
	}
	if s.Check.Unexplained > 0 {
		parts = append(parts, fmt.Sprintf("%d interleaving(s) with no paused holder", s.Check.Unexplained))
	}
	r.FaultKinds = strings.Join(parts, ", ")
	r.Href = relHref(e.Name()) + "/"
	if _, err := os.Stat(filepath.Join(dir, "report.html")); err == nil {
		r.Href += "report.html"
	}
	start := s.Start
	if start.IsZero() && len(e.Name()) >= 16 {
		// Runs made before summary.json had "start": the directory name
		// begins with the start time (lockrun names it so).
		if t, err := time.Parse("20060102T150405Z", e.Name()[:16]); err == nil {
			start = t
		}
	}
	if start.IsZero() {
		if fi, err := e.Info(); err == nil {
			start = fi.ModTime()
		}
	}
	r.StartKey = start.UTC().Format(time.RFC3339Nano)
	r.StartText = start.UTC().Format("2006-01-02 15:04:05")
	return r
}

var lockTemplate = template.Must(template.New("lock").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Verdict}} · {{.Title}} · chainraft lock workload</title>
<style>{{.CSS}}</style>
</head>
<body>
<main>
<header class="run">
  <h1>{{.Title}}</h1>
  <span class="badge {{.Verdict}}" id="verdict">{{.Verdict}}</span>
  <span class="nav"><a href="../index.html">all runs</a></span>
  <div class="meta">
    lock workload · recipe <b>{{.S.Recipe}}</b> · fencing <b>{{if .S.Fencing}}on{{else}}off{{end}}</b>
    · {{.S.Workers}} workers · ran <b>{{.Duration}}</b> · session timeout <b>{{.Session}}</b>
    · {{.S.Pauses}} pause(s) of {{.PauseFor}} · seed <b>{{.S.Seed}}</b>
    {{- if .Started}} · started <b>{{.Started}}</b>{{end}}
    · lock check verdict <b>{{or .S.Check.Verdict "?"}}</b>
  </div>
</header>
{{- range .Warnings}}
<div class="error">{{.}}</div>
{{- end}}
{{- if .S.Check.Unexplained}}
<div class="error" id="unexplained"><b>{{.S.Check.Unexplained}} interleaving(s) involve no paused holder:</b> two holders the pause nemesis did not cause — a fault of the lock recipe itself.</div>
{{- end}}

<section class="cards" aria-label="summary">
  <div class="card"><div class="k">verdict</div><div class="v"><span class="pill {{.VerdictPill}}">{{.Verdict}}</span></div></div>
  <div class="card"><div class="k">violations</div><div class="v">{{.S.Check.ViolationCount}}</div></div>
  <div class="card"><div class="k">acquisitions (resource / workers)</div><div class="v">{{.S.Check.Acquisitions}} / {{.S.Acquires}}</div></div>
  <div class="card"><div class="k">accepted increments / final counter</div><div class="v">{{.S.Check.AcceptedWrites}} / {{.S.Check.Final}}</div></div>
  <div class="card"><div class="k">resource requests</div><div class="v">{{.S.Check.Requests}}</div></div>
  <div class="card"><div class="k">refused (stale token)</div><div class="v">{{.S.Check.Refused}} ({{.S.Check.StaleRefused}})</div></div>
  <div class="card"><div class="k">two holders at once</div><div class="v">{{.S.Check.TwoHolders}}</div></div>
  <div class="card"><div class="k">holder pauses</div><div class="v">{{.S.Pauses}}</div></div>
  <div class="card"><div class="k">locks found lost / worker errors</div><div class="v">{{.S.LostEvents}} / {{.S.Errors}}</div></div>
</section>

<h2>Violations</h2>
{{- if .Violations}}
<table id="violations">
  <tr><th>kind</th><th class="n">at</th><th>holder</th><th>other</th><th>explained by a pause</th><th>detail</th></tr>
  {{- range .Violations}}
  <tr><td>{{.V.Kind}}</td><td class="n">{{or .At "–"}}</td><td>{{or .Holder "–"}}</td><td>{{or .Other "–"}}</td>
    <td{{if and (not .PausedExplains) (eq .V.Kind "interleaved critical sections")}} class="never"{{end}}>{{.PausedText}}</td><td>{{.V.Detail}}</td></tr>
  {{- end}}
</table>
{{- if gt .MoreViolations 0}}<p class="mut">… {{.MoreViolations}} more, counted in summary.json.</p>{{end}}
{{- else}}
<p class="mut">None: critical sections did not interleave at the resource and no increment was lost.
{{- if .S.Check.TwoHolders}} The lock did have two holders at once {{.S.Check.TwoHolders}} time(s); {{if .S.Fencing}}fencing refused the deposed holders' writes.{{end}}{{end}}</p>
{{- end}}

<h2>Holder pauses</h2>
{{- if .Pauses}}
<table id="pauses">
  <tr><th class="n">worker</th><th class="n">token</th><th class="n">paused at s</th><th class="n">resumed at s</th><th>in a violation</th><th>error</th></tr>
  {{- range .Pauses}}
  <tr><td class="n">{{.Worker}}</td><td class="n">{{.Token}}</td><td class="n">{{.StartT}}</td><td class="n">{{.EndText}}</td><td>{{if .InViolation}}yes{{else}}no{{end}}</td><td>{{.Err}}</td></tr>
  {{- end}}
</table>
{{- else}}
<p class="mut">No holder was paused.</p>
{{- end}}

<h2>Files</h2>
<p class="mut">history.jsonl is the counter resource's own log (every read, write and cas in serving order, with token and verdict): the lock check reads nothing else. workers/&lt;id&gt;.jsonl is what each lock client did, on its own clock.</p>
<ul class="files">
  {{- range .Files}}
  <li><a href="{{.Href}}">{{.Name}}</a> <span class="mut">{{.Size}}</span></li>
  {{- end}}
</ul>
<p class="mut">generated {{.Generated}}</p>
</main>
</body>
</html>
`))
