package harness

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/chainraft/chainraft/histories"
	"github.com/chainraft/chainraft/nemesis"
)

// Summary is summary.json: what a run was, what it did and what the checker
// said. It is a plain struct so that other parts of the harness (the
// nemesis, the reports) can add fields next to these; the field names are
// the file format, read by the reports and by CI, so rename none.
type Summary struct {
	Store   string    `json:"store"`
	Name    string    `json:"name"`
	Command []string  `json:"command,omitempty"` // the command line that made the run, when known
	Seed    int64     `json:"seed"`
	Start   time.Time `json:"start"`
	// DurationS is the time the workload ran, in seconds: the divisor of
	// every throughput. Every other time in the run directory (history,
	// nemesis log, charts, progress lines) counts from the workload's
	// start too; StartupS is how long the cluster took to start before it,
	// reported on its own so that it is neither hidden nor mixed in.
	DurationS float64 `json:"duration_s"`
	StartupS  float64 `json:"startup_s"`
	// Preload is what was written before the workload (RunConfig.Preload),
	// between the start-up and the workload's start.
	Preload *PreloadSummary `json:"preload,omitempty"`
	// Compare is the comparison this run is part of: its directory,
	// relative to the run directory ("../20261203T220523Z-compare").
	Compare string `json:"compare,omitempty"`

	Clients        int     `json:"clients"`
	Keys           int     `json:"keys"`
	ReadFraction   float64 `json:"read_fraction"`
	AppendFraction float64 `json:"append_fraction"`
	CASFraction    float64 `json:"cas_fraction"`
	ValueSize      int     `json:"value_size,omitempty"`

	Nodes   int  `json:"nodes,omitempty"`
	NoFsync bool `json:"no_fsync,omitempty"`
	// NodeCPUs is each node process's CPU quota in cores; absent: none.
	NodeCPUs         float64 `json:"node_cpus,omitempty"`
	ReadMode         string  `json:"read_mode,omitempty"`
	Bug              string  `json:"bug,omitempty"`
	RequestTimeoutMS float64 `json:"request_timeout_ms"`

	// Verdict is "ok", "illegal" or "unknown". A run that could not be
	// checked (it failed, or was interrupted) is "unknown", never "ok".
	Verdict  string `json:"verdict"`
	OpsTotal int    `json:"ops_total"`
	OpsOK    int    `json:"ops_ok"`
	OpsFail  int    `json:"ops_fail"`
	OpsInfo  int    `json:"ops_info"`
	// Throughput is ok operations per second of workload, faults and
	// outages included: speed and availability mixed. Availability gives
	// the two apart (availability.go).
	Throughput   float64       `json:"throughput"`
	Availability *Availability `json:"availability,omitempty"`
	// ThroughputByOp is ok operations per second by kind (get, put, append, cas).
	ThroughputByOp map[string]float64 `json:"throughput_by_op"`
	// OpsByKind counts operations by kind and outcome: ops_by_kind.get.ok.
	OpsByKind map[string]map[string]int `json:"ops_by_kind"`
	// Latency is per op kind, ok operations only, plus "all".
	Latency map[string]Latency `json:"latency"`

	CheckSeconds float64 `json:"check_seconds"`
	// Pruned and Bounded count unknown writes the checker removed (never
	// observed) or closed at the read that observed them.
	Pruned  int `json:"pruned"`
	Bounded int `json:"bounded"`
	// FailingKeys are the keys judged illegal or unknown, sorted;
	// KeyResults say which and link their visualizations.
	FailingKeys    []string    `json:"failing_keys"`
	KeyResults     []KeyResult `json:"key_results,omitempty"`
	Visualizations []string    `json:"visualizations,omitempty"` // paths relative to the run directory
	History        string      `json:"history"`                  // history file, relative to the run directory

	// Error says why the run failed or was cut short; empty when it ran to
	// the end. "interrupted" means SIGINT/SIGTERM (or a cancelled context).
	Error string `json:"error,omitempty"`

	// Nemesis, Recovery and RecoveryByKind are set when a nemesis ran
	// (harness/nemesis.go): the schedule, one recovery entry per inject and
	// heal, and per fault kind and phase the median and maximum.
	Nemesis        *NemesisInfo           `json:"nemesis,omitempty"`
	Recovery       []nemesis.Recovery     `json:"recovery,omitempty"`
	RecoveryByKind []nemesis.KindRecovery `json:"recovery_by_kind,omitempty"`
	// Checks are the end-of-run checks (harness/checks.go); one that failed
	// fails the run (exit code 1).
	Checks []CheckResult `json:"checks,omitempty"`

	// PeerMessages are the messages the store's nodes sent each other
	// while the workload ran (harness/messages.go), summed over the nodes
	// live at its end; MessagesPerOp divides them by OpsOK. Absent when the
	// store does not count them (memory). A node restarted during the run
	// starts counting again from zero and a node down at the end is not
	// read, so under kill faults both are lower bounds.
	PeerMessages  *uint64  `json:"peer_messages,omitempty"`
	MessagesPerOp *float64 `json:"messages_per_op,omitempty"`

	// NodeCPUSeconds is the CPU time each node process used while the
	// workload ran, by node id, every incarnation counted (harness/cpu.go).
	// NodeCPUPerOpUS divides their sum by OpsOK, BusiestNodeCPUPerOpUS the
	// largest one: microseconds of node CPU per ok operation. Absent when
	// the store has no node processes (memory).
	NodeCPUSeconds        map[string]float64 `json:"node_cpu_s,omitempty"`
	NodeCPUPerOpUS        *float64           `json:"node_cpu_us_per_op,omitempty"`
	BusiestNodeCPUPerOpUS *float64           `json:"busiest_node_cpu_us_per_op,omitempty"`
}

// KeyResult is one failing key's verdict.
type KeyResult struct {
	Key           string  `json:"key"`
	Verdict       string  `json:"verdict"`
	Ops           int     `json:"ops"`
	Seconds       float64 `json:"seconds"`
	Visualization string  `json:"visualization,omitempty"`
}

// Latency is one op kind's latency distribution over ok operations, in
// milliseconds.
type Latency struct {
	Count  int     `json:"count"`
	MeanMS float64 `json:"mean_ms"`
	P50MS  float64 `json:"p50_ms"`
	P99MS  float64 `json:"p99_ms"`
	P999MS float64 `json:"p999_ms"`
	MaxMS  float64 `json:"max_ms"`
}

// kinds are the op kinds in the order summaries list them.
var kinds = []histories.Kind{histories.Get, histories.Put, histories.Append, histories.CAS}

// countOps fills the operation counts, throughputs and latencies of s from
// the history. Latency is measured call to return on the run's monotonic
// clock, so it includes the client library and the harness.
func (s *Summary) countOps(ops []histories.Operation, duration time.Duration) {
	s.applyCounts(&runHistoryOf(ops, duration).counts, duration)
}

// applyCounts is countOps from counts gathered in the pass over the
// history (RunHistory).
func (s *Summary) applyCounts(c *opCounts, duration time.Duration) {
	s.DurationS = duration.Seconds()
	s.OpsTotal, s.OpsOK, s.OpsFail, s.OpsInfo = c.total, c.ok, c.fail, c.info
	s.OpsByKind = c.byKind
	lat := c.lat
	var all []int64
	for _, k := range kinds {
		all = append(all, lat[k]...)
	}
	s.ThroughputByOp = map[string]float64{}
	s.Latency = map[string]Latency{}
	s.MessagesPerOp = nil
	if s.PeerMessages != nil && s.OpsOK > 0 {
		m := float64(*s.PeerMessages) / float64(s.OpsOK)
		s.MessagesPerOp = &m
	}
	s.NodeCPUPerOpUS, s.BusiestNodeCPUPerOpUS = nil, nil
	if len(s.NodeCPUSeconds) > 0 && s.OpsOK > 0 {
		var sum, busiest float64
		for _, v := range s.NodeCPUSeconds {
			sum += v
			busiest = max(busiest, v)
		}
		all, top := sum*1e6/float64(s.OpsOK), busiest*1e6/float64(s.OpsOK)
		s.NodeCPUPerOpUS, s.BusiestNodeCPUPerOpUS = &all, &top
	}
	if s.DurationS > 0 {
		s.Throughput = float64(s.OpsOK) / s.DurationS
	}
	for _, k := range kinds {
		if s.DurationS > 0 {
			s.ThroughputByOp[string(k)] = float64(len(lat[k])) / s.DurationS
		}
		if len(lat[k]) > 0 {
			s.Latency[string(k)] = latencyOf(lat[k])
		}
	}
	if len(all) > 0 {
		s.Latency["all"] = latencyOf(all)
	}
}

// latencyOf sorts ds in place and summarises it. Percentiles are nearest
// rank: the smallest sample with at least that fraction at or below it.
func latencyOf(ds []int64) Latency {
	slices.Sort(ds)
	var sum float64
	for _, d := range ds {
		sum += float64(d)
	}
	rank := func(q float64) float64 {
		i := int(q*float64(len(ds))+0.999999999) - 1
		i = min(max(i, 0), len(ds)-1)
		return ms(ds[i])
	}
	return Latency{
		Count:  len(ds),
		MeanMS: sum / float64(len(ds)) / 1e6,
		P50MS:  rank(0.50),
		P99MS:  rank(0.99),
		P999MS: rank(0.999),
		MaxMS:  ms(ds[len(ds)-1]),
	}
}

func ms(ns int64) float64 { return float64(ns) / 1e6 }

// applyCheck copies the checker's result into s.
func (s *Summary) applyCheck(res histories.Result, dir string) {
	s.Verdict = string(res.Verdict)
	s.CheckSeconds = res.Elapsed.Seconds()
	s.Pruned = res.Pruned
	s.Bounded = res.Bounded
	s.FailingKeys = []string{}
	s.KeyResults = nil
	for _, k := range res.Keys {
		if k.Verdict == histories.VerdictOK {
			continue
		}
		s.FailingKeys = append(s.FailingKeys, k.Key)
		s.KeyResults = append(s.KeyResults, KeyResult{
			Key:           k.Key,
			Verdict:       string(k.Verdict),
			Ops:           k.Ops,
			Seconds:       k.Elapsed.Seconds(),
			Visualization: relTo(dir, k.Visualization),
		})
	}
	slices.Sort(s.FailingKeys)
	slices.SortFunc(s.KeyResults, func(a, b KeyResult) int {
		if a.Key < b.Key {
			return -1
		}
		if a.Key > b.Key {
			return 1
		}
		return 0
	})
	s.Visualizations = nil
	for _, v := range res.Visualizations {
		s.Visualizations = append(s.Visualizations, relTo(dir, v))
	}
}

// relTo makes path relative to dir when it lies below it, so a run
// directory can be moved or served as a whole.
func relTo(dir, path string) string {
	if path == "" || dir == "" {
		return path
	}
	if r, err := filepath.Rel(dir, path); err == nil && filepath.IsLocal(r) {
		return r
	}
	return path
}

// WriteSummary writes s to path atomically (a temporary file renamed over
// it), so a reader never sees half a summary.
func WriteSummary(path string, s *Summary) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding summary: %w", err)
	}
	return writeFileAtomic(path, append(b, '\n'))
}

// ReadSummary reads a summary.json.
func ReadSummary(path string) (*Summary, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s Summary
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &s, nil
}

func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
