package report

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"

	"github.com/chainraft/chainraft/histories"
)

// bucketNS is the width of one point of the time charts: one second, the
// resolution at which an outage and its recovery are visible without the
// noise of per-operation latency.
const bucketNS = int64(1e9)

// maxBuckets bounds the timeline so a corrupt timestamp (years into the
// future) cannot make the report allocate without limit; a day of run.
const maxBuckets = 86400

// opLine is the part of a history line the timeline needs. Decoding only
// these fields keeps a million-line history to about a second.
type opLine struct {
	Client  int               `json:"client"`
	Op      histories.Kind    `json:"op"`
	Call    int64             `json:"call"`
	Return  int64             `json:"return"`
	Outcome histories.Outcome `json:"outcome"`
}

// latencyGroup splits latencies into reads and writes: the two stores
// differ most there (reads at the tail or by ReadIndex, writes down the
// chain or through a quorum).
type latencyGroup int

const (
	groupRead latencyGroup = iota
	groupWrite
	numGroups
)

func (g latencyGroup) String() string {
	if g == groupRead {
		return "read"
	}
	return "write"
}

// Timeline is a history reduced to one-second buckets, built in a single
// streaming pass: ok operations counted by return time and op kind,
// failed and unknown ones counted as errors (fail by return time, info by
// call time since it has none), and every ok latency kept per bucket as a
// float32 so percentiles are exact (4 bytes per operation).
type Timeline struct {
	Buckets   int                        // number of one-second buckets
	EndNS     int64                      // the latest time seen
	OK        map[histories.Kind][]int64 // ok completions per bucket, by kind
	Errors    []int64                    // fail and info per bucket
	Ops       int64                      // lines decoded
	Malformed int64                      // lines skipped (a run cut short leaves a torn last line)
	Fails     []int64                    // fail per bucket (by return)
	Infos     []int64                    // info per bucket (by call: an info op has no return)
	// Points are every operation for the latency scatter: call time,
	// latency and outcome, 12 bytes each (a million operations in 12 MB);
	// an info op's latency is unknown (NaN).
	Points  []Point
	latency [numGroups][][]float32 // ms, per bucket
}

// Point is one operation on the latency scatter.
type Point struct {
	CallS   float32 // seconds since the workload's start
	LatMS   float32 // NaN for info: it never returned
	Outcome histories.Outcome
}

func newTimeline() *Timeline {
	return &Timeline{OK: make(map[histories.Kind][]int64)}
}

// ReadTimeline streams <path> (history.jsonl) into a Timeline.
func ReadTimeline(path string) (*Timeline, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readTimeline(f)
}

func readTimeline(r io.Reader) (*Timeline, error) {
	t := newTimeline()
	br := bufio.NewReaderSize(r, 1<<20)
	// A streamed history has an invoke line before each write; its
	// completion replaces it, and one never completed (the recorder was
	// killed) is an unknown operation (histories/doc.go, "Streaming").
	type callKey struct {
		client int
		call   int64
	}
	invoked := map[callKey]opLine{}
	for {
		line, err := br.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			var op opLine
			switch {
			case json.Unmarshal(line, &op) != nil || op.Op == "":
				t.Malformed++
			case op.Outcome == histories.Invoke:
				invoked[callKey{op.Client, op.Call}] = op
			default:
				delete(invoked, callKey{op.Client, op.Call})
				t.add(op)
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read history: %w", err)
		}
	}
	for _, op := range invoked {
		op.Outcome = histories.Info
		t.add(op)
	}
	t.finish()
	return t, nil
}

func bucketOf(ns int64) int {
	if ns < 0 {
		return 0
	}
	b := ns / bucketNS
	if b >= maxBuckets {
		return maxBuckets - 1
	}
	return int(b)
}

// grow makes bucket b addressable in s.
func grow[T any](s []T, b int) []T {
	if b < len(s) {
		return s
	}
	return append(s, make([]T, b+1-len(s))...)
}

func (t *Timeline) add(op opLine) {
	t.Ops++
	end := op.Call
	if op.Outcome != histories.Info && op.Return > end {
		end = op.Return
	}
	t.EndNS = max(t.EndNS, end)
	switch op.Outcome {
	case histories.OK:
		b := bucketOf(op.Return)
		s := grow(t.OK[op.Op], b)
		s[b]++
		t.OK[op.Op] = s
		g := groupWrite
		if op.Op == histories.Get {
			g = groupRead
		}
		t.latency[g] = grow(t.latency[g], b)
		t.latency[g][b] = append(t.latency[g][b], float32(op.Return-op.Call)/1e6)
		t.Points = append(t.Points, Point{CallS: float32(op.Call) / 1e9, LatMS: float32(op.Return-op.Call) / 1e6, Outcome: histories.OK})
	case histories.Fail:
		b := bucketOf(max(op.Return, op.Call))
		t.Errors = grow(t.Errors, b)
		t.Errors[b]++
		t.Fails = grow(t.Fails, b)
		t.Fails[b]++
		t.Points = append(t.Points, Point{CallS: float32(op.Call) / 1e9, LatMS: float32(max(op.Return-op.Call, 0)) / 1e6, Outcome: histories.Fail})
	default: // info, or an outcome this version does not know: not ok.
		b := bucketOf(op.Call)
		t.Errors = grow(t.Errors, b)
		t.Errors[b]++
		t.Infos = grow(t.Infos, b)
		t.Infos[b]++
		t.Points = append(t.Points, Point{CallS: float32(op.Call) / 1e9, LatMS: float32(math.NaN()), Outcome: histories.Info})
	}
}

// finish pads every series to the same length and sorts the latencies.
func (t *Timeline) finish() {
	t.Buckets = bucketOf(t.EndNS) + 1
	if t.Ops == 0 {
		t.Buckets = 0
	}
	for k, s := range t.OK {
		t.OK[k] = grow(s, t.Buckets-1)
	}
	t.Errors = grow(t.Errors, t.Buckets-1)
	t.Fails = grow(t.Fails, t.Buckets-1)
	t.Infos = grow(t.Infos, t.Buckets-1)
	for g := range t.latency {
		t.latency[g] = grow(t.latency[g], t.Buckets-1)
		for _, l := range t.latency[g] {
			slices.Sort(l)
		}
	}
}

// Kinds lists the op kinds that completed at least once, in the KV
// interface's order.
func (t *Timeline) Kinds() []histories.Kind {
	var out []histories.Kind
	for _, k := range []histories.Kind{histories.Get, histories.Put, histories.Append, histories.CAS} {
		if _, ok := t.OK[k]; ok {
			out = append(out, k)
		}
	}
	for k := range t.OK {
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}

// Percentile is the q-quantile (0..1, nearest rank) of group g's latencies
// in bucket b, NaN when nothing completed there.
func (t *Timeline) Percentile(g latencyGroup, b int, q float64) float64 {
	if b >= len(t.latency[g]) {
		return math.NaN()
	}
	return quantile(t.latency[g][b], q)
}

func quantile(sorted []float32, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	i = min(max(i, 0), len(sorted)-1)
	return float64(sorted[i])
}
