package histories

import (
	"context"
	"fmt"
	"html"
	"math"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/anishathalye/porcupine"
)

// The model checks one key: the checker partitions by key itself, so the
// state is one register, not a map, and Partition stays nil.

const (
	opGet uint8 = iota
	opPut
	opAppend
	opCAS
)

// kvState is one key. present distinguishes an absent key from an empty
// value: a get of an absent key answers found=false, and a cas never matches
// an absent key, even with expect "".
type kvState struct {
	present bool
	value   string
}

// kvInput is used by pointer, and carries the state a put (or a swapping
// cas) leaves already boxed: Step runs millions of times per search, and
// boxing a new state into an interface on every call was a quarter of it.
type kvInput struct {
	op     uint8
	key    string // unused by Step; lets a whole-history model partition (benchmarks)
	value  string // put/append value, cas new value
	expect string // cas only
	after  interface{}
}

// newInput fills in the boxed after-state.
func newInput(in kvInput) *kvInput {
	in.after = kvState{present: true, value: in.value}
	return &in
}

// kvOutput is what the client saw. unknown marks an info write: any output
// is accepted and the effect applies (a cas only if its precondition holds).
type kvOutput struct {
	unknown bool
	found   bool   // get
	value   string // get, when found
	swapped bool   // cas
}

// opMeta is shown in the visualization tooltip. The drawn interval is the
// one searched, which the unique-value rules may have narrowed, so the
// recorded one is shown too.
type opMeta struct {
	client    int
	outcome   Outcome
	call, ret int64 // as recorded; ret < 0: none
	node      string
	err       string
	note      string // e.g. "return bounded by an observing read"
}

func kvStep(s, i, o interface{}) (bool, interface{}) {
	st := s.(kvState)
	in := i.(*kvInput)
	out := o.(kvOutput)
	switch in.op {
	case opGet:
		if out.unknown {
			return true, s
		}
		if !out.found {
			return !st.present, s
		}
		return st.present && st.value == out.value, s
	case opPut:
		return true, in.after
	case opAppend:
		return true, kvState{present: true, value: st.value + in.value}
	case opCAS:
		if st.present && st.value == in.expect {
			return out.unknown || out.swapped, in.after
		}
		return out.unknown || !out.swapped, s
	}
	panic(fmt.Sprintf("histories: model step on unknown op %d", in.op))
}

// kvHash is FNV-1a over the value with presence mixed in, written out so
// that hashing a state (done on every search step) allocates nothing.
func kvHash(s interface{}) uint64 {
	st := s.(kvState)
	const prime = 1099511628211
	h := uint64(14695981039346656037)
	if st.present {
		h ^= 1
		h *= prime
	}
	for i := 0; i < len(st.value); i++ {
		h ^= uint64(st.value[i])
		h *= prime
	}
	return h
}

func kvEqual(a, b interface{}) bool {
	x, y := a.(kvState), b.(kvState)
	return x.present == y.present && x.value == y.value
}

// describeMax keeps visualization text short: appended values grow without
// bound and every linearization step repeats the state description.
const describeMax = 48

func quoteShort(s string) string {
	if len(s) > describeMax {
		return strconv.Quote(s[:describeMax/2]) + "…" + strconv.Quote(s[len(s)-describeMax/2:]) + fmt.Sprintf(" (%d bytes)", len(s))
	}
	return strconv.Quote(s)
}

func describeOperation(i, o interface{}) string {
	in := i.(*kvInput)
	out := o.(kvOutput)
	switch in.op {
	case opGet:
		switch {
		case out.unknown:
			return "get -> ?"
		case !out.found:
			return "get -> absent"
		default:
			return "get -> " + quoteShort(out.value)
		}
	case opPut, opAppend:
		name := "put"
		if in.op == opAppend {
			name = "append"
		}
		s := name + "(" + quoteShort(in.value) + ")"
		if out.unknown {
			s += " -> ?"
		}
		return s
	case opCAS:
		s := "cas(" + quoteShort(in.expect) + "->" + quoteShort(in.value) + ") -> "
		switch {
		case out.unknown:
			return s + "?"
		case out.swapped:
			return s + "swapped"
		default:
			return s + "not swapped"
		}
	}
	return "<invalid op>"
}

// describeState and describeMetadata end up in the tooltip's innerHTML:
// escape them.
func describeState(s interface{}) string {
	st := s.(kvState)
	if !st.present {
		return "absent"
	}
	return html.EscapeString(quoteShort(st.value))
}

func describeMetadata(m interface{}) string {
	md, ok := m.(*opMeta)
	if !ok || md == nil {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "client %d, outcome %s<br>recorded call %d", md.client, md.outcome, md.call)
	if md.ret >= 0 {
		fmt.Fprintf(&b, ", return %d", md.ret)
	}
	if md.node != "" {
		b.WriteString("<br>node " + html.EscapeString(md.node))
	}
	if md.err != "" {
		b.WriteString("<br>error: " + html.EscapeString(md.err))
	}
	if md.note != "" {
		b.WriteString("<br>" + html.EscapeString(md.note))
	}
	return b.String()
}

// newModel builds the per-key model for one check. Once stop is set, every
// step is refused: porcupine then unwinds its search within a few steps and
// answers "illegal", which the checker discards as Unknown because stop was
// set. That is how a cancelled context or an exhausted budget stops a search
// promptly: porcupine only watches its own timer. A refused step can only
// remove linearizations, never invent one, so an Ok reached while stopping is
// still a real witness.
func newModel(init kvState, stop *atomic.Bool) porcupine.Model {
	m := porcupine.Model{
		Init:                      func() interface{} { return init },
		Step:                      kvStep,
		Equal:                     kvEqual,
		Hash:                      kvHash,
		DescribeOperation:         describeOperation,
		DescribeState:             describeState,
		DescribeOperationMetadata: describeMetadata,
	}
	if stop != nil {
		m.StepContext = func(_ context.Context, s, i, o interface{}) (bool, interface{}) {
			if stop.Load() {
				return false, s
			}
			return kvStep(s, i, o)
		}
	}
	return m
}

// toPorcupine converts one checked operation. ret overrides the return (for
// info writes: "infinity" or a bound).
func toPorcupine(op Operation, client int, ret int64, note string) porcupine.Operation {
	in := kvInput{key: op.Key, value: op.Value, expect: op.Expect}
	var out kvOutput
	switch op.Op {
	case Get:
		in.op = opGet
		out.found, out.value = op.Found, op.Output
	case Put:
		in.op = opPut
	case Append:
		in.op = opAppend
	case CAS:
		in.op = opCAS
		out.swapped = op.Swapped
	}
	out.unknown = op.Outcome == Info
	return porcupine.Operation{
		ClientId: client,
		Input:    newInput(in),
		Output:   out,
		Call:     op.Call,
		Return:   ret,
		Metadata: &opMeta{client: op.Client, outcome: op.Outcome, call: op.Call, ret: recordedReturn(op), node: op.Node, err: op.Error, note: note},
	}
}

func recordedReturn(op Operation) int64 {
	if op.Outcome == Info && op.Return == 0 {
		return -1
	}
	return op.Return
}

// afterAll is the return given to unknown writes: later than every real
// return in the history, but not MaxInt64, so timelines stay drawable and
// arithmetic on it cannot overflow.
func afterAll(maxTime int64) int64 {
	if maxTime >= math.MaxInt64-1 {
		return math.MaxInt64
	}
	return maxTime + 1
}
