// Package workload is the harness's first stage: what clients ask of a
// store (the seeded generator) and how each answer is recorded (the
// recording client, which holds the soundness boundary between a store's
// errors and the history's outcomes). The run loop (package harness) and
// the simulator (package sim) both draw their operations from here, so a
// seed means the same operations in both.
package workload

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/chainraft/chainraft/histories"
)

// Config shapes the generated operations. Fractions are of all
// operations; puts take what the others leave.
type Config struct {
	// Seed makes the operation sequence of every client reproducible (the
	// interleaving, decided by the store, is not).
	Seed int64
	// Keys is the number of keys, named k000, k001, ...
	Keys int
	// ReadFraction is the fraction of gets.
	ReadFraction float64
	// AppendFraction and CASFraction are the fractions of appends and cas;
	// negative means the default, a quarter of the writes each.
	AppendFraction, CASFraction float64
	// ValueSize pads every written value to at least this many bytes; 0 keeps
	// the bare unique tag.
	ValueSize int
	// Rate caps the whole workload at about this many operations a second,
	// shared evenly by the clients (0: as fast as the store answers). A
	// store measured for its latency under a given load, or a history meant
	// to stay small enough to check quickly, wants one.
	Rate float64
}

// Interval is the time between the starts of one client's operations
// that holds the workload to Rate when clients share it; 0 means none.
func (w Config) Interval(clients int) time.Duration {
	if w.Rate <= 0 || clients <= 0 {
		return 0
	}
	return time.Duration(float64(clients) / w.Rate * float64(time.Second))
}

// WithDefaults fills the write mix: half puts, a quarter appends, a quarter
// cas. Puts stay frequent because each one resets a key, which keeps values
// built by appends short (and the history small).
func (w Config) WithDefaults() Config {
	writes := 1 - w.ReadFraction
	if w.AppendFraction < 0 {
		w.AppendFraction = writes / 4
	}
	if w.CASFraction < 0 {
		w.CASFraction = writes / 4
	}
	return w
}

// Validate reports a workload that cannot be generated, naming the field.
func (w Config) Validate() error {
	switch {
	case w.Keys <= 0:
		return fmt.Errorf("keys must be positive, got %d", w.Keys)
	case w.ReadFraction < 0 || w.ReadFraction > 1:
		return fmt.Errorf("read fraction must be in [0,1], got %v", w.ReadFraction)
	case w.AppendFraction > 1 || w.CASFraction > 1:
		return fmt.Errorf("append and cas fractions must be at most 1, got %v and %v", w.AppendFraction, w.CASFraction)
	case w.ValueSize < 0:
		return fmt.Errorf("value size must not be negative, got %d", w.ValueSize)
	case w.Rate < 0:
		return fmt.Errorf("rate must not be negative, got %v", w.Rate)
	}
	d := w.WithDefaults()
	if sum := d.ReadFraction + d.AppendFraction + d.CASFraction; sum > 1+1e-9 {
		return fmt.Errorf("read, append and cas fractions sum to %v, more than 1", sum)
	}
	return nil
}

// KeyNames returns the workload's key names: k000 ... with at least three
// digits, so they sort in numeric order.
func KeyNames(n int) []string {
	width := len(strconv.Itoa(n - 1))
	width = max(width, 3)
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%0*d", width, i)
	}
	return keys
}

// Generator makes the operations of one workload client. It is owned by that
// client's goroutine.
//
// Written values are unique in the run: "w<worker>-<seq>", where the worker
// index is fixed for the goroutine (unlike the history's client id, which
// changes after an info outcome). Unique values let a read name the one write
// it observed, which lets the checker prune unobserved unknown writes.
//
// A cas expects the value this client last saw for the key (read or wrote),
// so that a fair share of them swap; with no knowledge it expects a value
// that may or may not be current.
type Generator struct {
	w      Config
	keys   []string
	rng    *rand.Rand
	worker int
	seq    uint64
	last   map[string]string // key -> value this client last observed
	pad    string
	buf    []byte
}

// NewGenerator returns worker's generator: its own PCG stream of the
// workload seed, so each client's sequence is reproducible whatever the
// interleaving.
func NewGenerator(w Config, keys []string, worker int) *Generator {
	w = w.WithDefaults()
	g := &Generator{
		w:      w,
		keys:   keys,
		rng:    rand.New(rand.NewPCG(uint64(w.Seed), uint64(worker)+1)),
		worker: worker,
		last:   make(map[string]string),
	}
	if w.ValueSize > 0 {
		b := make([]byte, w.ValueSize)
		for i := range b {
			b[i] = '.'
		}
		g.pad = string(b)
	}
	return g
}

// value returns a fresh unique value.
func (g *Generator) value() string {
	g.seq++
	b := append(g.buf[:0], 'w')
	b = strconv.AppendInt(b, int64(g.worker), 10)
	b = append(b, '-')
	b = strconv.AppendUint(b, g.seq, 10)
	if n := g.w.ValueSize - len(b); n > 0 {
		b = append(b, g.pad[:n]...)
	}
	g.buf = b
	return string(b)
}

// Next returns the client's next operation (call fields only).
func (g *Generator) Next() histories.Operation {
	key := g.keys[g.rng.IntN(len(g.keys))]
	x := g.rng.Float64()
	switch {
	case x < g.w.ReadFraction:
		return histories.Operation{Op: histories.Get, Key: key}
	case x < g.w.ReadFraction+g.w.AppendFraction:
		return histories.Operation{Op: histories.Append, Key: key, Value: g.value()}
	case x < g.w.ReadFraction+g.w.AppendFraction+g.w.CASFraction:
		expect, ok := g.last[key]
		if !ok {
			// Never seen: expect some value of this client's, which
			// exercises the non-swapping path.
			expect = "w" + strconv.Itoa(g.worker) + "-" + strconv.FormatUint(g.seq, 10)
		}
		return histories.Operation{Op: histories.CAS, Key: key, Expect: expect, Value: g.value()}
	default:
		return histories.Operation{Op: histories.Put, Key: key, Value: g.value()}
	}
}

// Observe learns from a completed operation what the key holds, for the
// expectations of later cas operations.
func (g *Generator) Observe(op histories.Operation) {
	if op.Outcome != histories.OK {
		return
	}
	switch op.Op {
	case histories.Get:
		if op.Found {
			g.last[op.Key] = op.Output
		} else {
			delete(g.last, op.Key)
		}
	case histories.Put:
		g.last[op.Key] = op.Value
	case histories.CAS:
		if op.Swapped {
			g.last[op.Key] = op.Value
		}
	case histories.Append:
		// The result depends on what was there; learn it at the next read.
		delete(g.last, op.Key)
	}
}
