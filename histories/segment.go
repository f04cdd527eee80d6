package histories

import (
	"math"

	"github.com/anishathalye/porcupine"
)

// segment is a stretch of one key's operations that can be searched on its
// own: ops[lo:hi] of the key, starting from state init.
type segment struct {
	lo, hi int
	init   kvState
}

// minSegmentOps keeps segments large enough that the fixed cost of a search
// (a goroutine, a timer, a cache) stays small next to the search itself. A
// variable so tests can cut small histories.
var minSegmentOps = 256

// segmentKey splits a key's operations (sorted by call) where the history
// provably restarts from a known state. A cut between ops[i] and ops[i+1]
// is made when
//
//   - it is quiescent: every operation before it returned before any
//     operation after it was called (strictly: porcupine takes touching
//     intervals as concurrent), so every linearization puts all of the
//     first part first; and
//   - the state after the first part is forced: the segment has no
//     state-changing operation, or its state-changing operation with the
//     latest call is a put or a swapped cas that began after every other
//     one returned, so it is last in every linearization and its value is
//     the state.
//
// Then the key is linearizable iff each segment is, from its forced start
// state: linearizations of the parts concatenate, and any linearization of
// the whole restricts to them. Search cost grows much faster than linearly
// with the length of what is searched (porcupine hashes and copies a bitset
// of all operations at every step), so segments make long keys cheap.
// Operations open to the end (unknown writes neither pruned nor bounded)
// have a return after everything, so no cut follows them.
func segmentKey(ops []porcupine.Operation) []segment {
	var segs []segment
	lo := 0
	init := kvState{}
	maxRet := int64(math.MinInt64)
	last := -1                         // the segment's state-changing op with the latest call
	othersRet := int64(math.MinInt64)  // latest return among its other state-changing ops
	changesRet := int64(math.MinInt64) // latest return among all its state-changing ops
	lastRead := -1                     // the segment's completed read with the latest call
	for i, op := range ops {
		maxRet = max(maxRet, op.Return)
		if changesState(op) {
			if last >= 0 {
				othersRet = max(othersRet, ops[last].Return)
			}
			last = i
			changesRet = max(changesRet, op.Return)
		}
		if in, out := op.Input.(*kvInput), op.Output.(kvOutput); in.op == opGet && !out.unknown {
			lastRead = i
		}
		if i+1 == len(ops) || i+1-lo < minSegmentOps || maxRet >= ops[i+1].Call {
			continue
		}
		next := init
		switch {
		case last < 0:
		case othersRet < ops[last].Call && forcesValue(ops[last]):
			next = kvState{present: true, value: ops[last].Input.(*kvInput).value}
		case lastRead >= 0 && ops[lastRead].Call > changesRet:
			// A read that began after every state change returned saw
			// the state they leave.
			out := ops[lastRead].Output.(kvOutput)
			next = kvState{present: out.found, value: out.value}
		default:
			continue
		}
		segs = append(segs, segment{lo: lo, hi: i + 1, init: init})
		lo, init, last, othersRet, changesRet, lastRead = i+1, next, -1, math.MinInt64, math.MinInt64, -1
	}
	return append(segs, segment{lo: lo, hi: len(ops), init: init})
}

// changesState: everything but reads and a completed cas that did not swap.
func changesState(op porcupine.Operation) bool {
	in, out := op.Input.(*kvInput), op.Output.(kvOutput)
	switch in.op {
	case opGet:
		return false
	case opCAS:
		return out.unknown || out.swapped
	}
	return true
}

// forcesValue: the op leaves the key holding its value whenever it is
// linearized (an unknown put is linearized within the search like any
// other op, and applies).
func forcesValue(op porcupine.Operation) bool {
	in, out := op.Input.(*kvInput), op.Output.(kvOutput)
	switch in.op {
	case opPut:
		return true
	case opCAS:
		return !out.unknown && out.swapped
	}
	return false
}
