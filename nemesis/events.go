package nemesis

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"
	"time"
)

// Phases of an event.
const (
	PhaseInject = "inject"
	PhaseHeal   = "heal"
)

// Event is one line of nemesis.jsonl: an injection or a heal as it happened.
// Time is on the history's clock (ns since the run's start), so events and
// operations line up.
type Event struct {
	Time  int64  `json:"time"`
	Step  int    `json:"step"`
	Fault string `json:"fault"` // the kind
	Event string `json:"event"` // "inject" or "heal"
	Role  string `json:"role,omitempty"`
	// Targets are the resolved node ids (ZooKeeper server ids for zk-kill).
	Targets []int `json:"targets,omitempty"`
	// Added are the nodes a member heal added in place of the targets, when
	// the store adds a fresh node rather than the same one (raft).
	Added []int  `json:"added,omitempty"`
	Error string `json:"error,omitempty"`
	// Took is how long the injection or heal took; Time is when it began
	// applying the fault (an injection: once its targets were resolved).
	Took time.Duration `json:"took,omitempty"`
	// Skipped: the store or cluster cannot do this fault; nothing was
	// applied and no heal follows.
	Skipped bool `json:"skipped,omitempty"`
	// Spec is the fault as scheduled, and At and Duration its planned offsets:
	// on inject lines, enough for Replay to rebuild the step.
	Spec     *Fault        `json:"spec,omitempty"`
	At       time.Duration `json:"at,omitempty"`
	Duration time.Duration `json:"duration,omitempty"`
	// Grudge and Cuts record a partition as applied.
	Grudge *Grudge `json:"grudge,omitempty"`
	Cuts   []Cut   `json:"cuts,omitempty"`
}

// Description is the event's fault and targets in words, e.g. "kill n2
// (leader)" or "partition majorities-ring".
func (e Event) Description() string {
	s := e.Fault
	if e.Spec != nil && e.Spec.Shape != "" {
		s += " " + e.Spec.Shape
	}
	if len(e.Targets) > 0 {
		prefix := nodePrefix
		if e.Fault == KindZKKill {
			prefix = zkPrefix
		}
		for i, t := range e.Targets {
			sep := ","
			if i == 0 {
				sep = " "
			}
			s += fmt.Sprintf("%s%s%d", sep, prefix, t)
		}
	}
	if e.Role != "" && !(len(e.Targets) > 0 && e.Role == fmt.Sprintf("node:%d", e.Targets[0])) {
		s += " (" + e.Role + ")"
	}
	for i, a := range e.Added {
		if i == 0 {
			s += ", added"
		}
		s += fmt.Sprintf(" %s%d", nodePrefix, a)
	}
	if e.Spec != nil && e.Spec.Kind == KindDelay {
		s += " +" + e.Spec.Delay.String()
	}
	if e.Spec != nil && e.Spec.Kind == KindClock {
		s += " " + signed(e.Spec.Step)
	}
	return s
}

// EventWriter appends events to nemesis.jsonl, one JSON object a line.
// Safe for concurrent use.
type EventWriter struct {
	mu sync.Mutex
	w  io.Writer
}

// NewEventWriter writes to w. Each event is one Write call, so a crash leaves
// at most the last line torn.
func NewEventWriter(w io.Writer) *EventWriter { return &EventWriter{w: w} }

// Write appends e.
func (w *EventWriter) Write(e Event) error {
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("nemesis: encode event: %w", err)
	}
	b = append(b, '\n')
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, err := w.w.Write(b); err != nil {
		return fmt.Errorf("nemesis: write event: %w", err)
	}
	return nil
}

// ErrBadEvents is returned for a nemesis.jsonl that does not parse.
var ErrBadEvents = errors.New("nemesis: bad nemesis.jsonl")

// ReadEvents reads a nemesis.jsonl stream. A torn last line (the harness died
// mid-write) is ignored; a bad line anywhere else is an error.
func ReadEvents(r io.Reader) ([]Event, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var out []Event
	var pending error
	line := 0
	for sc.Scan() {
		line++
		if pending != nil {
			return nil, pending
		}
		b := sc.Bytes()
		if len(b) == 0 {
			continue
		}
		var e Event
		if err := json.Unmarshal(b, &e); err != nil {
			pending = fmt.Errorf("%w: line %d: %v", ErrBadEvents, line, err)
			continue
		}
		if e.Event != PhaseInject && e.Event != PhaseHeal {
			return nil, fmt.Errorf("%w: line %d: event %q is neither inject nor heal", ErrBadEvents, line, e.Event)
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("nemesis: read events: %w", err)
	}
	return out, nil
}

// ReadEventsFile reads the nemesis.jsonl at path.
func ReadEventsFile(path string) ([]Event, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadEvents(f)
}

// WriteEventsFile writes events to path as a nemesis.jsonl, the
// counterpart of ReadEventsFile for events held in memory.
func WriteEventsFile(path string, events []Event) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(f)
	ew := NewEventWriter(bw)
	for _, e := range events {
		if err := ew.Write(e); err != nil {
			f.Close()
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Replay rebuilds the schedule recorded in events: one step per inject line
// that carries its spec, in step order, with the planned offsets. Roles are
// re-resolved when the replayed schedule runs, so "kill leader" kills
// whoever leads then — the schedule replays, not the accident of who led.
func Replay(events []Event) ([]Step, error) {
	var steps []Step
	seen := map[int]bool{}
	for _, e := range events {
		if e.Event != PhaseInject {
			continue
		}
		if e.Spec == nil {
			return nil, fmt.Errorf("%w: inject event of step %d has no spec", ErrBadEvents, e.Step)
		}
		if seen[e.Step] {
			return nil, fmt.Errorf("%w: step %d injected twice", ErrBadEvents, e.Step)
		}
		seen[e.Step] = true
		steps = append(steps, Step{ID: e.Step, At: e.At, Duration: e.Duration, Fault: *e.Spec})
	}
	sort.SliceStable(steps, func(i, j int) bool { return steps[i].ID < steps[j].ID })
	return steps, nil
}
