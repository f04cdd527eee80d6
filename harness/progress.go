package harness

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"
	"unsafe"
)

// FaultReporter is implemented by a Sidecar that knows which faults are in
// force right now (the nemesis). The progress line shows them, so a person
// watching a run sees throughput drop and the fault that dropped it on the
// same line. It is called from the progress goroutine while the sidecar
// runs, so it must be safe for concurrent use.
type FaultReporter interface {
	ActiveFaults() []string
}

// IsTerminal reports whether w is a character device (a terminal), where a
// status line can be rewritten in place. Anything else (a pipe, a file, a
// CI log) gets plain lines, which stay readable when stored.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// statusWriter is a run's log: every log line goes to the console (the
// RunConfig's Progress) and to harness.log, and the progress goroutine's
// status goes to both too — on a terminal as one line rewritten in place
// with \r, elsewhere as plain lines. It serialises the run's goroutines and
// the cluster's, so lines never interleave, and on a terminal it clears the
// status line before a log line and draws it again after, so the two never
// garble each other.
type statusWriter struct {
	mu      sync.Mutex
	console io.Writer
	file    io.Writer
	live    bool
	status  string // the status line on the terminal now (live only)
	width   int    // terminal columns, 0 when unknown
	partial bool   // the console ends in the middle of a log line
}

func newStatusWriter(console, file io.Writer, live bool) *statusWriter {
	s := &statusWriter{console: console, file: file, live: live}
	if f, ok := console.(*os.File); ok && live {
		s.width = terminalWidth(f)
	}
	return s
}

// terminalWidth is the terminal's width in columns, 0 when unknown.
func terminalWidth(f *os.File) int {
	var ws struct{ Row, Col, X, Y uint16 }
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), uintptr(syscall.TIOCGWINSZ), uintptr(unsafe.Pointer(&ws)))
	if errno != 0 {
		return 0
	}
	return int(ws.Col)
}

// clearLine is carriage return and "erase to end of line".
const clearLine = "\r\x1b[K"

// Write writes log bytes to both outputs.
func (s *statusWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.file.Write(p); err != nil {
		return 0, err
	}
	if !s.live {
		_, err := s.console.Write(p)
		return len(p), err
	}
	var buf bytes.Buffer
	if s.status != "" && !s.partial {
		buf.WriteString(clearLine)
	}
	buf.Write(p)
	s.partial = len(p) > 0 && p[len(p)-1] != '\n'
	if s.status != "" && !s.partial {
		buf.WriteString(s.status)
	}
	_, err := s.console.Write(buf.Bytes())
	return len(p), err
}

// Status shows line as the current status.
func (s *statusWriter) Status(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintln(s.file, line)
	if !s.live {
		fmt.Fprintln(s.console, line)
		return
	}
	// A line wider than the terminal wraps, and \r would then rewrite only
	// its last row: cut it (harness.log has it whole).
	if s.width > 1 && utf8.RuneCountInString(line) > s.width-1 {
		line = string([]rune(line)[:s.width-1])
	}
	s.status = line
	if !s.partial {
		fmt.Fprint(s.console, clearLine+line)
	}
}

// Done leaves the last status on its own line, so what is printed next
// starts on a fresh one.
func (s *statusWriter) Done() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.live && s.status != "" && !s.partial {
		fmt.Fprintln(s.console)
	}
	s.status = ""
}

// progressStatus is one progress line's numbers.
type progressStatus struct {
	Store          string
	Elapsed, Total time.Duration
	OK, Fail, Info int64
	Rate           float64 // operations per second since the previous line
	Faults         []string
	faultsKnown    bool
}

// String is the line: "[raft] 12.0s/30s ok=3514 fail=0 info=2 2950 ops/s
// faults: kill n2 (leader)". Faults show only when a sidecar reports them;
// "faults: none" then says so explicitly.
func (p progressStatus) String() string {
	var b strings.Builder
	if p.Store != "" {
		fmt.Fprintf(&b, "[%s] ", p.Store)
	}
	fmt.Fprintf(&b, "%5.1fs/%s  ok=%d fail=%d info=%d  %6.0f ops/s",
		p.Elapsed.Seconds(), p.Total, p.OK, p.Fail, p.Info, p.Rate)
	if p.faultsKnown {
		if len(p.Faults) == 0 {
			b.WriteString("  faults: none")
		} else {
			b.WriteString("  faults: " + strings.Join(p.Faults, ", "))
		}
	}
	return b.String()
}

// activeFaults asks every sidecar that knows which faults are in force.
func activeFaults(sidecars []Sidecar) (faults []string, known bool) {
	for _, sc := range sidecars {
		if fr, ok := sc.(FaultReporter); ok {
			known = true
			faults = append(faults, fr.ActiveFaults()...)
		}
	}
	return faults, known
}
