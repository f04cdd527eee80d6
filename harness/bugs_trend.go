package harness

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// The nightly job (scripts/nightly.sh, `make nightly`) runs the matrix —
// both stores × fault mixes × seeds, plus the seeded bugs — keeps every
// run, and appends one NightRecord per night to runs/nightly/trend.jsonl.
// This file turns its runs into that record, renders the trend page (one
// self-contained HTML file: inline SVG, no scripts, no external assets) and
// keeps the README's "What it catches" table current.

// NightRun is one run of a night, as the trend needs it.
type NightRun struct {
	Store  string `json:"store"`
	Faults string `json:"faults"`        // --nemesis kinds, or "none"
	Bug    string `json:"bug,omitempty"` // the planted bug; "" for a run of the correct store
	Seed   int64  `json:"seed"`
	// Verdict is the linearizability verdict; Caught says whether a run
	// with a bug was judged not linearizable or failed an end-of-run
	// check (for a run without a bug, that is a false alarm).
	Verdict      string   `json:"verdict"`
	Caught       bool     `json:"caught"`
	Error        string   `json:"error,omitempty"`
	FailedChecks []string `json:"failed_checks,omitempty"`
	Seconds      float64  `json:"seconds"` // wall time, check included
	Throughput   float64  `json:"throughput"`
	P99MS        float64  `json:"p99_ms"`
	// RecoveryMS is the median, over the run's fault injections, of the
	// time to the first ok write after the injection; 0 without faults.
	RecoveryMS   float64 `json:"recovery_ms"`
	CheckSeconds float64 `json:"check_seconds"`
	Dir          string  `json:"dir"`
}

// NightRunOf extracts a NightRun from a finished run.
func NightRunOf(res *RunResult, runErr error, faults string, seconds float64) NightRun {
	n := NightRun{Faults: faults, Seconds: seconds}
	if res != nil && res.Summary != nil {
		s := res.Summary
		n.Store, n.Bug, n.Seed, n.Dir = s.Store, s.Bug, s.Seed, res.Dir
		n.Verdict, n.Error, n.FailedChecks = s.Verdict, s.Error, FailedChecks(s)
		n.Throughput, n.CheckSeconds = s.Throughput, s.CheckSeconds
		if l, ok := s.Latency["all"]; ok {
			n.P99MS = l.P99MS
		}
		var rec []float64
		for _, r := range s.Recovery {
			if r.Event == "inject" && r.FirstWriteMs != nil {
				rec = append(rec, *r.FirstWriteMs)
			}
		}
		n.RecoveryMS = medianOf(rec)
	}
	if runErr != nil && n.Error == "" {
		n.Error = runErr.Error()
	}
	n.Caught = runErr == nil && (n.Verdict == "illegal" || len(n.FailedChecks) > 0)
	return n
}

// NightRecord is one night: one line of trend.jsonl.
type NightRecord struct {
	Date     string  `json:"date"` // YYYY-MM-DD (UTC)
	Commit   string  `json:"commit,omitempty"`
	BudgetS  float64 `json:"budget_s"`
	ElapsedS float64 `json:"elapsed_s"`
	Dir      string  `json:"dir"` // the night's run directory
	// Shards is how many runners shared the night (0 or 1: one).
	Shards int `json:"shards,omitempty"`
	// MissingShards are shards that left no record (a runner that failed
	// or timed out): the night sums up the others.
	MissingShards []string     `json:"missing_shards,omitempty"`
	Stores        []StoreNight `json:"stores"`
	Bugs          []BugNight   `json:"bugs"`
}

// StoreNight sums up a night's runs of one correct store (all fault mixes).
type StoreNight struct {
	Store string `json:"store"`
	Runs  int    `json:"runs"`
	OK    int    `json:"ok"`
	// FalseAlarms are runs of the correct store judged not linearizable or
	// failing an end-of-run check: each is a harness bug or a store bug.
	FalseAlarms int `json:"false_alarms"`
	Unknown     int `json:"unknown"` // the check ran out of budget
	Failed      int `json:"failed"`  // the run itself failed
	// Medians over the runs.
	Throughput   float64 `json:"throughput"`
	P99MS        float64 `json:"p99_ms"`
	RecoveryMS   float64 `json:"recovery_ms"`
	CheckSeconds float64 `json:"check_seconds"`
}

// BugNight sums up a night's runs of one seeded bug.
type BugNight struct {
	Bug     string  `json:"bug"`
	Store   string  `json:"store"`
	Exposes string  `json:"exposes"`
	Runs    int     `json:"runs"`
	Caught  int     `json:"caught"`
	Rate    float64 `json:"rate"`
	// MedianDetectS is the median wall time of runs it took to catch the
	// bug: from the start of its first run (or the run after the previous
	// detection) to the end of the detecting run.
	MedianDetectS float64 `json:"median_detect_s"`
	// FirstDetectS is that time for the night's first detection.
	FirstDetectS float64 `json:"first_detect_s"`
}

// SummarizeNight groups a night's runs (in the order they ran) by store and
// by bug.
func SummarizeNight(rec NightRecord, runs []NightRun) NightRecord {
	byStore := map[string][]NightRun{}
	byBug := map[string][]NightRun{}
	for _, r := range runs {
		if r.Bug == "" {
			byStore[r.Store] = append(byStore[r.Store], r)
		} else {
			byBug[r.Store+"/"+r.Bug] = append(byBug[r.Store+"/"+r.Bug], r)
		}
	}
	rec.Stores, rec.Bugs = nil, nil
	for _, store := range sortedStringKeys(byStore) {
		rs := byStore[store]
		s := StoreNight{Store: store, Runs: len(rs)}
		var tp, p99, recov, check []float64
		for _, r := range rs {
			switch {
			case r.Error != "" && !r.Caught && r.Verdict != "illegal":
				s.Failed++
			case r.Caught:
				s.FalseAlarms++
			case r.Verdict == "ok":
				s.OK++
			default:
				s.Unknown++
			}
			if r.Error == "" {
				tp, p99, check = append(tp, r.Throughput), append(p99, r.P99MS), append(check, r.CheckSeconds)
				if r.RecoveryMS > 0 {
					recov = append(recov, r.RecoveryMS)
				}
			}
		}
		s.Throughput, s.P99MS, s.RecoveryMS, s.CheckSeconds = medianOf(tp), medianOf(p99), medianOf(recov), medianOf(check)
		rec.Stores = append(rec.Stores, s)
	}
	for _, b := range SeededBugs() {
		rs, ok := byBug[b.Store+"/"+b.Name]
		if !ok {
			continue
		}
		bn := BugNight{Bug: b.Name, Store: b.Store, Exposes: b.Exposes, Runs: len(rs)}
		var detect []float64
		var since float64
		for _, r := range rs {
			since += r.Seconds
			if r.Caught {
				bn.Caught++
				detect = append(detect, since)
				since = 0
			}
		}
		if len(detect) > 0 {
			bn.FirstDetectS = detect[0]
		}
		bn.Rate = float64(bn.Caught) / float64(bn.Runs)
		bn.MedianDetectS = medianOf(detect)
		rec.Bugs = append(rec.Bugs, bn)
	}
	return rec
}

// AppendTrend appends rec to trend.jsonl at path.
func AppendTrend(path string, rec NightRecord) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	line, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ReadTrend reads trend.jsonl; a torn last line (a night killed mid-write)
// is ignored, a bad line elsewhere is an error.
func ReadTrend(r io.Reader) ([]NightRecord, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var out []NightRecord
	var pending error
	for n := 1; sc.Scan(); n++ {
		if pending != nil {
			return nil, pending
		}
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var rec NightRecord
		if err := json.Unmarshal(line, &rec); err != nil {
			pending = fmt.Errorf("trend line %d: %w", n, err)
			continue
		}
		out = append(out, rec)
	}
	return out, sc.Err()
}

// series is one line of a trend chart.
type series struct {
	Name   string
	Points []float64 // one per night, NaN-free: missing nights are -1
}

type chart struct {
	Title string
	Unit  string
	SVG   template.HTML
}

// WriteTrendPage renders the nights into one self-contained HTML page.
func WriteTrendPage(path string, nights []NightRecord) error {
	var dates []string
	for _, n := range nights {
		dates = append(dates, n.Date)
	}
	storeSeries := func(get func(StoreNight) float64) []series {
		var out []series
		for _, store := range storesIn(nights) {
			s := series{Name: store}
			for _, n := range nights {
				v := -1.0
				for _, sn := range n.Stores {
					if sn.Store == store {
						v = get(sn)
					}
				}
				s.Points = append(s.Points, v)
			}
			out = append(out, s)
		}
		return out
	}
	var bugSeries []series
	for _, b := range SeededBugs() {
		s := series{Name: b.Store + "/" + b.Name}
		seen := false
		for _, n := range nights {
			v := -1.0
			for _, bn := range n.Bugs {
				if bn.Bug == b.Name && bn.Store == b.Store {
					v, seen = 100*bn.Rate, true
				}
			}
			s.Points = append(s.Points, v)
		}
		if seen {
			bugSeries = append(bugSeries, s)
		}
	}
	charts := []chart{
		{Title: "Throughput (median over runs)", Unit: "ok ops/s", SVG: lineChart(dates, storeSeries(func(s StoreNight) float64 { return s.Throughput }))},
		{Title: "p99 latency (median over runs)", Unit: "ms", SVG: lineChart(dates, storeSeries(func(s StoreNight) float64 { return s.P99MS }))},
		{Title: "Recovery: first ok write after a fault (median)", Unit: "ms", SVG: lineChart(dates, storeSeries(func(s StoreNight) float64 {
			if s.RecoveryMS == 0 {
				return -1 // no fault recovered from that night: no point
			}
			return s.RecoveryMS
		}))},
		{Title: "Check time (median over runs)", Unit: "s", SVG: lineChart(dates, storeSeries(func(s StoreNight) float64 { return s.CheckSeconds }))},
		{Title: "Seeded bugs: detection rate", Unit: "% of runs", SVG: lineChart(dates, bugSeries)},
	}
	rev := make([]NightRecord, len(nights))
	for i, n := range nights {
		rev[len(nights)-1-i] = n
	}
	var buf bytes.Buffer
	if err := trendTmpl.Execute(&buf, map[string]any{"Charts": charts, "Nights": rev}); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

var chartColors = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2"}

// lineChart draws the series over the nights as an inline SVG.
func lineChart(dates []string, ss []series) template.HTML {
	const w, h, left, right, top, bottom = 640.0, 200.0, 50.0, 150.0, 10.0, 30.0
	maxV := 0.0
	for _, s := range ss {
		for _, v := range s.Points {
			maxV = max(maxV, v)
		}
	}
	if maxV <= 0 {
		maxV = 1
	}
	n := len(dates)
	x := func(i int) float64 {
		if n <= 1 {
			return left + (w-left-right)/2
		}
		return left + float64(i)*(w-left-right)/float64(n-1)
	}
	y := func(v float64) float64 { return top + (h-top-bottom)*(1-v/maxV) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="11">`, w, h, w, h)
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#999"/>`, left, h-bottom, w-right, h-bottom)
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#999"/>`, left, top, left, h-bottom)
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="end">%s</text>`, left-4, top+8, template.HTMLEscapeString(fmtNum(maxV)))
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="end">0</text>`, left-4, h-bottom)
	if n > 0 {
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="start">%s</text>`, x(0), h-bottom+16, template.HTMLEscapeString(dates[0]))
		if n > 1 {
			fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="end">%s</text>`, x(n-1), h-bottom+16, template.HTMLEscapeString(dates[n-1]))
		}
	}
	for si, s := range ss {
		c := chartColors[si%len(chartColors)]
		var pts []string
		for i, v := range s.Points {
			if v < 0 {
				continue
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(i), y(v)))
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"><title>%s %s: %s</title></circle>`,
				x(i), y(v), c, template.HTMLEscapeString(s.Name), template.HTMLEscapeString(dates[i]), template.HTMLEscapeString(fmtNum(v)))
		}
		if len(pts) > 1 {
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`, c, strings.Join(pts, " "))
		}
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="10" height="10" fill="%s"/><text x="%.0f" y="%.0f">%s</text>`,
			w-right+10, top+float64(si)*16, c, w-right+24, top+float64(si)*16+9, template.HTMLEscapeString(s.Name))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // built from escaped parts above
}

func fmtNum(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 1:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.3f", v)
}

var trendTmpl = template.Must(template.New("trend").Funcs(template.FuncMap{
	"pct": func(v float64) string { return fmt.Sprintf("%.0f%%", 100*v) },
	"num": fmtNum,
}).Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>chainraft nightly trend</title>
<style>
body{font-family:sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}
td.l,th.l{text-align:left}
.bad{color:#b00;font-weight:bold}
</style></head><body>
<h1>chainraft nightly trend</h1>
<p>One point per night: both stores under the fault matrix (runs of the correct stores) and the seeded bugs
(each run with a bug planted and the faults that expose it). Written by <code>make nightly</code>.</p>
{{range .Charts}}<h2>{{.Title}} <small>({{.Unit}})</small></h2>
{{.SVG}}
{{end}}
<h2>Nights</h2>
{{range .Nights}}<h3>{{.Date}}{{if .Commit}} — {{.Commit}}{{end}}</h3>
<p>budget {{num .BudgetS}} s, ran {{num .ElapsedS}} s{{if gt .Shards 1}} on {{.Shards}} runners{{end}}{{if .MissingShards}} <span class="bad">(no record from shard {{range $i, $s := .MissingShards}}{{if $i}}, {{end}}{{$s}}{{end}})</span>{{end}}, runs in <code>{{.Dir}}</code></p>
<table><tr><th class="l">store</th><th>runs</th><th>ok</th><th>false alarms</th><th>unknown</th><th>failed</th><th>throughput</th><th>p99 ms</th><th>recovery ms</th><th>check s</th></tr>
{{range .Stores}}<tr><td class="l">{{.Store}}</td><td>{{.Runs}}</td><td>{{.OK}}</td><td{{if .FalseAlarms}} class="bad"{{end}}>{{.FalseAlarms}}</td><td>{{.Unknown}}</td><td{{if .Failed}} class="bad"{{end}}>{{.Failed}}</td><td>{{num .Throughput}}</td><td>{{num .P99MS}}</td><td>{{num .RecoveryMS}}</td><td>{{num .CheckSeconds}}</td></tr>
{{end}}</table>
<table><tr><th class="l">bug</th><th class="l">fault that exposes it</th><th>runs</th><th>caught</th><th>rate</th><th>median time to detection s</th></tr>
{{range .Bugs}}<tr><td class="l">{{.Store}}/{{.Bug}}</td><td class="l">{{.Exposes}}</td><td>{{.Runs}}</td><td>{{.Caught}}</td><td{{if lt .Rate 0.5}} class="bad"{{end}}>{{pct .Rate}}</td><td>{{num .MedianDetectS}}</td></tr>
{{end}}</table>
{{end}}
</body></html>
`))

// Markers around the README's "What it catches" table; the nightly job
// rewrites what is between them.
const (
	CatchesBegin = "<!-- what-it-catches:begin (written by make nightly) -->"
	CatchesEnd   = "<!-- what-it-catches:end -->"
)

// CatchesTable is the README table for a night: each seeded bug, the fault
// that exposes it, its detection rate and median time to detection.
func CatchesTable(rec NightRecord) string {
	var b strings.Builder
	fmt.Fprintf(&b, "| Store | Seeded bug | The mistake | Fault that exposes it | Detection rate | Median time to detection |\n")
	fmt.Fprintf(&b, "| --- | --- | --- | --- | --- | --- |\n")
	for _, sb := range SeededBugs() {
		rate, med := "not run", "–"
		for _, bn := range rec.Bugs {
			if bn.Bug == sb.Name && bn.Store == sb.Store {
				rate = fmt.Sprintf("%d/%d (%.0f%%)", bn.Caught, bn.Runs, 100*bn.Rate)
				if bn.Caught > 0 {
					med = fmt.Sprintf("%.0f s", bn.MedianDetectS)
				}
			}
		}
		fmt.Fprintf(&b, "| %s | `%s` | %s | %s | %s | %s |\n", sb.Store, sb.Name, sb.Mistake, sb.Exposes, rate, med)
	}
	for _, sb := range SeededBugs() {
		if sb.Undetected != "" {
			fmt.Fprintf(&b, "\nNot reliably caught yet — `%s`: %s.\n", sb.Name, sb.Undetected)
		}
	}
	fmt.Fprintf(&b, "\nMeasured by `make nightly` on %s (%s of budget)", rec.Date, fmtDuration(rec.BudgetS))
	if rec.Commit != "" {
		fmt.Fprintf(&b, " at %s", rec.Commit)
	}
	b.WriteString(".\n")
	return b.String()
}

func fmtDuration(s float64) string {
	if s >= 60 {
		return fmt.Sprintf("%.0f min", s/60)
	}
	return fmt.Sprintf("%.0f s", s)
}

// ErrNoCatchesSection: the README lacks the markers to write between.
var ErrNoCatchesSection = errors.New("README has no what-it-catches markers")

// UpdateCatchesTable rewrites the table between CatchesBegin and CatchesEnd
// in the README at path.
func UpdateCatchesTable(path string, rec NightRecord) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(b)
	i := strings.Index(s, CatchesBegin)
	j := strings.Index(s, CatchesEnd)
	if i < 0 || j < i {
		return fmt.Errorf("%s: %w", path, ErrNoCatchesSection)
	}
	out := s[:i+len(CatchesBegin)] + "\n" + CatchesTable(rec) + s[j:]
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(out), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func storesIn(nights []NightRecord) []string {
	seen := map[string]bool{}
	for _, n := range nights {
		for _, s := range n.Stores {
			seen[s.Store] = true
		}
	}
	return sortedStringKeys(seen)
}

func sortedStringKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func medianOf(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
