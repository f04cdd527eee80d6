package harness

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/histories"
)

func TestStatusLineOnATerminal(t *testing.T) {
	var console, file bytes.Buffer
	s := newStatusWriter(&console, &file, true)
	s.Status("[raft] 1.0s/30s ok=10")
	s.Status("[raft] 2.0s/30s ok=20")
	_, err := s.Write([]byte("leader changed\n"))
	require.NoError(t, err)
	s.Done()
	// The status is rewritten in place; a log line clears it, prints, and
	// draws it again; Done leaves it on a line of its own.
	require.Equal(t, clearLine+"[raft] 1.0s/30s ok=10"+clearLine+"[raft] 2.0s/30s ok=20"+
		clearLine+"leader changed\n[raft] 2.0s/30s ok=20\n", console.String())
	// harness.log never sees control characters: one line per status.
	require.Equal(t, "[raft] 1.0s/30s ok=10\n[raft] 2.0s/30s ok=20\nleader changed\n", file.String())
}

func TestStatusLineWaitsForAPartialLogLine(t *testing.T) {
	var console, file bytes.Buffer
	s := newStatusWriter(&console, &file, true)
	s.Status("A")
	_, _ = s.Write([]byte("half "))
	s.Status("B") // must not cut the log line in two
	_, _ = s.Write([]byte("line\n"))
	require.Equal(t, clearLine+"A"+clearLine+"half line\nB", console.String())
}

func TestStatusLineFitsTheTerminal(t *testing.T) {
	var console, file bytes.Buffer
	s := newStatusWriter(&console, &file, true)
	s.width = 10
	s.Status("0123456789abcdef")
	require.Equal(t, clearLine+"012345678", console.String(), "one column spare, so the cursor stays on the row")
	require.Equal(t, "0123456789abcdef\n", file.String())
}

func TestStatusLinesWhenNotATerminal(t *testing.T) {
	var console, file bytes.Buffer
	s := newStatusWriter(&console, &file, false)
	s.Status("one")
	_, _ = s.Write([]byte("log\n"))
	s.Status("two")
	s.Done()
	require.Equal(t, "one\nlog\ntwo\n", console.String())
	require.NotContains(t, console.String(), "\r")
	require.Equal(t, console.String(), file.String())
}

func TestIsTerminal(t *testing.T) {
	require.False(t, IsTerminal(&bytes.Buffer{}))
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	require.NoError(t, err)
	defer f.Close()
	require.False(t, IsTerminal(f), "a regular file")
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	defer w.Close()
	require.False(t, IsTerminal(w), "a pipe (CI logs)")
	// The check is the file mode: a character device counts.
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	require.NoError(t, err)
	defer null.Close()
	require.True(t, IsTerminal(null))
}

func TestProgressStatusLine(t *testing.T) {
	p := progressStatus{Store: "chain", Elapsed: 12 * time.Second, Total: 30 * time.Second, OK: 3514, Fail: 1, Info: 2, Rate: 2950}
	require.Equal(t, "[chain]  12.0s/30s  ok=3514 fail=1 info=2    2950 ops/s", p.String())
	p.faultsKnown = true
	require.True(t, strings.HasSuffix(p.String(), "faults: none"), p.String())
	p.Faults = []string{"kill n2 (head)", "pause n3"}
	require.True(t, strings.HasSuffix(p.String(), "faults: kill n2 (head), pause n3"), p.String())
}

// faultySidecar claims a fault is active for the whole run.
type faultySidecar struct{}

func (faultySidecar) Run(ctx context.Context, _ SidecarEnv) error         { <-ctx.Done(); return nil }
func (faultySidecar) Finish(*Summary, *RunHistory) []histories.Annotation { return nil }
func (faultySidecar) ActiveFaults() []string                              { return []string{"pause n1"} }

// syncBuffer is a bytes.Buffer safe for the run's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestRunPrintsProgressWithFaults(t *testing.T) {
	cfg := baseConfig(t, "memory")
	var out syncBuffer
	cfg.Progress = &out
	cfg.ProgressEvery = 100 * time.Millisecond
	cfg.TimeLimit = 450 * time.Millisecond
	cfg.Sidecars = []Sidecar{faultySidecar{}}
	res, err := Run(context.Background(), cfg)
	require.NoError(t, err)
	require.Equal(t, "ok", res.Summary.Verdict)
	s := out.String()
	require.Regexp(t, `\[memory\] +[0-9.]+s/450ms  ok=[0-9]+ fail=0 info=0 +[0-9]+ ops/s`, s)
	require.Contains(t, s, "faults: pause n1")
	require.NotContains(t, s, "\r", "a buffer is not a terminal")
	log, err := os.ReadFile(filepath.Join(res.Dir, "harness.log"))
	require.NoError(t, err)
	require.Contains(t, string(log), "faults: pause n1")

	// Every run leaves its report and the index next to it.
	require.FileExists(t, filepath.Join(res.Dir, "report.html"))
	require.FileExists(t, filepath.Join(cfg.Out, "index.html"))
	require.Contains(t, s, "report: "+filepath.Join(res.Dir, "report.html"))
}
