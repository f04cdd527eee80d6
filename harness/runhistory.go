package harness

import (
	"time"

	"github.com/chainraft/chainraft/histories"
)

// RunHistory is what the steps after a run need of its history, gathered
// in one pass over history.jsonl (readRunHistory) so that a long run is
// never held in memory: the summary's counts and latencies, the ok
// operations' intervals (for availability and recovery), the operations
// of each key counted. A step that needs a few keys' operations reads them
// again (Keys).
type RunHistory struct {
	// Path is history.jsonl.
	Path string
	// Ops counts every operation.
	Ops int
	// End is the latest call or return.
	End int64
	// OKReads and OKWrites are the (call, return) of every ok read and
	// ok write, in file order.
	OKReads, OKWrites [][2]int64
	// ReadsBefore and WritesBefore: some read, some write was called
	// before the workload's end (availability measures only what the
	// workload tried).
	ReadsBefore, WritesBefore bool
	// KeyOps and KeyInfos count each key's operations and unknown ones.
	KeyOps, KeyInfos map[string]int

	counts opCounts
	mem    []histories.Operation // runHistoryOf's operations, for Keys
}

// opCounts accumulates what countOps reports.
type opCounts struct {
	total, ok, fail, info int
	byKind                map[string]map[string]int
	lat                   map[histories.Kind][]int64
}

func (c *opCounts) add(op histories.Operation) {
	c.total++
	k := string(op.Op)
	if c.byKind[k] == nil {
		c.byKind[k] = map[string]int{}
	}
	c.byKind[k][string(op.Outcome)]++
	switch op.Outcome {
	case histories.OK:
		c.ok++
		c.lat[op.Op] = append(c.lat[op.Op], op.Return-op.Call)
	case histories.Fail:
		c.fail++
	default:
		c.info++
	}
}

func newRunHistory(path string) *RunHistory {
	return &RunHistory{
		Path: path, KeyOps: map[string]int{}, KeyInfos: map[string]int{},
		counts: opCounts{byKind: map[string]map[string]int{}, lat: map[histories.Kind][]int64{}},
	}
}

// add takes one operation of the pass.
func (h *RunHistory) add(op histories.Operation, workloadEnd int64) {
	h.Ops++
	h.End = max(h.End, op.Call, op.Return)
	h.counts.add(op)
	h.KeyOps[op.Key]++
	if op.Outcome == histories.Info {
		h.KeyInfos[op.Key]++
	}
	if op.Call >= 0 && op.Call < workloadEnd {
		if op.IsWrite() {
			h.WritesBefore = true
		} else {
			h.ReadsBefore = true
		}
	}
	if op.Outcome == histories.OK {
		if op.IsWrite() {
			h.OKWrites = append(h.OKWrites, [2]int64{op.Call, op.Return})
		} else {
			h.OKReads = append(h.OKReads, [2]int64{op.Call, op.Return})
		}
	}
}

// readRunHistory makes a RunHistory in one pass over path.
func readRunHistory(path string, workloadEnd time.Duration) (*RunHistory, error) {
	h := newRunHistory(path)
	err := histories.ScanFile(path, func(op histories.Operation) error {
		h.add(op, int64(workloadEnd))
		return nil
	})
	return h, err
}

// runHistoryOf is a RunHistory of operations in memory (tests).
func runHistoryOf(ops []histories.Operation, workloadEnd time.Duration) *RunHistory {
	h := newRunHistory("")
	for _, op := range ops {
		h.add(op, int64(workloadEnd))
	}
	h.mem = ops
	return h
}

// Keys reads the operations of the given keys back from the file, in
// file order.
func (h *RunHistory) Keys(keys ...string) (map[string][]histories.Operation, error) {
	want := map[string]bool{}
	for _, k := range keys {
		want[k] = true
	}
	out := map[string][]histories.Operation{}
	take := func(op histories.Operation) error {
		if want[op.Key] {
			out[op.Key] = append(out[op.Key], op)
		}
		return nil
	}
	if h.Path == "" {
		for _, op := range h.mem {
			_ = take(op)
		}
		return out, nil
	}
	return out, histories.ScanFile(h.Path, take)
}
