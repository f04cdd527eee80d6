package harness

// Availability: speed and availability as two figures, never one.
//
// A run's ok throughput over its whole length mixes how fast a store is
// when it works with how long it does not work: under the same faults a
// store that stalls for 9 s and one that stalls for 1.5 s can run at the
// same speed and still differ by a third in ok ops/s. So the summary gives
// the two apart, both counted from the history alone:
//
//   - healthy throughput: ok operations per second outside every fault
//     window and the recovery after it (the time from the heal until a
//     whole BackWindow runs at BackAt of the usual rate again);
//   - unavailable seconds: the time the ok rate spent below
//     UnavailableBelow of that healthy rate, in bins of BinWidth.
//
// Per fault, everything is measured up to a horizon that ends at the next
// fault's injection (or the end of the workload): what happens after it is
// that fault's doing. A read or write that did not succeed before the heal
// is said as such (nil in JSON, "not before the heal" in words), never
// given the time it took after the heal as though it were the fault's.
//
// Rates are counted by return time; fail and info operations never count.
// Times are seconds since the workload's start, the history's clock.

import (
	"math"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"github.com/chainraft/chainraft/histories"
	"github.com/chainraft/chainraft/nemesis"
)

// The thresholds of the availability figures, recorded in every summary.
const (
	// UnavailableBelow: a bin whose ok rate is below this fraction of the
	// healthy rate counts as unavailable.
	UnavailableBelow = 0.1
	// BackAt: throughput is back once a whole BackWindow runs at this
	// fraction of the healthy rate.
	BackAt     = 0.8
	BackWindow = time.Second
	// Bins are at least minBin wide, wider when the store is slow, so that
	// a healthy bin holds about binTarget ok operations (a bin of two
	// operations is noise, not a rate); at most maxBin.
	minBin    = 100 * time.Millisecond
	maxBin    = time.Second
	binTarget = 20
)

// Availability is summary.json's "availability".
type Availability struct {
	// HealthyThroughput is ok operations per second over HealthyS, the
	// workload time outside every fault and its recovery; nil when there
	// was none.
	HealthyThroughput      *float64 `json:"healthy_throughput"`
	HealthyReadThroughput  *float64 `json:"healthy_read_throughput"`
	HealthyWriteThroughput *float64 `json:"healthy_write_throughput"`
	HealthyS               float64  `json:"healthy_s"`
	// UnavailableS is the time, over the whole workload, in bins whose ok
	// rate was below UnavailableBelow × HealthyThroughput.
	UnavailableS float64 `json:"unavailable_s"`
	// The thresholds this summary was measured with.
	UnavailableBelow float64 `json:"unavailable_below"`
	BackAt           float64 `json:"back_at"`
	BackWindowMS     float64 `json:"back_window_ms"`
	BinMS            float64 `json:"bin_ms"`
	// Faults has one entry per applied fault, in injection order.
	Faults []FaultAvailability `json:"faults,omitempty"`
}

// FaultAvailability is what one fault cost, up to its horizon.
type FaultAvailability struct {
	Step    int    `json:"step"`
	Fault   string `json:"fault"`
	Role    string `json:"role,omitempty"`
	Targets []int  `json:"targets,omitempty"`
	// InjectS and HealS are seconds since the workload's start; HealS is
	// nil when the fault was healed only after the workload (the end of a
	// run heals what is left).
	InjectS float64  `json:"inject_s"`
	HealS   *float64 `json:"heal_s"`
	// HorizonS ends every measurement of this fault: the next fault's
	// injection, or the end of the workload.
	HorizonS float64 `json:"horizon_s"`
	// UnavailableS, ReadOutageS and WriteOutageS are the time from the
	// inject to the horizon in bins where ok operations (reads, writes)
	// ran below UnavailableBelow of their healthy rate. The read or write
	// figure is nil when the workload has no reads or no writes.
	UnavailableS float64  `json:"unavailable_s"`
	ReadOutageS  *float64 `json:"read_outage_s"`
	WriteOutageS *float64 `json:"write_outage_s"`
	// FirstReadMS and FirstWriteMS: from the inject to the return of the
	// first ok read (write) invoked at or after it; nil when none returned
	// before the heal (or the horizon, if that comes first).
	FirstReadMS  *float64 `json:"first_read_ms"`
	FirstWriteMS *float64 `json:"first_write_ms"`
	// ReadAfterHealMS and WriteAfterHealMS: the same from the heal, nil
	// when none returned before the horizon.
	ReadAfterHealMS  *float64 `json:"read_after_heal_ms"`
	WriteAfterHealMS *float64 `json:"write_after_heal_ms"`
	// BackAfterHealMS: from the heal to the start of the first BackWindow
	// running at BackAt of the healthy rate; 0 when the window starting at
	// the heal already does (no dip after the heal); nil when no such
	// window ends by the horizon.
	BackAfterHealMS *float64 `json:"back_after_heal_ms"`
}

// faultWindow is one applied fault on the workload's clock (ns).
type faultWindow struct {
	step            int
	fault, role     string
	targets         []int
	inject, heal    int64 // heal is math.MaxInt64 when never seen
	healed          bool
	horizon, recEnd int64
}

// faultWindows pairs the applied injects of events with their heals, in
// injection order, each with its horizon (the next injection, or end).
func faultWindows(events []nemesis.Event, end int64) []faultWindow {
	var ws []faultWindow
	heals := map[int]int64{}
	for _, e := range events {
		if e.Event == nemesis.PhaseHeal && e.Error == "" {
			if _, dup := heals[e.Step]; !dup {
				heals[e.Step] = e.Time
			}
		}
	}
	for _, e := range events {
		if e.Event != nemesis.PhaseInject || e.Skipped || e.Error != "" {
			continue
		}
		w := faultWindow{step: e.Step, fault: e.Fault, role: e.Role, targets: e.Targets, inject: e.Time, heal: math.MaxInt64}
		if h, ok := heals[e.Step]; ok {
			w.heal, w.healed = h, true
		}
		ws = append(ws, w)
	}
	sort.SliceStable(ws, func(i, j int) bool { return ws[i].inject < ws[j].inject })
	for i := range ws {
		ws[i].horizon = end
		for j := i + 1; j < len(ws); j++ {
			if ws[j].inject > ws[i].inject {
				ws[i].horizon = min(end, ws[j].inject)
				break
			}
		}
	}
	return ws
}

// okSeries are the ok operations of a history, sorted: returns (for
// rates) and (call, return) pairs by call with suffix minima of the
// returns (for "the first ok op invoked after t").
type okSeries struct {
	returns []int64
	calls   []int64
	minRet  []int64 // minRet[i] = min return of calls[i:]
}

func newOKSeries(pairs [][2]int64) okSeries {
	var s okSeries
	sort.Slice(pairs, func(i, j int) bool { return pairs[i][0] < pairs[j][0] })
	s.calls = make([]int64, len(pairs))
	s.minRet = make([]int64, len(pairs)+1)
	s.minRet[len(pairs)] = math.MaxInt64
	for i := len(pairs) - 1; i >= 0; i-- {
		s.calls[i] = pairs[i][0]
		s.minRet[i] = min(pairs[i][1], s.minRet[i+1])
	}
	s.returns = make([]int64, len(pairs))
	for i, p := range pairs {
		s.returns[i] = p[1]
	}
	slices.Sort(s.returns)
	return s
}

// count is the number of returns in [lo, hi).
func (s okSeries) count(lo, hi int64) int {
	a, _ := slices.BinarySearch(s.returns, lo)
	b, _ := slices.BinarySearch(s.returns, hi)
	return b - a
}

// firstAfter is the earliest return of an op invoked at or after t, if it
// comes before limit.
func (s okSeries) firstAfter(t, limit int64) (int64, bool) {
	i, _ := slices.BinarySearch(s.calls, t)
	if i >= len(s.calls) || s.minRet[i] >= limit {
		return 0, false
	}
	return s.minRet[i], true
}

// MeasureAvailability computes the availability figures of a history
// whose workload ran for duration, under the faults of events (both on
// the workload's clock). It is a pure function of its inputs.
//
// The healthy rate is found in two steps, because the recovery that must
// be left out of it is itself measured against a rate: first the median
// bin rate outside the fault windows (a median, so recovery dips barely
// move it) sets where each fault's recovery ends; then the healthy
// throughput is the ok operations outside faults and recoveries divided by
// that time.
func MeasureAvailability(ops []histories.Operation, events []nemesis.Event, duration time.Duration) Availability {
	return measureAvailability(runHistoryOf(ops, duration), events, duration)
}

// measureAvailability is MeasureAvailability from the pass over the
// history (RunHistory).
func measureAvailability(h *RunHistory, events []nemesis.Event, duration time.Duration) Availability {
	end := int64(duration)
	a := Availability{
		UnavailableBelow: UnavailableBelow, BackAt: BackAt, BackWindowMS: ms(int64(BackWindow)),
	}
	// Only what the workload did: the end-of-run checks' operations come
	// after it.
	during := func(ps [][2]int64) [][2]int64 {
		var out [][2]int64
		for _, p := range ps {
			if p[0] >= 0 && p[0] < end && p[1] < end {
				out = append(out, p)
			}
		}
		return out
	}
	reads, writes := during(h.OKReads), during(h.OKWrites)
	all := append(append(make([][2]int64, 0, len(reads)+len(writes)), reads...), writes...)
	hasReads, hasWrites := h.ReadsBefore, h.WritesBefore
	if end <= 0 {
		return a
	}
	okAll, okR, okW := newOKSeries(all), newOKSeries(reads), newOKSeries(writes)

	bin := int64(minBin)
	if rate := float64(len(all)) / duration.Seconds(); rate > 0 {
		bin = int64(math.Ceil(binTarget/rate*10)) * int64(minBin) // whole multiples of minBin
		bin = min(max(bin, int64(minBin)), int64(maxBin))
	}
	a.BinMS = ms(bin)
	ws := faultWindows(events, end)

	// Step 1: the median bin rate outside every fault window.
	inFault := func(lo, hi int64) bool {
		for _, w := range ws {
			if lo < w.heal && hi > w.inject {
				return true
			}
		}
		return false
	}
	var rates []float64
	var everyRate []float64
	for lo := int64(0); lo+bin <= end; lo += bin {
		r := float64(okAll.count(lo, lo+bin)) / (float64(bin) / 1e9)
		everyRate = append(everyRate, r)
		if !inFault(lo, lo+bin) {
			rates = append(rates, r)
		}
	}
	if len(rates) == 0 {
		rates = everyRate
	}
	median := 0.0
	if len(rates) > 0 {
		slices.Sort(rates)
		median = rates[len(rates)/2]
	}

	// Step 2: each fault's recovery ends when throughput is back (or at
	// its horizon); the healthy time is what no fault or recovery covers.
	backAfter := func(w faultWindow, rate float64) (int64, bool) {
		if !w.healed || w.heal >= w.horizon {
			return 0, false
		}
		need := BackAt * rate * BackWindow.Seconds()
		for t := w.heal; t+int64(BackWindow) <= w.horizon; t += bin {
			if float64(okAll.count(t, t+int64(BackWindow))) >= need {
				// A window can hold BackAt of its rate with an outage still
				// in its first bins: back starts after them. (Bins below
				// UnavailableBelow are never noise, unlike bins below
				// BackAt, which a slow store's small bins often are.)
				down := func(t int64) bool {
					return float64(okAll.count(t, t+bin)) < UnavailableBelow*rate*float64(bin)/1e9
				}
				for from := t; t < from+int64(BackWindow) && down(t); {
					t += bin
				}
				return t - w.heal, true
			}
		}
		return 0, false
	}
	type span struct{ lo, hi int64 }
	var sick []span
	for i := range ws {
		w := &ws[i]
		w.recEnd = w.horizon
		if d, ok := backAfter(*w, median); ok {
			w.recEnd = w.heal + d
		}
		sick = append(sick, span{w.inject, min(w.recEnd, end)})
	}
	sort.Slice(sick, func(i, j int) bool { return sick[i].lo < sick[j].lo })
	var healthy []span
	at := int64(0)
	for _, s := range sick {
		if s.lo > at {
			healthy = append(healthy, span{at, s.lo})
		}
		at = max(at, s.hi)
	}
	if at < end {
		healthy = append(healthy, span{at, end})
	}
	var hNS int64
	var hAll, hR, hW int
	for _, h := range healthy {
		hNS += h.hi - h.lo
		hAll += okAll.count(h.lo, h.hi)
		hR += okR.count(h.lo, h.hi)
		hW += okW.count(h.lo, h.hi)
	}
	a.HealthyS = float64(hNS) / 1e9
	if hNS == 0 {
		// No healthy time: the figures below have no rate to compare with.
		for _, w := range ws {
			a.Faults = append(a.Faults, faultFigures(w, nil, nil, nil, okAll, okR, okW, end, bin, hasReads, hasWrites, nil))
		}
		return a
	}
	perS := func(n int) *float64 { v := float64(n) / a.HealthyS; return &v }
	a.HealthyThroughput = perS(hAll)
	if hasReads {
		a.HealthyReadThroughput = perS(hR)
	}
	if hasWrites {
		a.HealthyWriteThroughput = perS(hW)
	}
	a.UnavailableS = belowFor(okAll, 0, end, end, bin, *a.HealthyThroughput)
	for _, w := range ws {
		back, ok := backAfter(w, *a.HealthyThroughput)
		var backP *int64
		if ok {
			backP = &back
		}
		a.Faults = append(a.Faults, faultFigures(w, a.HealthyThroughput, a.HealthyReadThroughput, a.HealthyWriteThroughput,
			okAll, okR, okW, end, bin, hasReads, hasWrites, backP))
	}
	return a
}

// belowFor is the time within [lo, hi) spent in bins (on the grid of bin
// from the workload's start) whose ok count was below UnavailableBelow of
// rate per second. A bin cut by the end of the workload is judged by the
// part that ran, and left out when less than half of it ran: a few
// milliseconds hold too few operations to be a rate.
func belowFor(s okSeries, lo, hi, end, bin int64, rate float64) float64 {
	var total int64
	for b := lo / bin * bin; b < hi; b += bin {
		from, to := max(b, lo), min(b+bin, hi)
		ran := min(b+bin, end) - b
		if to <= from || ran < bin/2 {
			continue
		}
		if float64(s.count(b, b+ran)) < UnavailableBelow*rate*float64(ran)/1e9 {
			total += to - from
		}
	}
	return float64(total) / 1e9
}

// faultFigures measures one fault against the healthy rates (nil: none).
func faultFigures(w faultWindow, rate, readRate, writeRate *float64, okAll, okR, okW okSeries, end, bin int64,
	hasReads, hasWrites bool, back *int64) FaultAvailability {
	f := FaultAvailability{
		Step: w.step, Fault: w.fault, Role: w.role, Targets: w.targets,
		InjectS: float64(w.inject) / 1e9, HorizonS: float64(w.horizon) / 1e9,
	}
	healedIn := w.healed && w.heal < w.horizon
	if w.healed && w.heal <= w.horizon {
		h := float64(w.heal) / 1e9
		f.HealS = &h
	}
	during := min(w.heal, w.horizon)
	msOf := func(d int64) *float64 { v := float64(d) / 1e6; return &v }
	if t, ok := okR.firstAfter(w.inject, during); ok && hasReads {
		f.FirstReadMS = msOf(t - w.inject)
	}
	if t, ok := okW.firstAfter(w.inject, during); ok && hasWrites {
		f.FirstWriteMS = msOf(t - w.inject)
	}
	if healedIn {
		if t, ok := okR.firstAfter(w.heal, w.horizon); ok && hasReads {
			f.ReadAfterHealMS = msOf(t - w.heal)
		}
		if t, ok := okW.firstAfter(w.heal, w.horizon); ok && hasWrites {
			f.WriteAfterHealMS = msOf(t - w.heal)
		}
		if back != nil {
			f.BackAfterHealMS = msOf(*back)
		}
	}
	if rate != nil {
		f.UnavailableS = belowFor(okAll, w.inject, w.horizon, end, bin, *rate)
	}
	if readRate != nil && hasReads {
		v := belowFor(okR, w.inject, w.horizon, end, bin, *readRate)
		f.ReadOutageS = &v
	}
	if writeRate != nil && hasWrites {
		v := belowFor(okW, w.inject, w.horizon, end, bin, *writeRate)
		f.WriteOutageS = &v
	}
	return f
}

// availabilityOf measures a finished run: its history and, when a nemesis
// ran, the faults of <dir>/nemesis.jsonl. A nemesis log that does not read
// leaves the faults out rather than the figures: the whole run is then
// judged as if healthy, which the report's fault table makes plain.
func availabilityOf(dir string, h *RunHistory, duration time.Duration) *Availability {
	events, _ := nemesis.ReadEventsFile(filepath.Join(dir, "nemesis.jsonl"))
	a := measureAvailability(h, events, duration)
	return &a
}

// relLink is target relative to dir, or target itself when it has none.
func relLink(dir, target string) string {
	absDir, err1 := filepath.Abs(dir)
	absT, err2 := filepath.Abs(target)
	if err1 != nil || err2 != nil {
		return target
	}
	if r, err := filepath.Rel(absDir, absT); err == nil {
		return filepath.ToSlash(r)
	}
	return target
}
