package report

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// ErrNoSummary means a directory is not a run: it has no summary.json.
var ErrNoSummary = errors.New("report: no summary.json")

// ErrLockRun means a run directory holds a lock-workload run, whose
// summary.json and history.jsonl are not a KV run's: read it with
// ReadLockSummary and render it with WriteLockRun (see lock.go).
var ErrLockRun = errors.New("report: a lock-workload run (its check is in summary.json): not a KV run")

// Latency is one op kind's latency distribution in milliseconds.
type Latency struct {
	Count int     `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

// Recovery is how long one fault took to stop hurting: from its event
// (inject or heal) to the first ok read, the first ok write, and throughput
// back to its usual level. As the nemesis measures it, a nil time means
// the history never showed it (for throughput, also: no baseline to come
// back to); a negative one is read the same way.
type Recovery struct {
	Time         float64    `json:"time"` // seconds since the run's start (ns values are converted)
	Step         *int       `json:"step"`
	Fault        string     `json:"fault"`
	Event        string     `json:"event"`
	Targets      targetList `json:"targets"`
	Role         string     `json:"role"`
	FirstReadMS  *float64   `json:"first_read_ms"`
	FirstWriteMS *float64   `json:"first_write_ms"`
	ThroughputMS *float64   `json:"throughput_ms"`
}

// Availability is summary.json's "availability" (harness/availability.go):
// healthy throughput and unavailable time, and per fault its outages and
// the times to the first ok read and write. A nil time is a thing that did
// not happen before its limit, which each field's comment names.
type Availability struct {
	HealthyThroughput      *float64            `json:"healthy_throughput"`
	HealthyReadThroughput  *float64            `json:"healthy_read_throughput"`
	HealthyWriteThroughput *float64            `json:"healthy_write_throughput"`
	HealthyS               float64             `json:"healthy_s"`
	UnavailableS           float64             `json:"unavailable_s"`
	UnavailableBelow       float64             `json:"unavailable_below"`
	BackAt                 float64             `json:"back_at"`
	BackWindowMS           float64             `json:"back_window_ms"`
	BinMS                  float64             `json:"bin_ms"`
	Faults                 []FaultAvailability `json:"faults"`
}

// FaultAvailability is one fault's cost, up to its horizon (the next
// fault's inject, or the end of the workload).
type FaultAvailability struct {
	Step         int        `json:"step"`
	Fault        string     `json:"fault"`
	Role         string     `json:"role"`
	Targets      targetList `json:"targets"`
	InjectS      float64    `json:"inject_s"`
	HealS        *float64   `json:"heal_s"` // nil: healed only after the workload
	HorizonS     float64    `json:"horizon_s"`
	UnavailableS float64    `json:"unavailable_s"`
	ReadOutageS  *float64   `json:"read_outage_s"`
	WriteOutageS *float64   `json:"write_outage_s"`
	// nil: no ok read (write) before the heal.
	FirstReadMS  *float64 `json:"first_read_ms"`
	FirstWriteMS *float64 `json:"first_write_ms"`
	// nil: none before the horizon.
	ReadAfterHealMS  *float64 `json:"read_after_heal_ms"`
	WriteAfterHealMS *float64 `json:"write_after_heal_ms"`
	BackAfterHealMS  *float64 `json:"back_after_heal_ms"`
}

// HealedInTime reports whether the fault was healed before its horizon:
// only then are the after-heal figures measured at all.
func (f FaultAvailability) HealedInTime() bool {
	return f.HealS != nil && *f.HealS < f.HorizonS
}

// KeyResult is one failing key's verdict and its visualization, a path
// relative to the run directory.
type KeyResult struct {
	Key           string  `json:"key"`
	Verdict       string  `json:"verdict"`
	Ops           int     `json:"ops"`
	Seconds       float64 `json:"seconds"`
	Visualization string  `json:"visualization"`
}

// targetList reads the targets of a fault as the nemesis writes them (node
// ids, numbers) or as names; ids become n<id> (zk<id> for ZooKeeper
// servers) once the fault kind is known, in decodeSummary.
type targetList []string

func (t *targetList) UnmarshalJSON(b []byte) error {
	var list []any
	if err := json.Unmarshal(b, &list); err != nil {
		var one any
		if err := json.Unmarshal(b, &one); err != nil {
			return err
		}
		list = []any{one}
	}
	*t = nil
	for _, v := range list {
		switch v := v.(type) {
		case float64:
			*t = append(*t, fmt.Sprintf("#%d", int64(v)))
		case string:
			*t = append(*t, v)
		}
	}
	return nil
}

// nameTargets turns the "#<id>" placeholders of targetList into node or
// ZooKeeper names.
func nameTargets(fault string, ts []string) []string {
	prefix := "n"
	if strings.HasPrefix(fault, "zk") {
		prefix = "zk"
	}
	for i, t := range ts {
		if strings.HasPrefix(t, "#") {
			ts[i] = prefix + t[1:]
		}
	}
	return ts
}

// Check is one end-of-run check (convergence of replicas, every acknowledged
// write present, ...). Unknown shapes are kept raw and shown as JSON.
type Check struct {
	Name   string          `json:"name"`
	OK     *bool           `json:"ok"`
	Status string          `json:"status"`
	Detail string          `json:"detail"`
	Raw    json.RawMessage `json:"-"`
}

// Summary is the report's reading of <run>/summary.json. It is decoded
// here rather than imported from harness so the report package can render
// any run directory on disk (old ones included) without depending on the
// harness; unknown fields are ignored and missing ones stay zero.
type Summary struct {
	// Workload is empty or "kv" for a KV run; a lock run never decodes as
	// a Summary (ErrLockRun).
	Workload     string    `json:"workload"`
	Store        string    `json:"store"`
	Name         string    `json:"name"`
	Seed         int64     `json:"seed"`
	Start        time.Time `json:"start"`
	DurationS    float64   `json:"duration_s"`
	Clients      int       `json:"clients"`
	Keys         int       `json:"keys"`
	ReadFraction float64   `json:"read_fraction"`
	// Workload and cluster details, shown when present.
	AppendFraction   float64 `json:"append_fraction"`
	CASFraction      float64 `json:"cas_fraction"`
	ValueSize        int     `json:"value_size"`
	Nodes            int     `json:"nodes"`
	ReadMode         string  `json:"read_mode"`
	NoFsync          bool    `json:"no_fsync"`
	RequestTimeoutMS float64 `json:"request_timeout_ms"`
	// Bug names a bug planted in the store on purpose: the page says so
	// loudly, so nobody reads the run as the store's real behaviour.
	Bug          string        `json:"bug"`
	Verdict      string        `json:"verdict"`
	OpsTotal     int64         `json:"ops_total"`
	OpsOK        int64         `json:"ops_ok"`
	OpsFail      int64         `json:"ops_fail"`
	OpsInfo      int64         `json:"ops_info"`
	Throughput   float64       `json:"throughput"`
	Availability *Availability `json:"availability"`
	// StartupS is the cluster's start-up before the workload; every time
	// in the run counts from the workload's start.
	StartupS float64 `json:"startup_s"`
	// Compare is the comparison the run is part of, relative to the run.
	Compare      string             `json:"compare"`
	Latency      map[string]Latency `json:"latency"`
	CheckSeconds float64            `json:"check_seconds"`
	FailingKeys  []string           `json:"failing_keys"`
	Error        string             `json:"error"`
	Command      string             `json:"-"` // from "command" (a string or an argv list), when the harness records it
	Recovery     []Recovery         `json:"recovery"`
	KeyResults   []KeyResult        `json:"key_results"`
	// Visualizations are Porcupine pages relative to the run directory.
	Visualizations []string        `json:"visualizations"`
	Checks         []Check         `json:"-"`
	ChecksRaw      json.RawMessage `json:"-"` // "checks" when it is not a list of checks
}

// Verdict classes; anything else is shown as unknown, never as ok.
const (
	verdictOK      = "ok"
	verdictIllegal = "illegal"
	verdictUnknown = "unknown"
)

// verdictClass maps a summary verdict to one of the three badges. An empty
// or unrecognised verdict is unknown: the report never claims ok without
// the checker saying so.
func verdictClass(v string) string {
	switch v {
	case verdictOK, verdictIllegal:
		return v
	}
	return verdictUnknown
}

// ReadSummary reads and decodes <dir>/summary.json.
func ReadSummary(dir string) (*Summary, error) {
	b, err := os.ReadFile(filepath.Join(dir, "summary.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", dir, ErrNoSummary)
	}
	if err != nil {
		return nil, err
	}
	if isLockSummary(b) {
		return nil, fmt.Errorf("%s: %w", dir, ErrLockRun)
	}
	return decodeSummary(b)
}

func decodeSummary(b []byte) (*Summary, error) {
	var s Summary
	if err := json.Unmarshal(b, &s); err != nil {
		// A field of an unexpected type (a newer harness) must not make the
		// whole run unreadable: fall back to the fields that do decode.
		s = Summary{}
		if err2 := decodeLenient(b, &s); err2 != nil {
			return nil, fmt.Errorf("summary.json: %w", err)
		}
	}
	var extra struct {
		Command json.RawMessage `json:"command"`
		Checks  json.RawMessage `json:"checks"`
	}
	_ = json.Unmarshal(b, &extra)
	s.Command = decodeCommand(extra.Command)
	s.Checks, s.ChecksRaw = decodeChecks(extra.Checks)
	if s.Availability != nil {
		for i := range s.Availability.Faults {
			f := &s.Availability.Faults[i]
			f.Targets = nameTargets(f.Fault, f.Targets)
		}
	}
	for i := range s.Recovery {
		r := &s.Recovery[i]
		r.Time = secondsOf(r.Time)
		r.Targets = nameTargets(r.Fault, r.Targets)
	}
	if s.OpsTotal == 0 {
		s.OpsTotal = s.OpsOK + s.OpsFail + s.OpsInfo
	}
	return &s, nil
}

// decodeLenient decodes field by field, skipping any that do not fit.
func decodeLenient(b []byte, s *Summary) error {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return err
	}
	for k, v := range fields {
		one, _ := json.Marshal(map[string]json.RawMessage{k: v})
		var part Summary
		if json.Unmarshal(one, &part) == nil {
			_ = json.Unmarshal(one, s)
		}
	}
	return nil
}

// secondsOf accepts a time either in seconds or in nanoseconds since the
// run's start: no run lasts 10^7 seconds, so larger values are nanoseconds.
func secondsOf(t float64) float64 {
	if t > 1e7 || t < -1e7 {
		return t / 1e9
	}
	return t
}

func decodeCommand(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var argv []string
	if json.Unmarshal(raw, &argv) == nil {
		return shellJoin(argv)
	}
	return ""
}

func decodeChecks(raw json.RawMessage) ([]Check, json.RawMessage) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var list []json.RawMessage
	if json.Unmarshal(raw, &list) == nil {
		checks := make([]Check, 0, len(list))
		for _, item := range list {
			var c Check
			if json.Unmarshal(item, &c) != nil {
				return nil, raw
			}
			c.Raw = item
			checks = append(checks, c)
		}
		return checks, nil
	}
	// A map from check name to result (a bool, or an object).
	var byName map[string]json.RawMessage
	if json.Unmarshal(raw, &byName) == nil {
		names := make([]string, 0, len(byName))
		for n := range byName {
			names = append(names, n)
		}
		sort.Strings(names)
		checks := make([]Check, 0, len(names))
		for _, n := range names {
			c := Check{Name: n, Raw: byName[n]}
			var ok bool
			if json.Unmarshal(byName[n], &ok) == nil {
				c.OK = &ok
			} else if json.Unmarshal(byName[n], &c) != nil {
				c.Detail = string(byName[n])
			}
			c.Name = n
			checks = append(checks, c)
		}
		return checks, nil
	}
	return nil, raw
}

// State is "pass", "fail" or "unknown": the badge of a check, which
// is unknown unless the check said plainly whether it passed.
func (c Check) State() string {
	if c.OK != nil {
		if *c.OK {
			return "pass"
		}
		return "fail"
	}
	switch c.Status {
	case "ok", "pass", "passed":
		return "pass"
	case "fail", "failed", "illegal", "error":
		return "fail"
	}
	return "unknown"
}

// worstP99 is the single p99 the index and the summary cards show: over
// all operations when the summary has it, else the highest per op kind.
func (s *Summary) worstP99() (float64, bool) {
	if all, ok := s.Latency["all"]; ok {
		return all.P99, true
	}
	best, ok := 0.0, false
	for _, l := range s.Latency {
		if l.P99 > best || !ok {
			best, ok = l.P99, true
		}
	}
	return best, ok
}

// worstRecovery is the longest time any fault took until both reads and
// writes succeeded again; never=true when after some fault they never did.
// A workload without reads (or without writes) is not held to them.
func (s *Summary) worstRecovery() (ms float64, fault string, never, ok bool) {
	for _, r := range s.Recovery {
		var vs []*float64
		if s.ReadFraction > 0 {
			vs = append(vs, r.FirstReadMS)
		}
		if s.ReadFraction < 1 {
			vs = append(vs, r.FirstWriteMS)
		}
		for _, v := range vs {
			switch {
			case v == nil || *v < 0:
				never, fault, ok = true, r.Fault, true
			case !never && *v >= ms:
				ms, fault, ok = *v, r.Fault, true
			}
		}
	}
	return ms, fault, never, ok
}

// shellJoin renders argv as one line a shell reads back the same.
func shellJoin(argv []string) string {
	out := make([]string, len(argv))
	for i, a := range argv {
		if a != "" && strings.IndexFunc(a, func(r rune) bool {
			return !(r == '-' || r == '_' || r == '.' || r == '/' || r == '=' || r == ':' || r == ',' ||
				(r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9'))
		}) < 0 {
			out[i] = a
			continue
		}
		out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(out, " ")
}
