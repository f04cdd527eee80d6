package histories

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// validOrders lists, by brute force, every order of ops that respects real
// time (a before b when a returns before b is called) and the model.
func validOrders(ops []Operation, call, ret []int64) [][]int {
	var out [][]int
	perm := make([]int, len(ops))
	for i := range perm {
		perm[i] = i
	}
	var rec func(k int)
	rec = func(k int) {
		if k == len(perm) {
			for i := range perm {
				for j := i + 1; j < len(perm); j++ {
					if ret[perm[j]] < call[perm[i]] {
						return
					}
				}
			}
			st := interface{}(kvState{})
			for _, i := range perm {
				p := toPorcupine(ops[i], 0, 0, "")
				var ok bool
				if ok, st = kvStep(st, p.Input, p.Output); !ok {
					return
				}
			}
			out = append(out, slices.Clone(perm))
			return
		}
		for i := k; i < len(perm); i++ {
			perm[k], perm[i] = perm[i], perm[k]
			rec(k + 1)
			perm[k], perm[i] = perm[i], perm[k]
		}
	}
	rec(0)
	return out
}

// TestValueClustersKeepEveryLinearization: on tiny put/get histories the
// narrowed intervals admit exactly the same linearizations as the recorded
// ones — not just the same verdict.
func TestValueClustersKeepEveryLinearization(t *testing.T) {
	n := 3000
	if testing.Short() {
		n = 500
	}
	narrowed, linearizable := 0, 0
	for seed := range uint64(n) {
		rng := rand.New(rand.NewPCG(seed, 3))
		ops := genHistory(genConfig{ops: 3 + rng.IntN(5), clients: 2 + rng.IntN(4), keys: 1, put: 0.5, seed: seed})
		if rng.IntN(3) == 0 {
			i, j := rng.IntN(len(ops)), rng.IntN(len(ops))
			if ops[i].Op == Get && ops[j].Op == Put {
				ops[i].Found, ops[i].Output = true, ops[j].Value
			}
		}
		call := make([]int64, len(ops))
		ret := make([]int64, len(ops))
		for i, op := range ops {
			call[i], ret[i] = op.Call, op.Return
		}
		want := validOrders(ops, call, ret)
		tightenClusters(ops, call, ret, nil, make([]string, len(ops)))
		for i := range ops {
			require.LessOrEqual(t, call[i], ret[i])
			require.GreaterOrEqual(t, call[i], ops[i].Call)
			require.LessOrEqual(t, ret[i], ops[i].Return)
			if call[i] != ops[i].Call || ret[i] != ops[i].Return {
				narrowed++
			}
		}
		require.Equal(t, want, validOrders(ops, call, ret), "seed %d: %+v", seed, ops)
		if len(want) > 0 {
			linearizable++
		}
	}
	t.Logf("narrowed %d intervals; %d of %d histories linearizable", narrowed, linearizable, n)
	require.Greater(t, narrowed, n/2)
	require.Greater(t, linearizable, n/2)
}
