package histories

import (
	"testing"

	"github.com/anishathalye/porcupine"
	"github.com/stretchr/testify/require"
)

func segOps(ops ...Operation) []porcupine.Operation {
	out := make([]porcupine.Operation, len(ops))
	for i, op := range ops {
		ret := op.Return
		if op.Outcome == Info {
			ret = 1 << 40
		}
		out[i] = toPorcupine(op, op.Client, ret, "")
	}
	return out
}

func put(v string, call, ret int64) Operation {
	return Operation{Op: Put, Key: "k", Value: v, Call: call, Return: ret, Outcome: OK}
}

func get(v string, call, ret int64) Operation {
	return Operation{Op: Get, Key: "k", Found: true, Output: v, Call: call, Return: ret, Outcome: OK}
}

func TestSegmentKey(t *testing.T) {
	old := minSegmentOps
	minSegmentOps = 1
	t.Cleanup(func() { minSegmentOps = old })
	st := func(v string) kvState { return kvState{present: true, value: v} }
	for _, tc := range []struct {
		name string
		ops  []porcupine.Operation
		want []segment
	}{
		{"quiescent after a lone last put", segOps(put("a", 0, 10), put("b", 11, 20), get("b", 21, 30)),
			[]segment{{0, 1, kvState{}}, {1, 2, st("a")}, {2, 3, st("b")}}},
		{"touching intervals are concurrent", segOps(put("a", 0, 10), put("b", 10, 20)),
			[]segment{{0, 2, kvState{}}}},
		// The put with the later call began before the other returned.
		{"two concurrent puts: no forced state", segOps(put("a", 0, 10), put("b", 5, 15), get("b", 20, 30)),
			[]segment{{0, 3, kvState{}}}},
		{"reads alone carry the state", segOps(get("", 0, 1), get("", 2, 3)),
			[]segment{{0, 1, kvState{}}, {1, 2, kvState{}}}},
		{"append does not force", segOps(Operation{Op: Append, Key: "k", Value: "x", Call: 0, Return: 5, Outcome: OK}, get("x", 6, 7)),
			[]segment{{0, 2, kvState{}}}},
		{"unknown write open to the end", segOps(Operation{Op: Put, Key: "k", Value: "x", Call: 0, Outcome: Info}, put("y", 6, 7), get("y", 8, 9)),
			[]segment{{0, 3, kvState{}}}},
		{"swapped cas forces, unswapped is not a write", segOps(
			put("a", 0, 5),
			Operation{Op: CAS, Key: "k", Expect: "a", Value: "b", Swapped: true, Call: 6, Return: 9, Outcome: OK},
			Operation{Op: CAS, Key: "k", Expect: "q", Value: "c", Call: 7, Return: 10, Outcome: OK},
			get("b", 11, 12)),
			[]segment{{0, 1, kvState{}}, {1, 3, st("a")}, {3, 4, st("b")}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, segmentKey(tc.ops))
		})
	}
}

func TestPackRows(t *testing.T) {
	ops := genHistory(genConfig{ops: 2000, clients: 16, keys: 1, unknown: 0.02, put: 0.5, seed: 9})
	kh := partition(ops, 1)[0]
	packed := packRows(kh.ops)
	rows := map[int][]porcupine.Operation{}
	for i, op := range packed {
		require.Equal(t, kh.ops[i].Input, op.Input)
		rows[op.ClientId] = append(rows[op.ClientId], op)
	}
	for r, ops := range rows {
		for i := 1; i < len(ops); i++ {
			require.Less(t, ops[i-1].Return, ops[i].Call, "row %d", r)
		}
	}
	clients := map[int]bool{}
	for _, op := range kh.ops {
		clients[op.ClientId] = true
	}
	require.Less(t, len(rows), len(clients)/2, "packing should need far fewer rows than clients")
	t.Logf("%d clients on %d rows", len(clients), len(rows))
}
