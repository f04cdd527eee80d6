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
	"errors"
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
	// or a thing that did not happen, which Text says in words).
	Values []*float64 `json:"values"`
	// Text is each value as printed.
	Text []string `json:"text"`
	// Ratio is each later run's value over the first run's ("0.67×"):
	// chain / raft in `make run`. "–" where either has no number or the
	// first is zero.
	Ratio []string `json:"ratio,omitempty"`
	// Better is "higher" or "lower" when the row has a direction; a value
	// is marked better only when it beats every other by more than
	// NoiseFraction (and by more than Noise, for rows whose small values
	// are noise, such as seconds measured in bins).
	Better string  `json:"better,omitempty"`
	Noise  float64 `json:"noise,omitempty"`
}

// NoiseFraction is how far apart two values must be before one is called
// better: two runs of the same store on a shared machine differ by a few
// per cent, so a smaller difference says nothing about the stores.
const NoiseFraction = 0.10

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
// "–"). The table leads with what decides a comparison: the verdict, then
// availability (healthy throughput and unavailable seconds, apart), then
// throughput over the whole run, latency, each fault's cost and the cost
// per operation. Rows a run cannot have are left out rather than shown
// empty: a latency row only for op kinds some run completed, fault rows
// only for faults some run had, the messages row only when a store counts
// them.
func CompareRows(runDirs []string) []CompareRow {
	runs := make([]compareRun, len(runDirs))
	for i, d := range runDirs {
		runs[i] = readCompareRun(d)
	}
	return compareRows(runs)
}

func compareRows(runs []compareRun) []CompareRow {
	var rows []CompareRow
	addN := func(section, metric, better string, noise float64, f func(r compareRun) (*float64, string)) {
		row := CompareRow{Section: section, Metric: metric, Better: better, Noise: noise}
		for _, r := range runs {
			var v *float64
			t := "–"
			if r.S != nil {
				v, t = f(r)
			}
			row.Values = append(row.Values, v)
			row.Text = append(row.Text, t)
		}
		row.Ratio = ratios(row.Values)
		rows = append(rows, row)
	}
	add := func(section, metric, better string, f func(r compareRun) (*float64, string)) {
		addN(section, metric, better, 0, f)
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

	avail := slices.ContainsFunc(runs, func(r compareRun) bool { return r.S != nil && r.S.Availability != nil })
	if avail {
		add("availability", "healthy ok ops/s (outside faults and recovery)", "higher", func(r compareRun) (*float64, string) {
			if r.S.Availability == nil || r.S.Availability.HealthyThroughput == nil {
				return nil, "–"
			}
			return num(*r.S.Availability.HealthyThroughput, "%.0f")
		})
		below := 0.1
		for _, r := range runs {
			if r.S != nil && r.S.Availability != nil && r.S.Availability.UnavailableBelow > 0 {
				below = r.S.Availability.UnavailableBelow
			}
		}
		// Noise: half a second, a few bins either way.
		addN("availability", fmt.Sprintf("unavailable s (ok rate < %.0f%% of healthy)", 100*below), "lower", 0.5, func(r compareRun) (*float64, string) {
			if r.S.Availability == nil || r.S.Availability.HealthyThroughput == nil {
				return nil, "–"
			}
			return num(r.S.Availability.UnavailableS, "%.1f")
		})
	}

	add("throughput, whole run", "ok ops/s", "higher", func(r compareRun) (*float64, string) {
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
	add("throughput, whole run", "read ops/s", "higher", func(r compareRun) (*float64, string) { return perSecond(r, "get") })
	add("throughput, whole run", "write ops/s", "higher", func(r compareRun) (*float64, string) {
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
			add("latency of ok operations", k+" "+q.name+" ms", "lower", func(r compareRun) (*float64, string) {
				l, ok := r.S.Latency[k]
				if !ok {
					return nil, "–"
				}
				return msv(q.of(l))
			})
		}
	}

	if avail {
		compareFaultRows(runs, addN)
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
	if slices.ContainsFunc(runs, func(r compareRun) bool { return r.S != nil && r.S.StartupS > 0 }) {
		add("cost", "cluster start-up s (before the workload)", "", func(r compareRun) (*float64, string) {
			if r.S.StartupS <= 0 {
				return nil, "–"
			}
			return num(r.S.StartupS, "%.1f")
		})
	}
	return rows
}

// ratios are each later value over the first, as text.
func ratios(vs []*float64) []string {
	if len(vs) < 2 {
		return nil
	}
	out := make([]string, len(vs)-1)
	for i, v := range vs[1:] {
		out[i] = "–"
		if v != nil && vs[0] != nil && *vs[0] != 0 {
			out[i] = fmt.Sprintf("%.2f×", *v / *vs[0])
		}
	}
	return out
}

// compareFaultRows adds, per fault of the shared schedule (matched by its
// step, which a replayed schedule keeps), what it cost each store: outages
// of reads and writes up to the fault's horizon, the first ok read and
// write before the heal, and how long after the heal throughput was back.
// The words say what did not happen: "not before the heal", "not back
// before the next fault", "no dip".
func compareFaultRows(runs []compareRun, add func(section, metric, better string, noise float64, f func(compareRun) (*float64, string))) {
	var steps []int
	byStep := func(r compareRun, step int) (FaultAvailability, bool) {
		if r.S == nil || r.S.Availability == nil {
			return FaultAvailability{}, false
		}
		for _, f := range r.S.Availability.Faults {
			if f.Step == step {
				return f, true
			}
		}
		return FaultAvailability{}, false
	}
	first := map[int]float64{}
	for _, r := range runs {
		if r.S == nil || r.S.Availability == nil {
			continue
		}
		for _, f := range r.S.Availability.Faults {
			if _, seen := first[f.Step]; !seen {
				first[f.Step] = f.InjectS
				steps = append(steps, f.Step)
			}
		}
	}
	sort.SliceStable(steps, func(i, j int) bool { return first[steps[i]] < first[steps[j]] })
	for _, step := range steps {
		kind := ""
		var roles []string
		for _, r := range runs {
			f, ok := byStep(r, step)
			if !ok {
				continue
			}
			kind = f.Fault
			role := f.Role
			if role == "" {
				role = strings.Join(f.Targets, ",")
			}
			if !slices.Contains(roles, role) {
				roles = append(roles, role)
			}
		}
		label := fmt.Sprintf("%s %s", kind, strings.Join(roles, " ↔ "))
		section := "fault " + label
		seconds := func(get func(FaultAvailability) *float64) func(compareRun) (*float64, string) {
			return func(r compareRun) (*float64, string) {
				f, ok := byStep(r, step)
				if !ok {
					return nil, notApplied(r, kind)
				}
				v := get(f)
				if v == nil {
					return nil, "–"
				}
				x := *v
				return &x, fmt.Sprintf("%.1f", x)
			}
		}
		add(section, "reads out s", "lower", 0.5, seconds(func(f FaultAvailability) *float64 { return f.ReadOutageS }))
		add(section, "writes out s", "lower", 0.5, seconds(func(f FaultAvailability) *float64 { return f.WriteOutageS }))
		firstOK := func(get func(FaultAvailability) *float64) func(compareRun) (*float64, string) {
			return func(r compareRun) (*float64, string) {
				f, ok := byStep(r, step)
				if !ok {
					return nil, notApplied(r, kind)
				}
				if v := get(f); v != nil {
					x := *v
					return &x, compareMS(x)
				}
				if f.HealS == nil || *f.HealS > f.HorizonS {
					return nil, "not before the next fault"
				}
				return nil, "not before the heal"
			}
		}
		add(section, "first ok read after the inject, ms", "lower", 50, firstOK(func(f FaultAvailability) *float64 { return f.FirstReadMS }))
		add(section, "first ok write after the inject, ms", "lower", 50, firstOK(func(f FaultAvailability) *float64 { return f.FirstWriteMS }))
		add(section, "throughput back after the heal, ms", "lower", 200, func(r compareRun) (*float64, string) {
			f, ok := byStep(r, step)
			if !ok {
				return nil, notApplied(r, kind)
			}
			return backText(f)
		})
	}
}

// backText says how long after the heal throughput was back.
func backText(f FaultAvailability) (*float64, string) {
	switch {
	case !f.HealedInTime():
		if f.HealS == nil {
			return nil, "healed after the workload"
		}
		return nil, "healed after the next fault"
	case f.BackAfterHealMS == nil:
		if f.HorizonS > 0 {
			return nil, "not back before the next fault"
		}
		return nil, "not back"
	case *f.BackAfterHealMS == 0:
		v := 0.0
		return &v, "no dip"
	}
	v := *f.BackAfterHealMS
	return &v, compareMS(v)
}

// notApplied is what a run's column says for a fault it does not have.
func notApplied(r compareRun, kind string) string {
	if r.NotApplied[kind] {
		return "not applied"
	}
	return "–"
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
	// Roles is the table mapping each store's roles onto the others'
	// (harness.RoleTable): who a fault aimed at a role hits elsewhere.
	Roles []RoleRow `json:"roles"`
	Runs  []struct {
		Store   string `json:"store"`
		Dir     string `json:"dir"`
		Verdict string `json:"verdict"`
		Error   string `json:"error"`
	} `json:"runs"`
}

// RoleRow is one line of compare.json's role table: a role of one store,
// the jobs it does (most important first), whether it is the store's most
// critical role (the first its driver lists), and per other store the role
// a fault aimed at it hits there ("" when none does its jobs).
type RoleRow struct {
	Store    string            `json:"store"`
	Role     string            `json:"role"`
	Jobs     []string          `json:"jobs"`
	Critical bool              `json:"critical,omitempty"`
	MapsTo   map[string]string `json:"maps_to"`
}

type compareRunView struct {
	Store, Name, Dir, Href, Verdict, Pill, Error string
	ChartsSVG                                    template.HTML
	Note                                         string
}

type comparePage struct {
	CSS                template.CSS
	Noise              float64
	Cols               int // columns of the table: the metric and one per run
	F                  compareFileJSON
	Command, Generated string
	Verdict            string
	Runs               []compareRunView
	Rows               []compareRowView
	OverlaySVG         template.HTML
	Warnings           []string
	RatioHeads         []string // "chain / raft"
	Stores             []string // the compared stores, for the role table
	HasFaults          bool
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
	page := comparePage{CSS: styleCSS, Noise: NoiseFraction, F: f, Command: shellJoin(f.Command), Generated: time.Now().UTC().Format(time.RFC3339)}
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
	for i, r := range page.Runs {
		if i > 0 {
			page.RatioHeads = append(page.RatioHeads, r.Name+" / "+page.Runs[0].Name)
		}
		if !slices.Contains(page.Stores, r.Store) {
			page.Stores = append(page.Stores, r.Store)
		}
	}
	page.Cols = len(f.Runs) + 1 + len(page.RatioHeads)
	rows := CompareRows(dirs)
	for i, r := range rows {
		if strings.HasPrefix(r.Section, "fault") {
			page.HasFaults = true
		}
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

// WriteCompareAll redraws a compare directory whole: the report of every
// run it links, then compare.html. It returns the pages written; a run
// that cannot be drawn is an error, after the others are done.
func WriteCompareAll(dir string) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(dir, "compare.json"))
	if err != nil {
		return nil, err
	}
	var f compareFileJSON
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "compare.json"), err)
	}
	var pages []string
	var errs []error
	for _, r := range f.Runs {
		if r.Dir == "" || !filepath.IsLocal(r.Dir) {
			continue
		}
		run := filepath.Join(dir, r.Dir)
		if err := WriteRun(run); err != nil {
			errs = append(errs, err)
			continue
		}
		pages = append(pages, filepath.Join(run, "report.html"))
	}
	if err := WriteCompare(dir); err != nil {
		errs = append(errs, err)
	} else {
		pages = append(pages, filepath.Join(dir, "compare.html"))
	}
	return pages, errors.Join(errs...)
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

// BestOf is compareBest for callers outside the package (the terminal
// table marks the same value the page does).
func BestOf(r CompareRow) int { return compareBest(r) }

// compareBest is the index of the better value of a row, or -1 when the
// row has no direction, a value is missing, or the best is not ahead of
// every other by more than NoiseFraction of the larger and the row's
// absolute Noise (or the printed values do not show a difference).
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
	b := *r.Values[best]
	for i, v := range r.Values {
		if i == best {
			continue
		}
		gap := math.Abs(*v - b)
		if gap <= NoiseFraction*math.Max(math.Abs(*v), math.Abs(b)) || gap <= r.Noise ||
			(i < len(r.Text) && best < len(r.Text) && r.Text[i] == r.Text[best]) {
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
	svg, err := timeCharts(tl, bands, endS, timeoutOf(dir))
	if err != nil {
		return "", tl, bands, endS, err.Error()
	}
	return template.HTML(svg), tl, bands, endS, ""
}

// timeoutOf is the run's request timeout in ms (0 when unknown).
func timeoutOf(dir string) float64 {
	if s, err := ReadSummary(dir); err == nil {
		return s.RequestTimeoutMS
	}
	return 0
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
	"join":  func(s []string) string { return strings.Join(s, ", ") },
}).Parse(compareHTML))

const compareHTML = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Verdict}} · compare {{range $i, $r := .Runs}}{{if $i}} vs {{end}}{{$r.Store}}{{end}} · chainraft</title>
<style>{{.CSS}}
td.best { font-weight: 700; }
td.ratio, th.ratio { color: var(--mut); border-left: 1px solid var(--line); }
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
<thead><tr><th>metric</th>{{range .Runs}}<th class="n">{{.Name}}</th>{{end}}{{range .RatioHeads}}<th class="n ratio">{{.}}</th>{{end}}</tr></thead>
<tbody>
{{- range .Rows}}
{{- if isnew .}}
<tr class="section"><th colspan="{{$.Cols}}">{{.Section}}</th></tr>
{{- end}}
<tr><td>{{.Metric}}</td>{{$best := .Best}}{{range $i, $t := .Text}}<td class="n{{if eq $i $best}} best{{end}}">{{$t}}</td>{{end}}{{range .Ratio}}<td class="n ratio">{{.}}</td>{{end}}</tr>
{{- end}}
</tbody>
</table>
<p class="mut">Bold: better by more than {{pct .Noise}} (and than the row's own noise, for times), so a difference two runs of one store can show is never bold. The last column divides each value by the first run's.
<i>Healthy ok ops/s</i> is speed: ok operations per second outside every fault and the recovery after it. <i>Unavailable s</i> is availability: the time the ok rate spent below a tenth of that healthy rate, counted in short bins. The whole-run ok ops/s mixes the two.
{{- if .HasFaults}} Per fault, everything is measured up to the next fault's injection (or the end of the workload): <i>reads / writes out</i> is the time in that span with ok reads (writes) below a tenth of their healthy rate; <i>first ok read / write</i> is from the inject to the first one that succeeded, and says <i>not before the heal</i> when none did while the fault lasted; <i>throughput back</i> is from the heal to the first second at 80% of the healthy rate (<i>no dip</i>: it never fell).{{end}}
Latency is call to return of ok operations only; the charts below show every operation, timeouts included.</p>
{{- if .F.Roles}}
<h2>Roles and how faults map between the stores</h2>
<table id="roles">
<thead><tr><th>store</th><th>role</th><th>jobs, most important first</th>{{range .Stores}}<th>a fault on it hits, in {{.}}</th>{{end}}</tr></thead>
<tbody>
{{- range .F.Roles}}{{$r := .}}
<tr><td>{{.Store}}</td><td>{{.Role}}{{if .Critical}} <span class="pill unknown" title="the first role its driver lists: the one make run kills, pauses and cuts off">most critical</span>{{end}}</td><td>{{join .Jobs}}</td>{{range $.Stores}}<td>{{if eq . $r.Store}}<span class="mut">itself</span>{{else}}{{with index $r.MapsTo .}}{{.}}{{else}}<span class="never">none</span>{{end}}{{end}}</td>{{end}}</tr>
{{- end}}
</tbody>
</table>
<p class="mut">A fault of the first store's schedule aimed at a role hits, in each later store, the role whose first job is the same, else the first role doing that job at all (harness.MapRoleByJob); faults the nemesis resolves itself (any, minority, node:N, ZooKeeper) pass unchanged.</p>
{{- end}}
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
