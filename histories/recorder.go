package histories

import (
	"cmp"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Recorder collects the history of a live run. Times are nanoseconds since
// the recorder was made, read from the monotonic clock (time.Since), so a
// wall-clock step during a run cannot reorder operations.
//
// The hot path takes no shared lock: each workload goroutine records through
// its own [Session], whose operations go to a slice only that session
// appends to. The per-session mutex is uncontended while the run is going
// and exists so that [Recorder.Operations] may be called at any time, even
// while a client goroutine is stuck inside a store call that ignores its
// deadline.
type Recorder struct {
	t0 time.Time

	// nextClient hands out client ids: dense and starting at 0, because the
	// visualization draws one row per id from 0 to the largest.
	nextClient atomic.Int64

	mu       sync.Mutex // guards sessions; taken only by Session and Operations
	sessions []*Session

	// stream, when set, receives every line instead of the sessions'
	// chunks (see NewStreamRecorder).
	stream *streamSink
}

// NewRecorder starts the run's clock.
func NewRecorder() *Recorder { return &Recorder{t0: time.Now()} }

// Start is the wall-clock instant the recorder's clock reads zero.
func (r *Recorder) Start() time.Time { return r.t0 }

// Now is the run's clock: nanoseconds since the recorder was made.
func (r *Recorder) Now() int64 { return int64(time.Since(r.t0)) }

func (r *Recorder) newClientID() int { return int(r.nextClient.Add(1) - 1) }

// Session returns a session for one workload goroutine, under a fresh client
// id. A Session must be used by one goroutine at a time.
func (r *Recorder) Session() *Session {
	s := &Session{r: r, client: r.newClientID()}
	r.mu.Lock()
	r.sessions = append(r.sessions, s)
	r.mu.Unlock()
	return s
}

// Session records the operations of one workload goroutine: one at a time,
// each between a Begin and an End. After an operation whose outcome is
// unknown (info) the session continues under a new client id: the unknown
// operation stays open to the end of the history, and a client with an open
// operation must not issue another (it would overlap itself).
type Session struct {
	r *Recorder

	mu       sync.Mutex
	client   int
	inFlight bool
	pending  Operation // the in-flight operation, valid while inFlight
	// chunks hold the completed operations in order. Fixed-size chunks
	// rather than one growing slice: growing copies every operation again
	// (they are large structs), which made recording cost microseconds.
	chunks [][]Operation
	n      int // completed operations
}

// chunkOps is the capacity of one chunk: large enough that allocating one is
// rare, small enough that a short run does not hold megabytes per session.
const chunkOps = 1024

// Client is the id the session's next (or in-flight) operation has.
func (s *Session) Client() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client < 0 {
		s.client = s.r.newClientID()
	}
	return s.client
}

// Begin records the call of op and returns its call time. The session sets
// op's Client and Call; take Begin immediately before sending the request.
// Beginning while another operation is in flight is a harness bug: it panics.
func (s *Session) Begin(op Operation) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inFlight {
		panic(fmt.Sprintf("histories: client %d began %s %q while %s %q (call %d) is in flight",
			s.client, op.Op, op.Key, s.pending.Op, s.pending.Key, s.pending.Call))
	}
	if s.client < 0 {
		s.client = s.r.newClientID()
	}
	op.Client = s.client
	op.Call = s.r.Now()
	s.pending = op
	s.inFlight = true
	if s.r.stream != nil && op.IsWrite() {
		// Before the request leaves: a read that sees this write can
		// only be recorded after this line (one ordered stream).
		s.r.stream.send(op, true)
	}
	return op.Call
}

// End completes the in-flight operation and returns it as recorded. op must
// be the operation passed to Begin with its result fields set (Outcome, and
// Found, Output, Swapped, Node, Error as they apply); the session sets Client
// and Call from Begin and Return from the clock (none for info). Take End
// immediately after the reply arrives. Ending with no operation in flight, or
// with another operation than the one begun, panics.
func (s *Session) End(op Operation) Operation {
	now := s.r.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.inFlight {
		panic(fmt.Sprintf("histories: client %d ended %s %q with no operation in flight", s.client, op.Op, op.Key))
	}
	if op.Op != s.pending.Op || op.Key != s.pending.Key {
		panic(fmt.Sprintf("histories: client %d ended %s %q but %s %q is in flight",
			s.client, op.Op, op.Key, s.pending.Op, s.pending.Key))
	}
	switch op.Outcome {
	case OK, Fail:
		op.Return = now
	case Info:
		op.Return = 0
	default:
		panic(fmt.Sprintf("histories: client %d ended %s %q with outcome %q", s.client, op.Op, op.Key, op.Outcome))
	}
	op.Client = s.client
	op.Call = s.pending.Call
	if s.r.stream != nil {
		s.r.stream.send(op, false)
		s.n++
		s.inFlight = false
		s.pending = Operation{}
		if op.Outcome == Info {
			s.client = -1
		}
		return op
	}
	if len(s.chunks) == 0 || len(s.chunks[len(s.chunks)-1]) == chunkOps {
		s.chunks = append(s.chunks, make([]Operation, 0, chunkOps))
	}
	last := &s.chunks[len(s.chunks)-1]
	*last = append(*last, op)
	s.n++
	s.inFlight = false
	s.pending = Operation{}
	if op.Outcome == Info {
		// The new id is taken at the next Begin, so that ids stay dense
		// in the history: a session that stops after an info outcome
		// leaves no empty id behind.
		s.client = -1
	}
	return op
}

// InFlightError is the error text of an operation still in flight when the
// history was taken: recorded as info, since it may yet take effect.
const InFlightError = "in flight when the history was taken"

// Operations returns every recorded operation, sorted by call time (ties in
// session order). An operation still in flight is included with outcome info,
// since it may have taken effect or may still. Operations may be called while
// sessions are recording; it sees each session at one instant. A streaming
// recorder keeps no completed operation: its Operations has only those in
// flight; read the file back instead (ScanFile, ReadFile).
func (r *Recorder) Operations() []Operation {
	r.mu.Lock()
	sessions := slices.Clone(r.sessions)
	r.mu.Unlock()
	n := 0
	for _, s := range sessions {
		s.mu.Lock()
		n += s.n + 1
		s.mu.Unlock()
	}
	out := make([]Operation, 0, n)
	for _, s := range sessions {
		s.mu.Lock()
		for _, c := range s.chunks {
			out = append(out, c...)
		}
		if s.inFlight {
			op := s.pending
			op.Outcome = Info
			if op.Error == "" {
				op.Error = InFlightError
			}
			out = append(out, op)
		}
		s.mu.Unlock()
	}
	// Each session's slice is already in call order; a stable sort keeps
	// equal call times in session order, which is deterministic.
	slices.SortStableFunc(out, func(a, b Operation) int { return cmp.Compare(a.Call, b.Call) })
	return out
}

// Len is the number of completed operations recorded so far.
func (r *Recorder) Len() int {
	r.mu.Lock()
	sessions := slices.Clone(r.sessions)
	r.mu.Unlock()
	n := 0
	for _, s := range sessions {
		s.mu.Lock()
		n += s.n
		s.mu.Unlock()
	}
	return n
}
