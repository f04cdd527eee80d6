package nemesis

import (
	"math"
	"sort"
	"time"

	"github.com/chainraft/chainraft/histories"
)

// Recovery measurement constants: the throughput window, the baseline before
// the event, and the fraction of the baseline that counts as recovered.
const (
	RecoveryWindow   = time.Second
	RecoveryBaseline = 5 * time.Second
	RecoveryFraction = 0.8
)

// Recovery is how the store came back after one event. A nil time means the
// history never showed it (or, for throughput, that there was no baseline
// to come back to).
type Recovery struct {
	Time    int64  `json:"time"` // the event's time, ns since the run's start
	Step    int    `json:"step"`
	Fault   string `json:"fault"`
	Event   string `json:"event"` // "inject" or "heal"
	Targets []int  `json:"targets,omitempty"`
	Role    string `json:"role,omitempty"`
	// FirstReadMs: from the event to the return of the earliest-returning ok
	// get invoked at or after it.
	FirstReadMs *float64 `json:"first_read_ms"`
	// FirstWriteMs: the same for ok writes (put, append, cas — a cas that
	// did not swap still went through the write path and came back).
	FirstWriteMs *float64 `json:"first_write_ms"`
	// ThroughputMs: from the event to the start of the first 1 s window in
	// which ok operations completed at no less than 80% of their rate over
	// the 5 s before the fault was injected (for a heal too: the 5 s before
	// a heal are the fault), looked for after the first window below that
	// rate that ends by the next event; 0 when there is none.
	ThroughputMs *float64 `json:"throughput_ms"`
}

// Recoveries measures every inject and heal event against the history. Skipped
// and failed injections (and heals) get no entry: nothing happened to recover
// from. It is a pure function of its inputs.
func Recoveries(ops []histories.Operation, events []Event) []Recovery {
	var reads, writes [][2]int64
	for _, o := range ops {
		if o.Outcome != histories.OK {
			continue
		}
		if o.IsWrite() {
			writes = append(writes, [2]int64{o.Call, o.Return})
		} else {
			reads = append(reads, [2]int64{o.Call, o.Return})
		}
	}
	return recoveriesOK(reads, writes, events)
}

// AnalyzeOK is Analyze from the (call, return) of the ok reads and ok
// writes alone, which is all it looks at: a run's post-run pass keeps
// those rather than the whole history.
func AnalyzeOK(reads, writes [][2]int64, events []Event) Analysis {
	rs := recoveriesOK(reads, writes, events)
	if rs == nil {
		rs = []Recovery{}
	}
	return Analysis{Recovery: rs, ByKind: SummarizeRecoveries(rs)}
}

func recoveriesOK(reads, writes [][2]int64, events []Event) []Recovery {
	// rs and ws: ok reads and writes as (call, return), sorted by call;
	// all: every ok return, sorted.
	type cr struct{ call, ret int64 }
	rs := make([]cr, 0, len(reads))
	ws := make([]cr, 0, len(writes))
	all := make([]int64, 0, len(reads)+len(writes))
	for _, p := range reads {
		rs = append(rs, cr{p[0], p[1]})
		all = append(all, p[1])
	}
	for _, p := range writes {
		ws = append(ws, cr{p[0], p[1]})
		all = append(all, p[1])
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	byCall := func(xs []cr) {
		sort.Slice(xs, func(i, j int) bool { return xs[i].call < xs[j].call })
	}
	byCall(rs)
	byCall(ws)
	// suffixMin[i] = min return among xs[i:], so the earliest return of any
	// op invoked at or after t is one binary search away.
	suffixMin := func(xs []cr) []int64 {
		m := make([]int64, len(xs)+1)
		m[len(xs)] = -1
		for i := len(xs) - 1; i >= 0; i-- {
			m[i] = xs[i].ret
			if m[i+1] >= 0 && m[i+1] < m[i] {
				m[i] = m[i+1]
			}
		}
		return m
	}
	rMin, wMin := suffixMin(rs), suffixMin(ws)
	first := func(xs []cr, m []int64, t int64) *float64 {
		i := sort.Search(len(xs), func(i int) bool { return xs[i].call >= t })
		if i == len(xs) {
			return nil
		}
		return ms(m[i] - t)
	}

	// A heal is measured against the baseline before its fault's injection:
	// the 5 s before the heal are the fault itself.
	injectedAt := map[int]int64{}
	for _, e := range events {
		if e.Event == PhaseInject {
			injectedAt[e.Step] = e.Time
		}
	}
	// An event's horizon, for its dent in throughput and the recovery from
	// it, is the next event of another step: what happens after that is
	// that event's doing. A fault's own heal does not end it (a heal only
	// helps; a fault shorter than its recovery still gets its figure).
	type stepTime struct {
		t    int64
		step int
	}
	var times []stepTime
	for _, e := range events {
		if !e.Skipped && e.Error == "" {
			times = append(times, stepTime{e.Time, e.Step})
		}
	}
	sort.Slice(times, func(i, j int) bool { return times[i].t < times[j].t })
	horizon := func(e Event) int64 {
		i := sort.Search(len(times), func(i int) bool { return times[i].t > e.Time })
		for ; i < len(times); i++ {
			if times[i].step != e.Step {
				return times[i].t
			}
		}
		return math.MaxInt64
	}
	var out []Recovery
	for _, e := range events {
		if e.Skipped || e.Error != "" {
			continue
		}
		base := e.Time
		if at, ok := injectedAt[e.Step]; ok && e.Event == PhaseHeal {
			base = at
		}
		out = append(out, Recovery{
			Time: e.Time, Step: e.Step, Fault: e.Fault, Event: e.Event,
			Targets: e.Targets, Role: e.Role,
			FirstReadMs:  first(rs, rMin, e.Time),
			FirstWriteMs: first(ws, wMin, e.Time),
			ThroughputMs: throughputRecovery(all, base, e.Time, horizon(e)),
		})
	}
	return out
}

// throughputRecovery measures from t how long throughput took to come back
// after the event dented it. Windows are (s, s+W], s ≥ t; "low" means fewer
// ok returns than Fraction × the baseline rate × W, the baseline being the
// rate over (b−B, b], b the fault's injection, shortened at the run's start.
//
// The dent is looked for first: the earliest low window that starts at t,
// or later and ends by horizon (the next event of another step): a window
// reaching past that event would blame this one for that one's damage. A fault whose effect
// is delayed — a session that expires, an election timeout that runs out —
// leaves the first windows after it untouched, and measuring from the
// first good window would call it harmless. No low window by the horizon:
// 0, the event did not dent throughput. Otherwise the result is the start
// of the first good window at or after the dent, less t, or nil if none
// starts by the horizon. Windows must end within the history: none at all
// after t gives nil.
//
// The count changes only when a window edge crosses a return r: the start
// (s = r, the return leaves) or the end (s = r − W, it enters), so those
// and t are the only candidates.
func throughputRecovery(returns []int64, b, t, horizon int64) *float64 {
	if len(returns) == 0 {
		return nil
	}
	W, B := int64(RecoveryWindow), int64(RecoveryBaseline)
	from := max(b-B, 0)
	if b-from <= 0 {
		return nil
	}
	base := countIn(returns, from, b)
	if base == 0 {
		return nil
	}
	// Less a hair, so that a window holding exactly 80% of the baseline
	// counts despite floating-point rounding.
	need := RecoveryFraction*float64(base)*float64(W)/float64(b-from) - 1e-9
	last := returns[len(returns)-1]
	if t+W > last {
		return nil
	}
	good := func(s int64) bool { return float64(countIn(returns, s, s+W)) >= need }

	// The dent: a count falls only when the start passes a return, so the
	// candidates are t and the returns after it.
	dent := int64(-1)
	if !good(t) {
		dent = t
	} else {
		i := sort.Search(len(returns), func(i int) bool { return returns[i] > t })
		for ; i < len(returns); i++ {
			s := returns[i]
			if s+W > horizon || s+W > last {
				break
			}
			if !good(s) {
				dent = s
				break
			}
		}
	}
	if dent < 0 {
		return ms(0)
	}
	// Back: a count rises only when the end reaches a return, s = r − W.
	// Not back by the next event: nil, since what follows is that event's
	// to answer for.
	i := sort.Search(len(returns), func(i int) bool { return returns[i]-W > dent })
	for ; i < len(returns); i++ {
		s := returns[i] - W
		if s+W > last || s > horizon {
			break
		}
		if good(s) {
			return ms(s - t)
		}
	}
	return nil
}

// countIn counts xs (sorted) in (lo, hi].
func countIn(xs []int64, lo, hi int64) int {
	a := sort.Search(len(xs), func(i int) bool { return xs[i] > lo })
	b := sort.Search(len(xs), func(i int) bool { return xs[i] > hi })
	return b - a
}

func ms(ns int64) *float64 {
	v := float64(ns) / 1e6
	return &v
}

// Stat is the median and maximum of one recovery time over the events that
// reached it; Missing counts those that never did.
type Stat struct {
	N       int      `json:"n"`
	Missing int      `json:"missing"`
	Median  *float64 `json:"median_ms"`
	Max     *float64 `json:"max_ms"`
}

// KindRecovery summarizes the recoveries of one fault kind and phase.
type KindRecovery struct {
	Fault      string `json:"fault"`
	Event      string `json:"event"`
	Count      int    `json:"count"`
	FirstRead  Stat   `json:"first_read"`
	FirstWrite Stat   `json:"first_write"`
	Throughput Stat   `json:"throughput"`
}

// SummarizeRecoveries groups recoveries by fault kind and phase, sorted.
func SummarizeRecoveries(rs []Recovery) []KindRecovery {
	type key struct{ fault, event string }
	groups := map[key][]Recovery{}
	var keys []key
	for _, r := range rs {
		k := key{r.Fault, r.Event}
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], r)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].fault != keys[j].fault {
			return keys[i].fault < keys[j].fault
		}
		return keys[i].event < keys[j].event // "heal" before "inject"
	})
	out := make([]KindRecovery, 0, len(keys))
	for _, k := range keys {
		g := groups[k]
		pick := func(f func(Recovery) *float64) Stat {
			var vs []float64
			for _, r := range g {
				if v := f(r); v != nil {
					vs = append(vs, *v)
				}
			}
			return stat(vs, len(g))
		}
		out = append(out, KindRecovery{
			Fault: k.fault, Event: k.event, Count: len(g),
			FirstRead:  pick(func(r Recovery) *float64 { return r.FirstReadMs }),
			FirstWrite: pick(func(r Recovery) *float64 { return r.FirstWriteMs }),
			Throughput: pick(func(r Recovery) *float64 { return r.ThroughputMs }),
		})
	}
	return out
}

func stat(vs []float64, n int) Stat {
	s := Stat{N: len(vs), Missing: n - len(vs)}
	if len(vs) == 0 {
		return s
	}
	sort.Float64s(vs)
	med := vs[len(vs)/2]
	if len(vs)%2 == 0 {
		med = (vs[len(vs)/2-1] + vs[len(vs)/2]) / 2
	}
	mx := vs[len(vs)-1]
	s.Median, s.Max = &med, &mx
	return s
}

// Analysis is what a run's summary gets from the nemesis: summary.json's
// "recovery" list and its per-kind statistics.
type Analysis struct {
	Recovery []Recovery     `json:"recovery"`
	ByKind   []KindRecovery `json:"recovery_by_kind"`
}

// Analyze measures recoveries and summarizes them by kind.
func Analyze(ops []histories.Operation, events []Event) Analysis {
	rs := Recoveries(ops, events)
	if rs == nil {
		rs = []Recovery{}
	}
	return Analysis{Recovery: rs, ByKind: SummarizeRecoveries(rs)}
}
