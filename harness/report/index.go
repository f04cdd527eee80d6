package report

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

type indexRow struct {
	Dir, Href, Store, Verdict, Pill, Error string
	Bug                                    string
	StartKey, StartText                    string
	Throughput, Duration                   float64
	P99                                    string // sort key; empty when unknown
	P99Text                                string
	Recovery, RecoveryText, RecoveryFault  string
	Healthy, HealthyText                   string // sort key and text; "" / "–" when unknown
	Unavailable, UnavailableText           string
	Ops, Seed                              int64
	FaultKinds                             string // faults applied, "kill×2, pause": to read and to filter on
	Failing                                int
}

type indexPage struct {
	CSS       template.CSS
	Rows      []indexRow
	Stores    []string
	Counts    struct{ OK, Illegal, Unknown int }
	Latest    bool
	Generated string
	Skipped   []string // run directories whose summary.json would not decode
	Compares  []string // compare directories (compare.html, no summary), newest first
}

// WriteIndex renders <runsDir>/index.html listing every run directory (a
// subdirectory with a summary.json), newest first. Lock-workload runs are
// listed with their own verdict (a violation shows as illegal) and their
// lock report (see lockRow). Symbolic links such as
// runs/latest are not listed twice; the page links latest when it exists.
// A run whose summary cannot be read is listed as skipped, not fatal: one
// broken run must not hide the others.
func WriteIndex(runsDir string) error {
	entries, err := os.ReadDir(runsDir)
	if err != nil {
		return err
	}
	if err := checkOwnIndex(filepath.Join(runsDir, "index.html")); err != nil {
		return err
	}
	page := indexPage{CSS: styleCSS, Generated: time.Now().UTC().Format("2006-01-02 15:04:05 UTC")}
	stores := map[string]bool{}
	for _, e := range entries {
		if e.Type()&os.ModeSymlink != 0 {
			if e.Name() == "latest" {
				page.Latest = true
			}
			continue
		}
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(runsDir, e.Name())
		var row indexRow
		s, err := ReadSummary(dir)
		if errors.Is(err, ErrLockRun) {
			ls, lerr := ReadLockSummary(dir)
			if lerr != nil {
				page.Skipped = append(page.Skipped, fmt.Sprintf("%s: %v", e.Name(), lerr))
				continue
			}
			// WriteRun cannot render a lock run, so `chainraft serve` and
			// `chainraft report` would leave one made before lock reports
			// existed without a page: write the missing one here.
			if _, err := os.Stat(filepath.Join(dir, "report.html")); errors.Is(err, os.ErrNotExist) {
				_ = WriteLockRun(dir) // without it the row links the directory
			}
			row = lockRow(dir, e, ls)
		} else {
			if errors.Is(err, ErrNoSummary) {
				// A compare directory links its runs, which are listed
				// themselves; the index links its side-by-side page.
				if _, err := os.Stat(filepath.Join(dir, "compare.html")); err == nil {
					page.Compares = append(page.Compares, e.Name())
				}
				continue
			}
			if err != nil {
				page.Skipped = append(page.Skipped, fmt.Sprintf("%s: %v", e.Name(), err))
				continue
			}
			row = rowOf(dir, e, s)
		}
		page.Rows = append(page.Rows, row)
		switch row.Verdict {
		case verdictOK:
			page.Counts.OK++
		case verdictIllegal:
			page.Counts.Illegal++
		default:
			page.Counts.Unknown++
		}
		if row.Store != "" {
			stores[row.Store] = true
		}
	}
	sort.SliceStable(page.Rows, func(i, j int) bool {
		if page.Rows[i].StartKey != page.Rows[j].StartKey {
			return page.Rows[i].StartKey > page.Rows[j].StartKey
		}
		return page.Rows[i].Dir > page.Rows[j].Dir
	})
	sort.Sort(sort.Reverse(sort.StringSlice(page.Compares)))
	for st := range stores {
		page.Stores = append(page.Stores, st)
	}
	sort.Strings(page.Stores)
	var buf bytes.Buffer
	if err := indexTemplate.Execute(&buf, page); err != nil {
		return fmt.Errorf("index %s: %w", runsDir, err)
	}
	return writeAtomic(filepath.Join(runsDir, "index.html"), buf.Bytes())
}

// ErrForeignIndex: the directory's index.html was not written by
// chainraft, so it is left alone (a runs directory may sit in a folder a
// web server already serves).
var ErrForeignIndex = errors.New("index.html was not written by chainraft: refusing to overwrite it")

// checkOwnIndex refuses an existing index.html that is not chainraft's: a
// page this package wrote carries its title (older versions) or its
// generator mark.
func checkOwnIndex(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	head := make([]byte, 4096)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	if bytes.Contains(head, []byte(`<meta name="generator" content="chainraft">`)) || bytes.Contains(head, []byte("<title>chainraft runs</title>")) {
		return nil
	}
	return fmt.Errorf("%s: %w", path, ErrForeignIndex)
}

func rowOf(dir string, e os.DirEntry, s *Summary) indexRow {
	r := indexRow{
		Dir: e.Name(), Store: s.Store, Verdict: verdictClass(s.Verdict), Error: s.Error, Bug: s.Bug,
		Throughput: s.Throughput, Duration: s.DurationS, Ops: s.OpsTotal, Seed: s.Seed, Failing: len(s.FailingKeys),
	}
	r.Pill = map[string]string{verdictOK: "pass", verdictIllegal: "fail"}[r.Verdict]
	if r.Pill == "" {
		r.Pill = "unknown"
	}
	if bands, _, err := ReadBands(filepath.Join(dir, "nemesis.jsonl"), s.DurationS); err == nil {
		r.FaultKinds = faultKinds(applied(bands))
	}
	r.Href = url.PathEscape(e.Name()) + "/"
	if _, err := os.Stat(filepath.Join(dir, "report.html")); err == nil {
		r.Href += "report.html"
	}
	start := s.Start
	if start.IsZero() {
		if fi, err := e.Info(); err == nil {
			start = fi.ModTime()
		}
	}
	r.StartKey = start.UTC().Format(time.RFC3339Nano)
	r.StartText = start.UTC().Format("2006-01-02 15:04:05")
	r.P99Text = "–"
	if v, ok := s.worstP99(); ok {
		r.P99, r.P99Text = fmt.Sprint(v), formatMS(v)
	}
	r.HealthyText, r.UnavailableText = "–", "–"
	if a := s.Availability; a != nil && a.HealthyThroughput != nil {
		r.Healthy, r.HealthyText = fmt.Sprint(*a.HealthyThroughput), fmt.Sprintf("%.0f", *a.HealthyThroughput)
		r.Unavailable, r.UnavailableText = fmt.Sprint(a.UnavailableS), fmt.Sprintf("%.1f", a.UnavailableS)
	}
	r.RecoveryText = "–"
	if v, fault, never, ok := s.worstRecovery(); ok {
		r.RecoveryFault = fault
		if never {
			r.Recovery, r.RecoveryText = "1e308", "never"
		} else {
			r.Recovery, r.RecoveryText = fmt.Sprint(v), formatMS(v)
		}
	}
	return r
}

// faultKinds counts faults by kind, in order of first appearance.
func faultKinds(bands []Band) string {
	counts := map[string]int{}
	var order []string
	for _, b := range bands {
		if counts[b.Kind] == 0 {
			order = append(order, b.Kind)
		}
		counts[b.Kind]++
	}
	parts := make([]string, len(order))
	for i, k := range order {
		parts[i] = k
		if counts[k] > 1 {
			parts[i] = fmt.Sprintf("%s×%d", k, counts[k])
		}
	}
	return strings.Join(parts, ", ")
}
