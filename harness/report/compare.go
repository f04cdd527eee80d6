package report

// compare.html: the runs of one `chainraft compare` side by side. The page
// is built, like every page here, from files only: compare.json names the
// runs (links inside the compare directory), and each run's summary.json,
// history.jsonl and nemesis.jsonl give the numbers and charts. The table
// is CompareRows, the same function the harness uses for compare.json and
// the terminal, so the three never disagree.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

// CompareRow is one line of the comparison table: a metric and its value
// in each run, in the order of the runs.
type CompareRow struct {
	Section string `json:"section"`
	Metric  string `json:"metric"`
	// Values are the numbers, nil where the run has none (not measured,
	// or "never" for a recovery).
	Values []*float64 `json:"values"`
	// Text is each value as printed.
	Text []string `json:"text"`
	// Better is "higher" or "lower" when one value is plainly the better.
	Better string `json:"better,omitempty"`
}

// compareExtra is what the comparison reads from summary.json beyond the
// report's Summary: fields a store or the nemesis may add.
type compareExtra struct {
	// MessagesPerOp is messages between nodes per client operation, when
	// the store counts them (raft and chain do: harness/messages.go); a
	// store that does not (memory) has no value, never a guessed one.
	MessagesPerOp *float64 `json:"messages_per_op"`
	// NodeCPUPerOpUS and BusiestNodeCPUPerOpUS are node CPU microseconds
	// per ok operation, all nodes and the busiest (harness/cpu.go), when
	// the store has node processes; NodeCPUs is their quota, if any.
	NodeCPUPerOpUS        *float64 `json:"node_cpu_us_per_op"`
	BusiestNodeCPUPerOpUS *float64 `json:"busiest_node_cpu_us_per_op"`
	NodeCPUs              float64  `json:"node_cpus"`
	// ThroughputByOp is ok operations per second by kind, as the harness
	// writes it.
	ThroughputByOp map[string]float64 `json:"throughput_by_op"`
}

// compareRun is one run as the comparison reads it from disk.
type compareRun struct {
	S     *Summary
	Extra compareExtra
	// NotApplied are the fault kinds the nemesis log shows skipped or
	// failed (the store cannot do them yet): "not applied", not "–".
	NotApplied map[string]bool
}

func readCompareRun(dir string) compareRun {
	if dir == "" {
		return compareRun{}
	}
	s, err := ReadSummary(dir)
	if err != nil {
		return compareRun{}
	}
	r := compareRun{S: s}
	if b, err := os.ReadFile(filepath.Join(dir, "summary.json")); err == nil {
		_ = json.Unmarshal(b, &r.Extra) // tolerant: a field of another type is absent
	}
	bands, _, _ := ReadBands(filepath.Join(dir, "nemesis.jsonl"), s.DurationS)
	for _, b := range bands {
		if b.NotApplied {
			if r.NotApplied == nil {
				r.NotApplied = map[string]bool{}
			}
			r.NotApplied[b.Kind] = true
		}
	}
	return r
}

// CompareRows builds the side-by-side table of the runs in runDirs (an
// empty or unreadable directory is a run without numbers: its column says
// "–"). Rows a run cannot have are left out rather than shown empty: a
// latency row only for op kinds some run completed, recovery rows only for
// faults some run had, the messages row only when a store counts them.
func CompareRows(runDirs []string) []CompareRow {
	runs := make([]compareRun, len(runDirs))
	for i, d := range runDirs {
		runs[i] = readCompareRun(d)
	}
	return compareRows(runs)
}

func compareRows(runs []compareRun) []CompareRow {
	var rows []CompareRow
	add := func(section, metric, better string, f func(r compareRun) (*float64, string)) {
		row := CompareRow{Section: section, Metric: metric, Better: better}
		for _, r := range runs {
			var v *float64
			t := "–"
			if r.S != nil {
				v, t = f(r)
			}
			row.Values = append(row.Values, v)
			row.Text = append(row.Text, t)
		}
		rows = append(rows, row)
	}
	num := func(v float64, format string) (*float64, string) {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, "–"
		}
		return &v, fmt.Sprintf(format, v)
	}
	// Sub-millisecond latencies (the memory store, chain reads) keep
	// three decimals: formatMS would print them all as 0.00.
	msv := func(v float64) (*float64, string) { return &v, compareMS(v) }

	add("run", "verdict", "", func(r compareRun) (*float64, string) {
		v := verdictClass(r.S.Verdict)
		if r.S.Error != "" {
			v += " (" + r.S.Error + ")"
		}
		return nil, v
	})
	add("run", "operations (ok/fail/info)", "", func(r compareRun) (*float64, string) {
		v := float64(r.S.OpsTotal)
		return &v, fmt.Sprintf("%d (%d/%d/%d)", r.S.OpsTotal, r.S.OpsOK, r.S.OpsFail, r.S.OpsInfo)
	})
	if slices.ContainsFunc(runs, func(r compareRun) bool { return r.S != nil && len(r.S.Checks) > 0 }) {
		add("run", "end-of-run checks", "", func(r compareRun) (*float64, string) {
			return nil, compareChecks(r.S.Checks)
		})
	}
	add("throughput", "ok ops/s", "higher", func(r compareRun) (*float64, string) {
		return num(r.S.Throughput, "%.0f")
	})
	// Read and write throughput: the harness's per-kind throughput, else
	// the ok counts of the latency table; a summary with neither has none
	// (a missing kind is zero ops of it, a latency without a count is not
	// known).
	perSecond := func(r compareRun, kinds ...string) (*float64, string) {
		if r.Extra.ThroughputByOp != nil {
			v := 0.0
			for _, k := range kinds {
				v += r.Extra.ThroughputByOp[k]
			}
			return num(v, "%.0f")
		}
		if r.S.DurationS <= 0 {
			return nil, "–"
		}
		n := 0
		for _, k := range kinds {
			l, ok := r.S.Latency[k]
			if ok && l.Count == 0 {
				return nil, "–"
			}
			n += l.Count
		}
		return num(float64(n)/r.S.DurationS, "%.0f")
	}
	add("throughput", "read ops/s", "higher", func(r compareRun) (*float64, string) { return perSecond(r, "get") })
	add("throughput", "write ops/s", "higher", func(r compareRun) (*float64, string) {
		return perSecond(r, "put", "append", "cas")
	})

	for _, k := range []string{"get", "put", "append", "cas", "all"} {
		if !slices.ContainsFunc(runs, func(r compareRun) bool {
			if r.S == nil {
				return false
			}
			_, ok := r.S.Latency[k]
			return ok
		}) {
			continue
		}
		for _, q := range []struct {
			name string
			of   func(Latency) float64
		}{{"p50", func(l Latency) float64 { return l.P50 }}, {"p99", func(l Latency) float64 { return l.P99 }}, {"p99.9", func(l Latency) float64 { return l.P999 }}} {
			add("latency", k+" "+q.name+" ms", "lower", func(r compareRun) (*float64, string) {
				l, ok := r.S.Latency[k]
				if !ok {
					return nil, "–"
				}
				return msv(q.of(l))
			})
		}
	}

	for _, fk := range compareFaultKinds(runs) {
		for _, m := range []struct{ what, stat string }{
			{"ops", "median"}, {"ops", "max"}, {"throughput", "median"}, {"throughput", "max"},
		} {
			add("recovery", fk+" "+m.what+" back "+m.stat+" ms", "lower", func(r compareRun) (*float64, string) {
				return compareRecovery(r, fk, m.what, m.stat)
			})
		}
	}

	if slices.ContainsFunc(runs, func(r compareRun) bool { return r.Extra.MessagesPerOp != nil }) {
		add("cost", "messages between nodes per op", "lower", func(r compareRun) (*float64, string) {
			if r.Extra.MessagesPerOp == nil {
				return nil, "–"
			}
			return num(*r.Extra.MessagesPerOp, "%.2f")
		})
	}
	if slices.ContainsFunc(runs, func(r compareRun) bool { return r.Extra.NodeCPUPerOpUS != nil }) {
		add("cost", "node CPU per op µs, all nodes", "lower", func(r compareRun) (*float64, string) {
			if r.Extra.NodeCPUPerOpUS == nil {
				return nil, "–"
			}
			return num(*r.Extra.NodeCPUPerOpUS, "%.1f")
		})
		add("cost", "node CPU per op µs, busiest node", "lower", func(r compareRun) (*float64, string) {
			if r.Extra.BusiestNodeCPUPerOpUS == nil {
				return nil, "–"
			}
			return num(*r.Extra.BusiestNodeCPUPerOpUS, "%.1f")
		})
	}
	if slices.ContainsFunc(runs, func(r compareRun) bool { return r.Extra.NodeCPUs > 0 }) {
		add("cost", "CPU quota per node, cores", "", func(r compareRun) (*float64, string) {
			if r.Extra.NodeCPUs <= 0 {
				return nil, "none"
			}
			return num(r.Extra.NodeCPUs, "%g")
		})
	}
	return rows
}

// compareChecks counts the end-of-run checks by state, failures first:
// "1 fail, 4 pass".
func compareChecks(cs []Check) string {
	if len(cs) == 0 {
		return "–"
	}
	n := map[string]int{}
	for _, c := range cs {
		st := c.State()
		if st == "unknown" && c.Status == "skipped" {
			st = "skipped" // the store has nothing to check there: not a doubt
		}
		n[st]++
	}
	var parts []string
	for _, st := range []string{"fail", "unknown", "pass", "skipped"} {
		if n[st] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n[st], st))
		}
	}
	return strings.Join(parts, ", ")
}

// compareFaultKey names a group of recoveries: the fault kind and the
// event it is measured from, "kill (inject)".
func compareFaultKey(r Recovery) string {
	ev := r.Event
	if ev == "" {
		ev = "?"
	}
	return r.Fault + " (" + ev + ")"
}

// compareFaultKinds lists the fault groups of every run, sorted.
func compareFaultKinds(runs []compareRun) []string {
	seen := map[string]bool{}
	for _, r := range runs {
		if r.S == nil {
			continue
		}
		for _, rec := range r.S.Recovery {
			seen[compareFaultKey(rec)] = true
		}
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	// By fault, then inject before heal: the order things happen in.
	rank := func(k string) string {
		return strings.Replace(strings.Replace(k, "(inject)", "(0)", 1), "(heal)", "(1)", 1)
	}
	sort.Slice(out, func(i, j int) bool { return rank(out[i]) < rank(out[j]) })
	return out
}

// compareRecovery is the median or max, over the faults of group key in
// the run, of a recovery time. what is "ops": until both reads and writes
// succeeded again (the later of the two; a workload without reads or
// without writes is not held to them) — fast to say that something works,
// but an operation that slipped through just as the fault struck counts
// too; or "throughput": until ok throughput was back to most of its level
// before the fault, which an outage cannot hide from. A fault after which
// that never happened counts as infinitely long, so "never" shows whenever
// it decides the statistic.
func compareRecovery(run compareRun, key, what, stat string) (*float64, string) {
	s := run.S
	var ts []float64
	for _, r := range s.Recovery {
		if compareFaultKey(r) != key {
			continue
		}
		t := 0.0
		var vs []*float64
		switch {
		case what == "throughput":
			vs = append(vs, r.ThroughputMS)
		default:
			if s.ReadFraction > 0 {
				vs = append(vs, r.FirstReadMS)
			}
			if s.ReadFraction < 1 {
				vs = append(vs, r.FirstWriteMS)
			}
		}
		for _, v := range vs {
			if v == nil || *v < 0 {
				t = math.Inf(1)
				break
			}
			t = math.Max(t, *v)
		}
		ts = append(ts, t)
	}
	if len(ts) == 0 {
		if kind, _, _ := strings.Cut(key, " ("); run.NotApplied[kind] {
			return nil, "not applied"
		}
		return nil, "–"
	}
	sort.Float64s(ts)
	v := ts[len(ts)-1]
	if stat == "median" {
		v = ts[(len(ts)-1)/2] // the lower median: a value some fault really had
	}
	if math.IsInf(v, 1) {
		return nil, "never"
	}
	return &v, compareMS(v)
}

func compareMS(v float64) string {
	if v < 1 && v > -1 {
		return fmt.Sprintf("%.3f", v)
	}
	return formatMS(v)
}

// compareFileJSON is the part of compare.json the page reads.
type compareFileJSON struct {
	Start        time.Time `json:"start"`
	Command      []string  `json:"command"`
	Seed         int64     `json:"seed"`
	TimeLimitS   float64   `json:"time_limit_s"`
	Clients      int       `json:"clients"`
	Keys         int       `json:"keys"`
	ReadFraction float64   `json:"read_fraction"`
	ValueSize    int       `json:"value_size"`
	Targets      string    `json:"targets"`
	Faults       bool      `json:"faults"`
	Runs         []struct {
		Store   string `json:"store"`
		Dir     string `json:"dir"`
		Verdict string `json:"verdict"`
		Error   string `json:"error"`
	} `json:"runs"`
}

type compareRunView struct {
	Store, Name, Dir, Href, Verdict, Pill, Error string
	ChartsSVG                                    template.HTML
	Note                                         string
}

type comparePage struct {
	CSS                template.CSS
	Cols               int // columns of the table: the metric and one per run
	F                  compareFileJSON
	Command, Generated string
	Verdict            string
	Runs               []compareRunView
	Rows               []compareRowView
	OverlaySVG         template.HTML
	Warnings           []string
}

type compareRowView struct {
	CompareRow
	NewSection bool
	Best       int // index of the better value, -1 when none
}

// compareColors tell the runs apart on the overlay chart.
var compareColors = []color.RGBA{
	{31, 119, 180, 255}, {214, 39, 40, 255}, {44, 160, 44, 255}, {148, 103, 189, 255},
}

// WriteCompare renders <dir>/compare.html from <dir>/compare.json and the
// runs it names. It is atomic, like WriteRun.
func WriteCompare(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, "compare.json"))
	if err != nil {
		return err
	}
	var f compareFileJSON
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(dir, "compare.json"), err)
	}
	page := comparePage{CSS: styleCSS, F: f, Command: shellJoin(f.Command), Generated: time.Now().UTC().Format(time.RFC3339)}
	dirs := make([]string, len(f.Runs))
	verdicts := make([]string, len(f.Runs))
	overlay := make([]*Timeline, len(f.Runs))
	var overlayBands []Band
	endS := 1.0
	for i, r := range f.Runs {
		v := compareRunView{Store: r.Store, Name: r.Store, Dir: r.Dir, Error: r.Error}
		if r.Dir != "" {
			v.Name = r.Dir // "memory-2" when a store is compared with itself
		}
		verdicts[i] = r.Verdict
		if r.Dir != "" && filepath.IsLocal(r.Dir) {
			dirs[i] = filepath.Join(dir, r.Dir)
			v.Href = relHref(r.Dir) + "/report.html"
			if _, err := os.Stat(filepath.Join(dirs[i], "report.html")); err != nil {
				v.Href = relHref(r.Dir) + "/"
			}
			if s, err := ReadSummary(dirs[i]); err == nil {
				verdicts[i] = s.Verdict
			}
			svg, tl, bands, end, note := compareRunCharts(dirs[i])
			v.ChartsSVG, v.Note, overlay[i] = svg, note, tl
			if i == 0 {
				// Every run replays the first run's schedule: its faults,
				// by kind only (whom they hit differs), band the overlay.
				for _, b := range bands {
					b.Targets, b.Role = nil, ""
					overlayBands = append(overlayBands, b)
				}
			}
			endS = math.Max(endS, end)
		} else {
			v.Note = "the run did not start"
		}
		v.Verdict = verdictClass(verdicts[i])
		v.Pill = map[string]string{verdictOK: "pass", verdictIllegal: "fail"}[v.Verdict]
		if v.Pill == "" {
			v.Pill = "unknown"
		}
		page.Runs = append(page.Runs, v)
	}
	page.Verdict = compareVerdict(verdicts)
	page.Cols = len(f.Runs) + 1
	rows := CompareRows(dirs)
	for i, r := range rows {
		page.Rows = append(page.Rows, compareRowView{
			CompareRow: r, NewSection: i == 0 || rows[i-1].Section != r.Section, Best: compareBest(r),
		})
	}
	if svg, err := compareOverlay(f, overlay, overlayBands, endS); err != nil {
		page.Warnings = append(page.Warnings, err.Error())
	} else {
		page.OverlaySVG = svg
	}
	var buf bytes.Buffer
	if err := compareTemplate.Execute(&buf, page); err != nil {
		return fmt.Errorf("compare %s: %w", dir, err)
	}
	return writeAtomic(filepath.Join(dir, "compare.html"), buf.Bytes())
}

// compareVerdict is the worst verdict: illegal if any run is, ok only when
// all are ok.
func compareVerdict(vs []string) string {
	if len(vs) == 0 {
		return verdictUnknown
	}
	out := verdictOK
	for _, v := range vs {
		switch verdictClass(v) {
		case verdictIllegal:
			return verdictIllegal
		case verdictUnknown:
			out = verdictUnknown
		}
	}
	return out
}

// compareBest is the index of the plainly better value of a row, or -1
// when the row has no direction, a value is missing, or they tie.
func compareBest(r CompareRow) int {
	if r.Better == "" || len(r.Values) < 2 {
		return -1
	}
	best := -1
	for i, v := range r.Values {
		if v == nil {
			return -1
		}
		if best < 0 || (r.Better == "higher" && *v > *r.Values[best]) || (r.Better == "lower" && *v < *r.Values[best]) {
			best = i
		}
	}
	for i, v := range r.Values {
		// A tie, or a difference the printed values do not show.
		if i != best && (*v == *r.Values[best] || (i < len(r.Text) && best < len(r.Text) && r.Text[i] == r.Text[best])) {
			return -1
		}
	}
	return best
}

// compareRunCharts draws one run's throughput and latency with its fault
// bands, as its own report does.
func compareRunCharts(dir string) (template.HTML, *Timeline, []Band, float64, string) {
	tl, err := ReadTimeline(filepath.Join(dir, "history.jsonl"))
	if err != nil {
		return "", nil, nil, 0, err.Error()
	}
	if tl.Buckets == 0 {
		return "", nil, nil, 0, "history.jsonl has no operations"
	}
	endS := float64(tl.EndNS) / 1e9
	if s, err := ReadSummary(dir); err == nil {
		endS = math.Max(endS, s.DurationS)
	}
	bands, _, _ := ReadBands(filepath.Join(dir, "nemesis.jsonl"), endS)
	for _, b := range bands {
		endS = math.Max(endS, b.End)
	}
	for i := range bands {
		if bands[i].Open {
			bands[i].End = endS
		}
	}
	bands = applied(bands)
	svg, err := timeCharts(tl, bands, endS)
	if err != nil {
		return "", tl, bands, endS, err.Error()
	}
	return template.HTML(svg), tl, bands, endS, ""
}

// compareOverlay draws every run's total ok throughput on one time axis:
// the runs ran one after the other, so the axis is time since each run's
// own start.
func compareOverlay(f compareFileJSON, tls []*Timeline, bands []Band, endS float64) (template.HTML, error) {
	ch := newChart("ok ops/s", endS, bands)
	drawn := 0
	for i, tl := range tls {
		if tl == nil || tl.Buckets == 0 {
			continue
		}
		ys := make([]float64, tl.Buckets)
		for _, counts := range tl.OK {
			for b := range ys {
				if b < len(counts) {
					ys[b] += float64(counts[b])
				}
			}
		}
		// The last bucket is partial: drop it rather than draw a cliff.
		if len(ys) > 1 {
			ys[len(ys)-1] = math.NaN()
		}
		name := f.Runs[i].Store
		if f.Runs[i].Dir != "" {
			name = f.Runs[i].Dir
		}
		if err := ch.series(name, ys, compareColors[i%len(compareColors)], false, 1.6); err != nil {
			return "", err
		}
		drawn++
	}
	if drawn == 0 {
		return "", nil
	}
	ch.p.Y.Tick.Marker = plainTicks{}
	ch.p.Y.Min = 0
	ch.p.Y.Max = math.Max(ch.maxY, 1) * (1.08 + 0.1*float64(ch.lanes))
	svg, err := renderStack(ch)
	if err != nil {
		return "", fmt.Errorf("overlay chart: %w", err)
	}
	return template.HTML(svg), nil
}

var compareTemplate = template.Must(template.New("compare").Funcs(template.FuncMap{
	"pct":   func(f float64) string { return fmt.Sprintf("%.0f%%", 100*f) },
	"isnew": func(r compareRowView) bool { return r.NewSection },
}).Parse(compareHTML))

const compareHTML = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Verdict}} · compare {{range $i, $r := .Runs}}{{if $i}} vs {{end}}{{$r.Store}}{{end}} · chainraft</title>
<style>{{.CSS}}
td.best { font-weight: 700; }
tr.section th { background: #fff; border-bottom: 2px solid var(--line); padding-top: 14px; }
</style>
</head>
<body>
<main>
<header class="run">
  <h1>{{range $i, $r := .Runs}}{{if $i}} vs {{end}}{{$r.Store}}{{end}}</h1>
  <span class="badge {{.Verdict}}" id="verdict">{{.Verdict}}</span>
  <span class="nav"><a href="../index.html">all runs</a></span>
  <div class="meta">
    seed <b>{{.F.Seed}}</b> · <b>{{printf "%.0f" .F.TimeLimitS}} s</b> per store
    · {{.F.Clients}} clients · {{.F.Keys}} keys · reads {{pct .F.ReadFraction}}
    {{- if .F.ValueSize}} · values {{.F.ValueSize}} B{{end}}
    · faults <b>{{if .F.Faults}}same schedule, targets by {{.F.Targets}}{{else}}none{{end}}</b>
    {{- if not .F.Start.IsZero}} · started <b>{{.F.Start.UTC.Format "2006-01-02 15:04:05 UTC"}}</b>{{end}}
  </div>
  {{- if .Command}}
  <pre class="cmd">$ {{.Command}}</pre>
  {{- end}}
</header>
{{- range .Warnings}}
<div class="error">{{.}}</div>
{{- end}}
<h2>Side by side</h2>
<table id="compare">
<thead><tr><th>metric</th>{{range .Runs}}<th class="n">{{.Name}}</th>{{end}}</tr></thead>
<tbody>
{{- range .Rows}}
{{- if isnew .}}
<tr class="section"><th colspan="{{$.Cols}}">{{.Section}}</th></tr>
{{- end}}
<tr><td>{{.Metric}}</td>{{$best := .Best}}{{range $i, $t := .Text}}<td class="n{{if eq $i $best}} best{{end}}">{{$t}}</td>{{end}}</tr>
{{- end}}
</tbody>
</table>
<p class="mut">Bold: the better value where one is plainly better. Latency is call to return of ok operations. Recovery is timed from a fault's event (inject or heal): <i>ops back</i> until both a read and a write succeeded again, <i>throughput back</i> until ok throughput returned to most of its level before the fault (never: it did not, or there was no level to return to).</p>
{{- if .OverlaySVG}}
<h2>Throughput over time</h2>
<figure>{{.OverlaySVG}}<figcaption>ok operations per second, each run from its own start{{if .F.Faults}}; bands: the faults of the shared schedule{{end}}</figcaption></figure>
{{- end}}
{{- range .Runs}}
<h2>{{.Name}} <span class="pill {{.Pill}}">{{.Verdict}}</span></h2>
<p>{{if .Href}}<a href="{{.Href}}">full report</a> · run directory <code>{{.Dir}}</code>{{end}}{{if .Error}} · <span class="never">{{.Error}}</span>{{end}}</p>
{{- if .ChartsSVG}}
<figure>{{.ChartsSVG}}<figcaption>throughput and latency of {{.Store}}, faults as bands</figcaption></figure>
{{- else if .Note}}
<p class="mut">{{.Note}}</p>
{{- end}}
{{- end}}
<p class="mut">Generated {{.Generated}} by chainraft.</p>
</main>
</body>
</html>
`
