package histories

// Kind is an operation's kind.
type Kind string

// The operation kinds of the KV interface.
const (
	Get    Kind = "get"
	Put    Kind = "put"
	Append Kind = "append"
	CAS    Kind = "cas"
)

// Outcome is what the client learned of an operation.
type Outcome string

const (
	// OK: the operation completed and its results are known.
	OK Outcome = "ok"
	// Fail: the operation certainly had no effect (the error wrapped kv.ErrDefinite).
	Fail Outcome = "fail"
	// Info: unknown; the operation may have taken effect at any time after its call.
	Info Outcome = "info"
	// Invoke appears only in files, never on an Operation the Reader
	// returns: the line a streaming recorder writes when an operation is
	// called, replaced by the operation's completed line (same client and
	// call) when one follows, read as Info when none does (doc.go,
	// "Streaming").
	Invoke Outcome = "invoke"
)

// Operation is one client operation, one line of history.jsonl. Times are
// nanoseconds since the run's start on the monotonic clock.
type Operation struct {
	Client  int     `json:"client"`
	Op      Kind    `json:"op"`
	Key     string  `json:"key"`
	Value   string  `json:"value,omitempty"`
	Expect  string  `json:"expect,omitempty"`
	Call    int64   `json:"call"`
	Return  int64   `json:"return,omitempty"`
	Outcome Outcome `json:"outcome"`
	Found   bool    `json:"found,omitempty"`
	Output  string  `json:"output,omitempty"`
	Swapped bool    `json:"swapped,omitempty"`
	Node    string  `json:"node,omitempty"`
	Error   string  `json:"error,omitempty"`
}

// IsWrite reports whether the operation can change state.
func (o Operation) IsWrite() bool { return o.Op != Get }

// Verdict is a linearizability verdict. Unknown is never Ok: it means the
// checker ran out of budget before it could decide.
type Verdict string

// The three verdicts.
const (
	VerdictOK      Verdict = "ok"
	VerdictIllegal Verdict = "illegal"
	VerdictUnknown Verdict = "unknown"
)

// Annotation marks an interval (or, with End <= Start, an instant) on the
// visualization timeline: a fault, a role change, a checker phase. Times are
// in the history's clock.
type Annotation struct {
	Tag         string // row of the timeline, e.g. "nemesis"
	Start, End  int64
	Description string // text in the box
	Details     string // tooltip
	Color       string // CSS background colour, optional
}
