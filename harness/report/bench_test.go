package report

import (
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkWriteRun1M renders the report of a run with about a million
// operations (4 clients for 280 s, ~900 ops/s each): the history is
// streamed, so time and memory grow with the operations only linearly.
func BenchmarkWriteRun1M(b *testing.B) {
	r := defaultSynth()
	r.seconds, r.opsPerSecond = 280, 2000
	dir := r.write(b, b.TempDir())
	fi, err := os.Stat(filepath.Join(dir, "history.jsonl"))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(fi.Size())
	b.ResetTimer()
	for b.Loop() {
		if err := WriteRun(dir); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	tl, err := ReadTimeline(filepath.Join(dir, "history.jsonl"))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(tl.Ops), "ops")
}
