package histories

import (
	"context"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/anishathalye/porcupine"
)

// CheckReference is a second, deliberately plain opinion on a history: a
// model written apart from the one Check uses, Porcupine's own partitioning
// by key over the whole history, unknown writes left open to the end, and
// none of Check's pruning, bounding, value clusters or segments. It exists so
// that a verdict can be re-derived by code that shares nothing clever with
// the checker under suspicion (`chainraft check --reference`). It is
// exponentially slower on some histories; running out of the timeout is
// Unknown, never Ok.
func CheckReference(ctx context.Context, ops []Operation, timeout time.Duration) (Verdict, error) {
	if err := ValidateAll(ops); err != nil {
		return "", err
	}
	var end int64
	for _, op := range ops {
		end = max(end, op.Call, op.Return)
	}
	pops := make([]porcupine.Operation, 0, len(ops))
	for _, op := range ops {
		if op.Outcome == Fail || (op.Outcome == Info && op.Op == Get) {
			continue // certainly no effect, or no effect and nothing learned
		}
		ret := op.Return
		if op.Outcome == Info {
			ret = end + 1
		}
		pops = append(pops, porcupine.Operation{ClientId: op.Client, Input: op, Output: op, Call: op.Call, Return: ret})
	}
	if deadline, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(deadline))
	}
	if timeout <= 0 {
		return VerdictUnknown, nil
	}
	switch porcupine.CheckOperationsTimeout(referenceModel, pops, timeout) {
	case porcupine.Ok:
		return VerdictOK, nil
	case porcupine.Illegal:
		return VerdictIllegal, nil
	default:
		return VerdictUnknown, nil
	}
}

// refState is one key's value: absent is not the same as empty.
type refState struct {
	present bool
	value   string
}

var referenceModel = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		index := map[string]int{}
		var parts [][]porcupine.Operation
		for _, op := range h {
			k := op.Input.(Operation).Key
			i, ok := index[k]
			if !ok {
				i = len(parts)
				index[k] = i
				parts = append(parts, nil)
			}
			parts[i] = append(parts[i], op)
		}
		return parts
	},
	Init: func() any { return refState{} },
	Step: func(state, input, _ any) (bool, any) {
		s, op := state.(refState), input.(Operation)
		unknown := op.Outcome == Info
		switch op.Op {
		case Get:
			return op.Found == s.present && (!s.present || op.Output == s.value), s
		case Put:
			return true, refState{present: true, value: op.Value}
		case Append:
			return true, refState{present: true, value: s.value + op.Value}
		case CAS:
			matches := s.present && s.value == op.Expect
			if !unknown && op.Swapped != matches {
				return false, s
			}
			if matches {
				return true, refState{present: true, value: op.Value}
			}
			return true, s
		}
		panic(fmt.Sprintf("histories: reference model: unknown op %q", op.Op))
	},
	Hash: func(state any) uint64 {
		s := state.(refState)
		h := fnv.New64a()
		if s.present {
			h.Write([]byte{1})
		}
		h.Write([]byte(s.value))
		return h.Sum64()
	},
	DescribeOperation: func(input, _ any) string {
		op := input.(Operation)
		return fmt.Sprintf("%s %s", op.Op, op.Key)
	},
}
