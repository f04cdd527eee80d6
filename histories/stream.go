package histories

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// StreamFlushInterval is the longest a completed operation waits in the
// streaming recorder's buffer before it is written to the file: what a
// SIGKILL can lose at most.
const StreamFlushInterval = 200 * time.Millisecond

// streamQueue bounds the lines waiting for the flusher. A full queue makes
// Begin and End wait (back-pressure on the workload) rather than grow
// memory; at 200 bytes an entry it is about 1 MB.
const streamQueue = 4096

// streamLine is one line on its way to the file.
type streamLine struct {
	op     Operation
	invoke bool
}

// streamSink is the ordered path from the sessions to the file: every line
// goes through one channel to one flusher goroutine, so the file holds the
// lines in the order Begin and End sent them. That order is what makes a
// killed recording sound: a write's invoke line is sent before its request,
// so any line recorded after something saw the write follows it.
type streamSink struct {
	lines chan streamLine
	done  chan struct{} // closed when the flusher has exited

	sendMu sync.RWMutex // senders hold it shared; Close takes it to stop them
	closed bool

	// buf holds whole lines only, written with one Write each time: a
	// buffered writer would also write when full, in the middle of a line,
	// and a kill right after would leave a torn last line.
	buf    []byte
	w      io.Writer
	closer io.Closer // the file NewStreamRecorder opened; nil for a caller's writer
	err    error     // the flusher's first error, read after done
}

// NewStreamRecorder starts a recorder that keeps no completed operation:
// every operation goes to path (created, truncated) as a line of
// history.jsonl when it completes, and every write also gets an invoke
// line when it begins (doc.go, "Streaming"). Lines are buffered and
// flushed at least every StreamFlushInterval by a goroutine the recorder
// owns; Close stops it. Sessions, Begin and End work as with NewRecorder.
func NewStreamRecorder(path string) (*Recorder, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("histories: %w", err)
	}
	r := NewStreamRecorderTo(f)
	r.stream.closer = f
	return r, nil
}

// NewStreamRecorderTo is NewStreamRecorder onto w, which Close does not
// close.
func NewStreamRecorderTo(w io.Writer) *Recorder {
	r := NewRecorder()
	r.stream = &streamSink{lines: make(chan streamLine, streamQueue), done: make(chan struct{}), w: w, buf: make([]byte, 0, 2*streamBuffer)}
	go r.stream.flusher()
	return r
}

// send queues one line; after Close it drops the line (a client stuck in
// a store call that returns after the run ended: its operation was already
// written as in flight).
func (s *streamSink) send(op Operation, invoke bool) {
	s.sendMu.RLock()
	defer s.sendMu.RUnlock()
	if s.closed {
		return
	}
	s.lines <- streamLine{op: op, invoke: invoke}
}

// flusher writes queued lines and flushes whenever StreamFlushInterval
// has passed with something buffered. It exits when the channel is closed,
// after a last flush.
func (s *streamSink) flusher() {
	defer close(s.done)
	tick := time.NewTicker(StreamFlushInterval)
	defer tick.Stop()
	for {
		select {
		case l, ok := <-s.lines:
			if !ok {
				s.flush()
				return
			}
			op := l.op
			if l.invoke {
				op = invokeOf(op)
			}
			n := len(s.buf)
			s.buf = appendLine(s.buf, op)
			if len(s.buf)-n > maxLine {
				// Never a line the reader refuses: drop it, and Close
				// reports why the recording failed.
				s.buf = s.buf[:n]
				s.keep(fmt.Errorf("%w: %s of key %.40q", ErrLineTooLong, op.Op, op.Key))
			}
			if len(s.buf) >= streamBuffer {
				s.flush()
			}
		case <-tick.C:
			s.flush()
		}
	}
}

// streamBuffer is how many bytes of lines the flusher gathers before it
// writes them without waiting for the tick.
const streamBuffer = 64 << 10

// flush writes the buffered lines; after an error it drops them (the
// error is kept for Close) so memory stays bounded.
func (s *streamSink) flush() {
	if len(s.buf) == 0 {
		return
	}
	if s.err == nil {
		if _, err := s.w.Write(s.buf); err != nil {
			s.keep(fmt.Errorf("histories: write: %w", err))
		}
	}
	s.buf = s.buf[:0]
}

func (s *streamSink) keep(err error) {
	if err != nil && s.err == nil {
		s.err = err
	}
}

// Close ends a streaming recording: each operation still in flight is
// written as unknown (InFlightError; its client may still be inside a
// store call, and it may yet take effect), the buffer is flushed, the
// flusher stopped and a file NewStreamRecorder opened is synced and
// closed. Begin and End after Close record nothing. Close reports the
// first write error; calling it again returns the same. On a recorder
// from NewRecorder it does nothing.
func (r *Recorder) Close() error {
	s := r.stream
	if s == nil {
		return nil
	}
	s.sendMu.Lock()
	if s.closed {
		s.sendMu.Unlock()
		<-s.done
		return s.err
	}
	s.closed = true
	s.sendMu.Unlock()
	// No sender runs from here on; the flusher drains what they queued.
	for _, op := range r.Operations() {
		s.lines <- streamLine{op: op}
	}
	close(s.lines)
	<-s.done
	if f, ok := s.closer.(*os.File); ok {
		if err := f.Sync(); err != nil {
			s.keep(fmt.Errorf("histories: sync: %w", err))
		}
	}
	if s.closer != nil {
		if err := s.closer.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
			s.keep(fmt.Errorf("histories: close: %w", err))
		}
	}
	return s.err
}

// ScanFile reads the history at path one operation at a time, validating as
// ReadFile does, and calls fn with each (an invoke line without completion
// comes last, as unknown). It holds one operation, not the file: what a
// summary over a long recording should use. Its check that no client
// overlaps itself keeps one time per client while each client's operations
// come in order (as a recorder writes them); at the first that does not, it
// reads the file again from the start with the full check, passing over the
// operations fn already had. fn's error stops the scan and is returned.
func ScanFile(path string, fn func(Operation) error) error {
	delivered, lean := 0, true
	for {
		again, err := scanOnce(path, lean, delivered, func(op Operation) error {
			delivered++
			return fn(op)
		})
		if !again {
			return err
		}
		lean = false
	}
}

// scanOnce reads path, passing over the first skip operations; again
// reports that a lean check needs the full one.
func scanOnce(path string, lean bool, skip int, fn func(Operation) error) (again bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return false, fmt.Errorf("histories: %w", err)
	}
	defer f.Close()
	r := NewReader(f, path)
	if lean {
		r.check = clientCheck{lean: true, lastRet: map[int]int64{}}
	}
	for {
		op, err := r.Next()
		if err == io.EOF {
			return false, nil
		}
		if errors.Is(err, errNeedFullCheck) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		if skip > 0 {
			skip--
			continue
		}
		if err := fn(op); err != nil {
			return false, err
		}
	}
}
