package report

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"math"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

//go:embed templates
var templateFS embed.FS

var funcs = template.FuncMap{
	"join":  func(s []string) string { return strings.Join(s, ", ") },
	"ms":    formatMS,
	"deref": func(v *float64) float64 { return *v },
	"pct":   func(f float64) string { return fmt.Sprintf("%.0f%%", 100*f) },
	"recov": func(v *float64) template.HTML {
		if v == nil || *v < 0 {
			return `<span class="never">never</span>`
		}
		return template.HTML(template.HTMLEscapeString(formatMS(*v)))
	},
}

var (
	runTemplate   = template.Must(template.New("run.html.tmpl").Funcs(funcs).ParseFS(templateFS, "templates/run.html.tmpl"))
	indexTemplate = template.Must(template.New("index.html.tmpl").Funcs(funcs).ParseFS(templateFS, "templates/index.html.tmpl"))
	styleCSS      = mustRead("templates/style.css")
)

func mustRead(name string) template.CSS {
	b, err := templateFS.ReadFile(name)
	if err != nil {
		panic(fmt.Sprintf("report: embedded %s missing: %v", name, err))
	}
	return template.CSS(b)
}

func formatMS(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

type link struct {
	Name, Href, Size string
}

type bandRow struct {
	B      Band
	Color  template.CSS
	Lasted float64
}

type latencyRow struct {
	Kind string
	L    Latency
}

type runPage struct {
	Title, Verdict, VerdictPill string
	S                           *Summary
	EndS                        float64
	CSS                         template.CSS
	Warnings                    []string
	WorstP99, WorstRecovery     string
	Latency                     []latencyRow
	ChartsSVG                   template.HTML
	HistoryNote                 string
	Bands                       []bandRow
	HasNemesisLog               bool
	Injected                    int // faults that were applied
	CompareHref                 string
	Faults                      []faultRow
	FailingKeys, OtherViz       []link
	Files                       []link
	Generated                   string
}

// WriteRun renders <dir>/report.html from the run's files: summary.json
// (required), history.jsonl streamed into one-second buckets, nemesis.jsonl
// paired into fault bands, and whatever visualizations and logs are there.
// The page is written to a temporary file and renamed, so a reader (or
// `chainraft serve`) never sees half a report. A lock-workload run gets its
// own page (WriteLockRun).
func WriteRun(dir string) error {
	s, err := ReadSummary(dir)
	if errors.Is(err, ErrLockRun) {
		return WriteLockRun(dir)
	}
	if err != nil {
		return err
	}
	page := runPage{S: s, CSS: styleCSS, Generated: time.Now().UTC().Format(time.RFC3339)}
	// Titled by store first: a comparison's runs share their name
	// ("compared"), and the store is what tells them apart.
	page.Title = s.Name
	if page.Title == "" {
		page.Title = filepath.Base(dir)
	}
	if s.Store != "" {
		page.Title = s.Store + " · " + page.Title
	}
	if s.Compare != "" && filepath.IsLocal(filepath.FromSlash(strings.TrimPrefix(s.Compare, "../"))) {
		page.CompareHref = relHref(s.Compare) + "/compare.html"
	}
	page.Faults = faultRows(s)
	page.Verdict = verdictClass(s.Verdict)
	page.VerdictPill = map[string]string{verdictOK: "pass", verdictIllegal: "fail"}[page.Verdict]
	if page.VerdictPill == "" {
		page.VerdictPill = "unknown"
	}

	var tl *Timeline
	if t, err := ReadTimeline(filepath.Join(dir, "history.jsonl")); err == nil {
		tl = t
		if t.Malformed > 0 {
			page.Warnings = append(page.Warnings, fmt.Sprintf("history.jsonl: %d malformed line(s) skipped", t.Malformed))
		}
	} else if errors.Is(err, os.ErrNotExist) {
		page.HistoryNote = "history.jsonl is missing"
	} else {
		page.HistoryNote = err.Error()
	}

	page.EndS = s.DurationS
	if tl != nil {
		page.EndS = math.Max(page.EndS, float64(tl.EndNS)/1e9)
	}
	nemesisPath := filepath.Join(dir, "nemesis.jsonl")
	_, statErr := os.Stat(nemesisPath)
	page.HasNemesisLog = statErr == nil
	bands, malformed, err := ReadBands(nemesisPath, page.EndS)
	if err != nil {
		page.Warnings = append(page.Warnings, err.Error())
	}
	if malformed > 0 {
		page.Warnings = append(page.Warnings, fmt.Sprintf("nemesis.jsonl: %d malformed line(s) skipped", malformed))
	}
	for _, b := range bands {
		page.EndS = math.Max(page.EndS, b.End)
	}
	for i := range bands {
		if bands[i].Open { // unhealed faults last to the end of the charts
			bands[i].End = page.EndS
		}
	}

	if tl != nil && tl.Buckets > 0 {
		svg, err := timeCharts(tl, applied(bands), page.EndS, s.RequestTimeoutMS)
		if err != nil {
			return fmt.Errorf("report %s: %w", dir, err)
		}
		page.ChartsSVG = template.HTML(svg)
	} else if tl != nil {
		page.HistoryNote = "history.jsonl has no operations"
	}
	page.Injected = len(applied(bands))
	for _, b := range bands {
		page.Bands = append(page.Bands, bandRow{B: b, Color: template.CSS(cssColor(faultColor(b.Kind))), Lasted: b.End - b.Start})
	}

	kinds := make([]string, 0, len(s.Latency))
	for k := range s.Latency {
		kinds = append(kinds, k)
	}
	sort.Slice(kinds, func(i, j int) bool {
		if oi, oj := kindOrder(kinds[i]), kindOrder(kinds[j]); oi != oj {
			return oi < oj
		}
		return kinds[i] < kinds[j]
	})
	for _, k := range kinds {
		page.Latency = append(page.Latency, latencyRow{Kind: k, L: s.Latency[k]})
	}
	page.WorstP99 = "–"
	if v, ok := s.worstP99(); ok {
		page.WorstP99 = formatMS(v) + " ms"
	}
	page.WorstRecovery = "–"
	if v, fault, never, ok := s.worstRecovery(); ok {
		if never {
			page.WorstRecovery = "never (" + fault + ")"
		} else {
			page.WorstRecovery = formatMS(v) + " ms"
		}
	}
	if err := decoratePorcupine(dir, s, bands); err != nil {
		page.Warnings = append(page.Warnings, err.Error())
	}
	page.FailingKeys, page.OtherViz = vizLinks(dir, s)
	page.Files = fileLinks(dir)

	var buf bytes.Buffer
	if err := runTemplate.Execute(&buf, page); err != nil {
		return fmt.Errorf("report %s: %w", dir, err)
	}
	return writeAtomic(filepath.Join(dir, "report.html"), buf.Bytes())
}

// faultRow is one line of the page's fault-cost table, in words.
type faultRow struct {
	F                                      FaultAvailability
	Heal, Unavail, ReadOut, WriteOut       string
	FirstRead, FirstWrite, AfterHeal, Back string
}

// faultRows puts each fault's availability in words: a thing that did not
// happen is said as such ("not before the heal"), never as a number.
func faultRows(s *Summary) []faultRow {
	if s.Availability == nil {
		return nil
	}
	secs := func(v *float64) string {
		if v == nil {
			return "–"
		}
		return fmt.Sprintf("%.1f", *v)
	}
	var out []faultRow
	for _, f := range s.Availability.Faults {
		r := faultRow{F: f, Heal: "after the workload", Unavail: fmt.Sprintf("%.1f", f.UnavailableS),
			ReadOut: secs(f.ReadOutageS), WriteOut: secs(f.WriteOutageS)}
		if f.HealS != nil {
			r.Heal = fmt.Sprintf("%.2f", *f.HealS)
		}
		first := func(v *float64) string {
			switch {
			case v != nil:
				return compareMS(*v) + " ms"
			case f.HealS == nil || *f.HealS > f.HorizonS:
				return "not before the next fault"
			}
			return "not before the heal"
		}
		r.FirstRead, r.FirstWrite = first(f.FirstReadMS), first(f.FirstWriteMS)
		if f.ReadOutageS == nil && f.FirstReadMS == nil {
			r.FirstRead = "–"
		}
		if f.WriteOutageS == nil && f.FirstWriteMS == nil {
			r.FirstWrite = "–"
		}
		r.AfterHeal = "–"
		if f.HealedInTime() {
			parts := []string{}
			if f.ReadAfterHealMS != nil {
				parts = append(parts, "read "+compareMS(*f.ReadAfterHealMS))
			}
			if f.WriteAfterHealMS != nil {
				parts = append(parts, "write "+compareMS(*f.WriteAfterHealMS))
			}
			if len(parts) > 0 {
				r.AfterHeal = strings.Join(parts, ", ") + " ms"
			}
		}
		_, r.Back = backText(f)
		if v := f.BackAfterHealMS; v != nil && *v > 0 && f.HealedInTime() {
			r.Back += " ms"
		}
		out = append(out, r)
	}
	return out
}

// kindOrder lists op kinds in the KV interface's order, then any others,
// then "all" (the summary row) last.
func kindOrder(k string) int {
	for i, o := range []string{"get", "put", "append", "cas"} {
		if k == o {
			return i
		}
	}
	if k == "all" {
		return 101
	}
	return 100
}

// vizLinks links each failing key to its visualization: the path the
// checker recorded in key_results, else porcupine/<key>.html when that file
// exists; and lists the other visualizations (small runs visualize every
// key), from summary.json and from the porcupine directory.
func vizLinks(dir string, s *Summary) (keys, others []link) {
	recorded := map[string]string{}
	for _, kr := range s.KeyResults {
		if kr.Visualization != "" {
			recorded[kr.Key] = kr.Visualization
		}
	}
	exists := func(rel string) bool {
		if !filepath.IsLocal(filepath.FromSlash(rel)) {
			return false
		}
		fi, err := os.Stat(filepath.Join(dir, filepath.FromSlash(rel)))
		return err == nil && !fi.IsDir()
	}
	used := map[string]bool{}
	for _, k := range s.FailingKeys {
		l := link{Name: k}
		for _, rel := range []string{recorded[k], "porcupine/" + k + ".html"} {
			if rel != "" && exists(rel) {
				l.Href, used[filepath.ToSlash(rel)] = relHref(rel), true
				break
			}
		}
		keys = append(keys, l)
	}
	all := append([]string(nil), s.Visualizations...)
	entries, _ := os.ReadDir(filepath.Join(dir, "porcupine"))
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".html") {
			all = append(all, "porcupine/"+e.Name())
		}
	}
	for _, rel := range all {
		rel = filepath.ToSlash(rel)
		if used[rel] || !exists(rel) {
			continue
		}
		used[rel] = true
		others = append(others, link{Name: strings.TrimSuffix(path.Base(rel), ".html"), Href: relHref(rel)})
	}
	return keys, others
}

// relHref escapes each segment of a slash-separated relative path.
func relHref(rel string) string {
	parts := strings.Split(filepath.ToSlash(rel), "/")
	for i := range parts {
		parts[i] = url.PathEscape(parts[i])
	}
	return strings.Join(parts, "/")
}

// fileLinks lists the run's raw files: every file at the top of the run
// directory (summary, history, nemesis log, harness log), the files at the
// top of nodes/ and zk/ (process logs), and each data directory below them
// as one link with its total size: the data itself is for digging, not for
// a list.
func fileLinks(dir string) []link {
	var out []link
	first := map[string]int{"summary.json": 0, "history.jsonl": 1, "nemesis.jsonl": 2, "harness.log": 3}
	top, _ := os.ReadDir(dir)
	sort.SliceStable(top, func(i, j int) bool {
		ri, oki := first[top[i].Name()]
		rj, okj := first[top[j].Name()]
		switch {
		case oki && okj:
			return ri < rj
		case oki != okj:
			return oki
		}
		return top[i].Name() < top[j].Name()
	})
	for _, e := range top {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") || name == "report.html" {
			continue
		}
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			out = append(out, link{Name: name, Href: relHref(name), Size: humanSize(fi.Size())})
		}
	}
	for _, sub := range []string{"nodes", "zk"} {
		entries, _ := os.ReadDir(filepath.Join(dir, sub))
		for _, e := range entries {
			rel := sub + "/" + e.Name()
			if e.IsDir() {
				out = append(out, link{Name: rel + "/", Href: relHref(rel) + "/", Size: humanSize(dirSize(filepath.Join(dir, sub, e.Name()))) + " of data"})
				continue
			}
			if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
				out = append(out, link{Name: rel, Href: relHref(rel), Size: humanSize(fi.Size())})
			}
		}
	}
	return out
}

func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

func humanSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// writeAtomic writes through a temporary file in the same directory and
// renames it over path.
func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
