package histories

import (
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestModelStep(t *testing.T) {
	absent := kvState{}
	empty := kvState{present: true}
	a := kvState{present: true, value: "a"}
	for _, tc := range []struct {
		name  string
		st    kvState
		in    *kvInput
		out   kvOutput
		legal bool
		next  kvState
	}{
		{"get absent", absent, newInput(kvInput{op: opGet}), kvOutput{}, true, absent},
		{"get absent as empty", absent, newInput(kvInput{op: opGet}), kvOutput{found: true}, false, absent},
		{"get empty", empty, newInput(kvInput{op: opGet}), kvOutput{found: true}, true, empty},
		{"get empty as absent", empty, newInput(kvInput{op: opGet}), kvOutput{}, false, empty},
		{"get value", a, newInput(kvInput{op: opGet}), kvOutput{found: true, value: "a"}, true, a},
		{"get wrong value", a, newInput(kvInput{op: opGet}), kvOutput{found: true, value: "b"}, false, a},
		{"put", absent, newInput(kvInput{op: opPut, value: "b"}), kvOutput{}, true, kvState{true, "b"}},
		{"put empty", a, newInput(kvInput{op: opPut}), kvOutput{}, true, empty},
		{"append to absent", absent, newInput(kvInput{op: opAppend, value: "x"}), kvOutput{}, true, kvState{true, "x"}},
		{"append", a, newInput(kvInput{op: opAppend, value: "x"}), kvOutput{}, true, kvState{true, "ax"}},
		{"cas swaps", a, newInput(kvInput{op: opCAS, expect: "a", value: "b"}), kvOutput{swapped: true}, true, kvState{true, "b"}},
		{"cas must swap", a, newInput(kvInput{op: opCAS, expect: "a", value: "b"}), kvOutput{}, false, kvState{true, "b"}},
		{"cas no match", a, newInput(kvInput{op: opCAS, expect: "z", value: "b"}), kvOutput{}, true, a},
		{"cas cannot swap", a, newInput(kvInput{op: opCAS, expect: "z", value: "b"}), kvOutput{swapped: true}, false, a},
		{"cas on absent never matches", absent, newInput(kvInput{op: opCAS, expect: "", value: "b"}), kvOutput{}, true, absent},
		{"cas on absent cannot swap", absent, newInput(kvInput{op: opCAS, expect: "", value: "b"}), kvOutput{swapped: true}, false, absent},
		{"cas on empty matches", empty, newInput(kvInput{op: opCAS, expect: "", value: "b"}), kvOutput{swapped: true}, true, kvState{true, "b"}},
		{"unknown cas applies when it matches", a, newInput(kvInput{op: opCAS, expect: "a", value: "b"}), kvOutput{unknown: true}, true, kvState{true, "b"}},
		{"unknown cas no-op otherwise", a, newInput(kvInput{op: opCAS, expect: "q", value: "b"}), kvOutput{unknown: true}, true, a},
		{"unknown put applies", a, newInput(kvInput{op: opPut, value: "b"}), kvOutput{unknown: true}, true, kvState{true, "b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			legal, next := kvStep(tc.st, tc.in, tc.out)
			require.Equal(t, tc.legal, legal)
			if legal || tc.in.op != opGet {
				require.Equal(t, tc.next, next)
			}
		})
	}
}

func TestModelHashEqual(t *testing.T) {
	states := []kvState{{}, {present: true}, {present: true, value: "a"}, {present: true, value: "b"}, {present: true, value: "ab"}}
	for i, x := range states {
		for j, y := range states {
			require.Equal(t, i == j, kvEqual(x, y))
			if i != j {
				require.NotEqual(t, kvHash(x), kvHash(y), "%v %v", x, y)
			}
		}
		require.Equal(t, kvHash(x), kvHash(kvState{present: x.present, value: strings.Clone(x.value)}))
	}
}

func TestModelDescriptions(t *testing.T) {
	for _, tc := range []struct {
		in   *kvInput
		out  kvOutput
		want string
	}{
		{newInput(kvInput{op: opPut, value: "x"}), kvOutput{}, `put("x")`},
		{newInput(kvInput{op: opPut, value: "x"}), kvOutput{unknown: true}, `put("x") -> ?`},
		{newInput(kvInput{op: opAppend, value: "x"}), kvOutput{}, `append("x")`},
		{newInput(kvInput{op: opGet}), kvOutput{found: true, value: "v"}, `get -> "v"`},
		{newInput(kvInput{op: opGet}), kvOutput{found: true}, `get -> ""`},
		{newInput(kvInput{op: opGet}), kvOutput{}, `get -> absent`},
		{newInput(kvInput{op: opCAS, expect: "a", value: "b"}), kvOutput{swapped: true}, `cas("a"->"b") -> swapped`},
		{newInput(kvInput{op: opCAS, expect: "a", value: "b"}), kvOutput{}, `cas("a"->"b") -> not swapped`},
		{newInput(kvInput{op: opCAS, expect: "a", value: "b"}), kvOutput{unknown: true}, `cas("a"->"b") -> ?`},
	} {
		require.Equal(t, tc.want, describeOperation(tc.in, tc.out))
	}
	require.Equal(t, "absent", describeState(kvState{}))
	require.Equal(t, "&#34;&lt;b&gt;&#34;", describeState(kvState{present: true, value: "<b>"}))
	long := describeState(kvState{present: true, value: strings.Repeat("x", 1000)})
	require.Less(t, len(long), 120)
	require.Contains(t, long, "(1000 bytes)")
	md := describeMetadata(&opMeta{client: 3, outcome: Info, call: 7, ret: -1, node: "n<1>", err: "a&b"})
	require.Equal(t, "client 3, outcome info<br>recorded call 7<br>node n&lt;1&gt;<br>error: a&amp;b", md)
	md = describeMetadata(&opMeta{client: 3, outcome: OK, call: 7, ret: 9, note: "x"})
	require.Equal(t, "client 3, outcome ok<br>recorded call 7, return 9<br>x", md)
}

func TestModelStopRefusesSteps(t *testing.T) {
	var stop atomic.Bool
	m := newModel(kvState{}, &stop)
	legal, _ := m.StepContext(t.Context(), kvState{}, newInput(kvInput{op: opPut, value: "a"}), kvOutput{})
	require.True(t, legal)
	stop.Store(true)
	legal, _ = m.StepContext(t.Context(), kvState{}, newInput(kvInput{op: opPut, value: "a"}), kvOutput{})
	require.False(t, legal)
}
