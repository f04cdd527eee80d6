package histories

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// The benchmark history: 100,000 operations by 64 clients on a simulated
// linearizable store, half gets and half puts of unique values, 1% of all
// operations unknown writes (half of which took effect).
var benchHistories sync.Map // keys -> []Operation

func benchHistory(keys int) []Operation {
	if h, ok := benchHistories.Load(keys); ok {
		return h.([]Operation)
	}
	h := genHistory(genConfig{ops: 100_000, clients: 64, keys: keys, unknown: 0.01, put: 0.5, seed: 42})
	benchHistories.Store(keys, h)
	return h
}

func BenchmarkCheck(b *testing.B) {
	for _, keys := range []int{1000, 10} {
		b.Run(fmt.Sprintf("keys=%d", keys), func(b *testing.B) {
			ops := benchHistory(keys)
			var res Result
			cpu := cpuTime()
			for b.Loop() {
				var err error
				res, err = Check(context.Background(), ops, CheckOptions{Budget: 5 * time.Minute})
				if err != nil || res.Verdict != VerdictOK {
					b.Fatalf("verdict %s, err %v", res.Verdict, err)
				}
			}
			b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N)/1e6, "cpu-ms/op")
			b.ReportMetric(float64(res.Pruned), "pruned")
			b.ReportMetric(float64(res.Bounded), "bounded")
		})
	}
}

// cpuTime is the process's user+system CPU time: on a shared machine it
// varies much less than wall time, so the README reports both.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkPlainPorcupine is the baseline: the same history through
// porcupine's own partitioning, unknown writes open to the end, no pruning.
func BenchmarkPlainPorcupine(b *testing.B) {
	for _, keys := range []int{1000, 10} {
		b.Run(fmt.Sprintf("keys=%d", keys), func(b *testing.B) {
			ops := benchHistory(keys)
			cpu := cpuTime()
			for b.Loop() {
				if res := plainCheck(ops, 5*time.Minute); res != porcupine.Ok {
					b.Fatalf("verdict %s", res)
				}
			}
			b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N)/1e6, "cpu-ms/op")
		})
	}
}

// The workload's shape: 64 clients, half gets, writes 3:1:1 put, cas and
// append (appends a fifth of the writes), 1% of operations unknown writes,
// fixed seeds, as `chainraft gen` writes them.
var appendHistories sync.Map // shape -> []Operation

type appendShape struct{ ops, keys int }

func appendHistory(s appendShape) []Operation {
	if h, ok := appendHistories.Load(s); ok {
		return h.([]Operation)
	}
	h := make([]Operation, 0, s.ops)
	err := Generate(GenConfig{Ops: s.ops, Clients: 64, Keys: s.keys, Unknown: 0.01, Put: 0.3, CAS: 0.1, Append: 0.1, Seed: 1},
		func(op Operation) error { h = append(h, op); return nil })
	if err != nil {
		panic(err)
	}
	appendHistories.Store(s, h)
	return h
}

var appendShapes = []appendShape{{100_000, 10}, {1_000_000, 100}}

func BenchmarkCheckAppends(b *testing.B) {
	for _, s := range appendShapes {
		b.Run(fmt.Sprintf("ops=%d/keys=%d", s.ops, s.keys), func(b *testing.B) {
			ops := appendHistory(s)
			var res Result
			cpu := cpuTime()
			for b.Loop() {
				var err error
				res, err = Check(context.Background(), ops, CheckOptions{Budget: 5 * time.Minute})
				if err != nil || res.Verdict != VerdictOK {
					b.Fatalf("verdict %s, err %v", res.Verdict, err)
				}
			}
			b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N)/1e6, "cpu-ms/op")
			b.ReportMetric(float64(res.Bounded), "bounded")
		})
	}
}

// BenchmarkPlainPorcupineAppends is the baseline on the same histories.
func BenchmarkPlainPorcupineAppends(b *testing.B) {
	for _, s := range appendShapes {
		b.Run(fmt.Sprintf("ops=%d/keys=%d", s.ops, s.keys), func(b *testing.B) {
			ops := appendHistory(s)
			cpu := cpuTime()
			unknown := 0
			for b.Loop() {
				// Porcupine may run out of its 2 minutes here: count it
				// rather than fail, so the table shows it.
				switch res := plainCheck(ops, 2*time.Minute); res {
				case porcupine.Ok:
				case porcupine.Unknown:
					unknown++
				default:
					b.Fatalf("verdict %s", res)
				}
			}
			b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N)/1e6, "cpu-ms/op")
			b.ReportMetric(float64(unknown), "unknown")
		})
	}
}

// appendFile writes the shape's history (as appendHistory) to a file once,
// for the benchmarks that read it as `chainraft check` does. The files
// outlive one benchmark, so they live in benchDirs, which TestMain
// removes when the package's tests and benchmarks are done.
var (
	appendFiles sync.Map // shape -> path
	benchDirs   struct {
		sync.Mutex
		dirs []string
	}
)

func TestMain(m *testing.M) {
	code := m.Run()
	benchDirs.Lock()
	for _, d := range benchDirs.dirs {
		os.RemoveAll(d)
	}
	benchDirs.Unlock()
	os.Exit(code)
}

func appendFile(b *testing.B, s appendShape) string {
	if p, ok := appendFiles.Load(s); ok {
		return p.(string)
	}
	dir, err := os.MkdirTemp("", "chainraft-bench")
	if err != nil {
		b.Fatal(err)
	}
	benchDirs.Lock()
	benchDirs.dirs = append(benchDirs.dirs, dir)
	benchDirs.Unlock()
	path := filepath.Join(dir, fmt.Sprintf("gen-%d-%d.jsonl", s.ops, s.keys))
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := NewWriter(f)
	err = Generate(GenConfig{Ops: s.ops, Clients: 64, Keys: s.keys, Unknown: 0.01, Put: 0.3, CAS: 0.1, Append: 0.1, Seed: 1}, w.Write)
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		b.Fatal(err)
	}
	appendFiles.Store(s, path)
	return path
}

// BenchmarkCheckFile is `chainraft check` on the workload's shape: the
// file streamed, decoded, split by key and checked. Peak memory is
// measured by /usr/bin/time -v on the command (README).
func BenchmarkCheckFile(b *testing.B) {
	for _, s := range appendShapes {
		b.Run(fmt.Sprintf("ops=%d/keys=%d", s.ops, s.keys), func(b *testing.B) {
			path := appendFile(b, s)
			cpu := cpuTime()
			for b.Loop() {
				res, err := CheckFile(context.Background(), path, CheckOptions{Budget: 5 * time.Minute})
				if err != nil || res.Verdict != VerdictOK {
					b.Fatalf("verdict %s, err %v", res.Verdict, err)
				}
			}
			b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N)/1e6, "cpu-ms/op")
		})
	}
}

// BenchmarkStreamRecorder records through 8 sessions to a discarding
// writer: ns/op is the cost of one recorded operation (Begin and End of a
// write: two lines), heap-B/op what the recorder holds per operation
// once they are written (nothing: it keeps none).
func BenchmarkStreamRecorder(b *testing.B) {
	r := NewStreamRecorderTo(io.Discard)
	sessions := make([]*Session, 8)
	for i := range sessions {
		sessions[i] = r.Session()
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	i := 0
	for b.Loop() {
		s := sessions[i%len(sessions)]
		op := Operation{Op: Put, Key: "k1", Value: "c1-123456"}
		s.Begin(op)
		op.Outcome, op.Node = OK, "n1"
		s.End(op)
		i++
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&after)
	if err := r.Close(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(int64(after.HeapInuse)-int64(before.HeapInuse))/float64(b.N), "heap-B/op")
}
