package histories

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/anishathalye/porcupine"
)

// genConfig shapes a history produced by simulating a linearizable store:
// every operation takes effect at a random instant inside its interval.
type genConfig struct {
	ops, clients, keys int
	unknown            float64 // fraction of all operations that are unknown writes
	put, cas, append   float64 // fractions of operations; the rest are gets
	valueDomain        int     // 0: every written value unique; else values from a domain this size
	seed               uint64
}

// genHistory returns a linearizable history. Unknown writes take effect
// with probability 1/2; their client continues under a new id, as the
// recorder does.
func genHistory(cfg genConfig) []Operation {
	rng := rand.New(rand.NewPCG(cfg.seed, 0x5eed))
	free := make([]int64, cfg.clients)
	ids := make([]int, cfg.clients)
	for i := range ids {
		ids[i] = i
	}
	nextID := cfg.clients
	ops := make([]Operation, 0, cfg.ops)
	lin := make([]int64, 0, cfg.ops)
	applied := make([]bool, 0, cfg.ops)
	writes := cfg.put + cfg.cas + cfg.append
	for len(ops) < cfg.ops {
		w := 0
		for i := range free {
			if free[i] < free[w] {
				w = i
			}
		}
		call := free[w] + rng.Int64N(50)
		dur := 10 + rng.Int64N(200)
		op := Operation{Client: ids[w], Key: fmt.Sprintf("k%d", rng.IntN(cfg.keys)), Call: call, Return: call + dur, Outcome: OK}
		r := rng.Float64()
		switch {
		case r < cfg.put:
			op.Op = Put
		case r < cfg.put+cfg.cas:
			op.Op = CAS
		case r < writes:
			op.Op = Append
		default:
			op.Op = Get
		}
		if op.Op != Get {
			if cfg.valueDomain > 0 {
				op.Value = fmt.Sprintf("v%d", rng.IntN(cfg.valueDomain))
			} else {
				op.Value = fmt.Sprintf("c%d-%d", op.Client, len(ops))
			}
		}
		ok := true
		if op.Op != Get && writes > 0 && rng.Float64() < cfg.unknown/writes {
			op.Outcome, op.Return = Info, 0
			ids[w] = nextID
			nextID++
			ok = rng.IntN(2) == 0
		}
		free[w] = call + dur
		ops = append(ops, op)
		lin = append(lin, call+rng.Int64N(dur+1))
		applied = append(applied, ok)
	}
	order := make([]int, len(ops))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(lin[a], lin[b]) })
	state := map[string]kvState{}
	seen := map[string][]string{} // values written per key, for cas expects
	for _, i := range order {
		op := &ops[i]
		st := state[op.Key]
		switch op.Op {
		case Get:
			op.Found, op.Output = st.present, st.value
		case Put:
			if applied[i] {
				state[op.Key] = kvState{present: true, value: op.Value}
			}
		case Append:
			if applied[i] {
				state[op.Key] = kvState{present: true, value: st.value + op.Value}
			}
		case CAS:
			switch prev := seen[op.Key]; {
			case st.present && rng.IntN(2) == 0:
				op.Expect = st.value
			case len(prev) > 0:
				op.Expect = prev[rng.IntN(len(prev))]
			default:
				op.Expect = "none"
			}
			match := st.present && st.value == op.Expect
			if op.Outcome == OK {
				op.Swapped = match
			}
			if match && applied[i] {
				state[op.Key] = kvState{present: true, value: op.Value}
			}
		}
		if op.Op != Get {
			seen[op.Key] = append(seen[op.Key], op.Value)
		}
	}
	return ops
}

// plainCheck is the reference: porcupine's own partitioning over the whole
// history, unknown writes open to the end, no pruning.
func plainCheck(ops []Operation, timeout time.Duration) porcupine.CheckResult {
	var maxTime int64
	for _, op := range ops {
		maxTime = max(maxTime, op.Call, op.Return)
	}
	var pops []porcupine.Operation
	for _, op := range ops {
		if op.Outcome == Fail || (op.Outcome == Info && op.Op == Get) {
			continue
		}
		ret := op.Return
		if op.Outcome == Info {
			ret = maxTime + 1
		}
		pops = append(pops, toPorcupine(op, op.Client, ret, ""))
	}
	m := newModel(kvState{}, nil)
	m.Partition = func(h []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, op := range h {
			k := op.Input.(*kvInput).key
			byKey[k] = append(byKey[k], op)
		}
		out := make([][]porcupine.Operation, 0, len(byKey))
		for _, p := range byKey {
			out = append(out, p)
		}
		return out
	}
	return porcupine.CheckOperationsTimeout(m, pops, timeout)
}
