package nemesis

import (
	"testing"
	"time"

	"github.com/chainraft/chainraft/histories"
	"github.com/stretchr/testify/require"
)

const msNs = int64(time.Millisecond)

// steadyHistory: one client-op every 10 ms taking 1 ms, gets on even slots
// and puts on odd ones, for slots [from, to).
func steadyHistory(from, to int) []histories.Operation {
	var ops []histories.Operation
	for k := from; k < to; k++ {
		op := histories.Get
		if k%2 == 1 {
			op = histories.Put
		}
		call := int64(k) * 10 * msNs
		ops = append(ops, histories.Operation{Client: k % 4, Op: op, Key: "k", Value: "v", Call: call, Return: call + msNs, Outcome: histories.OK})
	}
	return ops
}

func requireMs(t *testing.T, want float64, got *float64, what string) {
	t.Helper()
	require.NotNil(t, got, what)
	require.InDelta(t, want, *got, 1e-6, what)
}

func TestRecoveriesOutage(t *testing.T) {
	// 100 ok ops/s until 10 s, nothing from 10 s to 12.5 s, then 100/s again
	// until 20 s. A kill is injected at 10 s and healed at 11 s.
	ops := append(steadyHistory(0, 1000), steadyHistory(1250, 2000)...)
	ops = append(ops,
		// Neither a failed read nor an unknown write is a recovery.
		histories.Operation{Client: 9, Op: histories.Get, Key: "k", Call: 10500 * msNs, Return: 10600 * msNs, Outcome: histories.Fail},
		histories.Operation{Client: 8, Op: histories.Put, Key: "k", Value: "x", Call: 10200 * msNs, Outcome: histories.Info},
	)
	sec := func(s float64) int64 { return int64(s * float64(time.Second)) }
	events := []Event{
		{Time: 0, Step: 3, Fault: KindPause, Event: PhaseInject, Role: RoleAny, Targets: []int{1}},
		{Time: sec(10), Step: 1, Fault: KindKill, Event: PhaseInject, Role: RoleLeader, Targets: []int{2}},
		{Time: sec(11), Step: 1, Fault: KindKill, Event: PhaseHeal, Role: RoleLeader, Targets: []int{2}},
		{Time: sec(11.5), Step: 2, Fault: KindMember, Event: PhaseInject, Skipped: true, Error: "unsupported"},
		{Time: sec(19.5), Step: 3, Fault: KindPause, Event: PhaseHeal, Role: RoleAny, Targets: []int{1}},
		{Time: sec(25), Step: 4, Fault: KindKill, Event: PhaseInject, Role: RoleAny, Targets: []int{3}},
	}
	rs := Recoveries(ops, events)
	require.Len(t, rs, 5, "the skipped injection has nothing to recover from")

	// At 0: the first ops answer at once; there is no baseline before the run.
	requireMs(t, 1, rs[0].FirstReadMs, "read after the inject at 0")
	requireMs(t, 11, rs[0].FirstWriteMs, "write after the inject at 0")
	require.Nil(t, rs[0].ThroughputMs)

	// The kill at 10 s: the first get invoked after it is at 12.5 s, answered
	// at 12.501 s; the first put at 12.51 s, answered at 12.511 s. The
	// baseline is 500 ops in 5 s, so 80 in a second is recovered: the 80th
	// return after the outage is at 13.291 s, so the window (12.291, 13.291].
	require.Equal(t, KindKill, rs[1].Fault)
	require.Equal(t, PhaseInject, rs[1].Event)
	require.Equal(t, []int{2}, rs[1].Targets)
	require.Equal(t, RoleLeader, rs[1].Role)
	requireMs(t, 2501, rs[1].FirstReadMs, "read after the kill")
	requireMs(t, 2511, rs[1].FirstWriteMs, "write after the kill")
	requireMs(t, 2291, rs[1].ThroughputMs, "throughput after the kill")

	// Its heal at 11 s is measured against the same pre-fault baseline.
	require.Equal(t, PhaseHeal, rs[2].Event)
	requireMs(t, 1501, rs[2].FirstReadMs, "read after the heal")
	requireMs(t, 1511, rs[2].FirstWriteMs, "write after the heal")
	requireMs(t, 1291, rs[2].ThroughputMs, "throughput after the heal")

	// The heal at 19.5 s: ops answer at once, but the history ends before
	// a full window after it.
	requireMs(t, 1, rs[3].FirstReadMs, "read after the late heal")
	requireMs(t, 11, rs[3].FirstWriteMs, "write after the late heal")
	require.Nil(t, rs[3].ThroughputMs)

	// After the history: nothing ever recovers.
	require.Nil(t, rs[4].FirstReadMs)
	require.Nil(t, rs[4].FirstWriteMs)
	require.Nil(t, rs[4].ThroughputMs)
}

func TestRecoveriesNoDisruption(t *testing.T) {
	ops := steadyHistory(0, 1000)
	rs := Recoveries(ops, []Event{{Time: 6 * int64(time.Second), Step: 1, Fault: KindDelay, Event: PhaseInject}})
	require.Len(t, rs, 1)
	requireMs(t, 0, rs[0].ThroughputMs, "an event that changes nothing recovers at once")
	requireMs(t, 1, rs[0].FirstReadMs, "read")
	requireMs(t, 11, rs[0].FirstWriteMs, "write")
}

func TestRecoveriesSlowdown(t *testing.T) {
	// 100/s until 10 s, then 50/s (below 80%) until 13 s, then 100/s: the
	// first window holding 80 returns ends at the 80th return counted back
	// from the 13 s mark.
	var ops []histories.Operation
	ops = append(ops, steadyHistory(0, 1000)...)
	for k := 1000; k < 1300; k += 2 {
		ops = append(ops, steadyHistory(k, k+1)...)
	}
	ops = append(ops, steadyHistory(1300, 2000)...)
	rs := Recoveries(ops, []Event{{Time: 10 * int64(time.Second), Step: 1, Fault: KindPause, Event: PhaseInject}})
	require.Len(t, rs, 1)
	// Fast returns at 13.001+0.01j; slow ones at 12.001+0.02i up to 12.981.
	// The window ending at 13.001+0.01j starts at 12.001+0.01j and holds j+1
	// fast returns and 49−⌊j/2⌋ slow ones: 50+⌈j/2⌉, first 80 at j = 59,
	// so the window (12.591, 13.591].
	requireMs(t, 2591, rs[0].ThroughputMs, "throughput after the slowdown")
	requireMs(t, 1, rs[0].FirstReadMs, "gets still answer")
	// Only even slots remain during the slowdown: the first put is at 13.01 s.
	requireMs(t, 3011, rs[0].FirstWriteMs, "the first put")
}

func TestSummarizeRecoveries(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	rs := []Recovery{
		{Fault: KindKill, Event: PhaseInject, FirstReadMs: f(10), FirstWriteMs: f(100), ThroughputMs: f(1)},
		{Fault: KindKill, Event: PhaseInject, FirstReadMs: f(30), FirstWriteMs: nil, ThroughputMs: f(3)},
		{Fault: KindKill, Event: PhaseInject, FirstReadMs: f(20), FirstWriteMs: f(300), ThroughputMs: f(2)},
		{Fault: KindKill, Event: PhaseInject, FirstReadMs: f(40), FirstWriteMs: f(200)},
		{Fault: KindKill, Event: PhaseHeal, FirstReadMs: f(5)},
		{Fault: KindPause, Event: PhaseInject},
	}
	s := SummarizeRecoveries(rs)
	require.Len(t, s, 3)
	require.Equal(t, KindKill, s[0].Fault)
	require.Equal(t, PhaseHeal, s[0].Event)
	require.Equal(t, 1, s[0].Count)
	requireMs(t, 5, s[0].FirstRead.Median, "heal read median")

	k := s[1]
	require.Equal(t, PhaseInject, k.Event)
	require.Equal(t, 4, k.Count)
	requireMs(t, 25, k.FirstRead.Median, "even count: mean of the middle two")
	requireMs(t, 40, k.FirstRead.Max, "read max")
	require.Equal(t, 3, k.FirstWrite.N)
	require.Equal(t, 1, k.FirstWrite.Missing)
	requireMs(t, 200, k.FirstWrite.Median, "odd count: the middle one")
	requireMs(t, 300, k.FirstWrite.Max, "write max")
	requireMs(t, 2, k.Throughput.Median, "throughput median")

	p := s[2]
	require.Equal(t, KindPause, p.Fault)
	require.Nil(t, p.FirstRead.Median)
	require.Nil(t, p.FirstRead.Max)
	require.Equal(t, 1, p.FirstRead.Missing)
}

func TestAnnotations(t *testing.T) {
	kill := Fault{Kind: KindKill, Role: RoleLeader}
	part := Fault{Kind: KindPartition, Shape: ShapeHalves}
	events := []Event{
		{Time: 100, Step: 1, Fault: KindKill, Event: PhaseInject, Role: RoleLeader, Targets: []int{2}, Spec: &kill},
		{Time: 150, Step: 2, Fault: KindMember, Event: PhaseInject, Role: RoleAny, Skipped: true, Error: "member: unsupported"},
		{Time: 200, Step: 3, Fault: KindPartition, Event: PhaseInject, Spec: &part, Grudge: &Grudge{Components: [][]int{{1}, {2, 3}}}},
		{Time: 300, Step: 1, Fault: KindKill, Event: PhaseHeal, Role: RoleLeader, Targets: []int{2}},
	}
	as := Annotations(events, 1000)
	require.Len(t, as, 3)

	require.Equal(t, histories.Annotation{
		Tag: AnnotationTag, Start: 100, End: 300, Description: "kill n2 (leader)",
		Details: "step 1, injected at 0.000s; healed at 0.000s", Color: KindColor(KindKill),
	}, as[0])

	require.Equal(t, "skipped: member (any)", as[1].Description)
	require.Equal(t, int64(150), as[1].Start)
	require.Equal(t, as[1].Start, as[1].End, "a skipped step is an instant")
	require.Contains(t, as[1].Details, "member: unsupported")

	require.Equal(t, "partition halves", as[2].Description)
	require.Equal(t, int64(1000), as[2].End, "never healed: open to the end")
	require.Contains(t, as[2].Details, "never healed")
	require.Contains(t, as[2].Details, "[[1] [2 3]]")
	require.NotEqual(t, as[0].Color, as[2].Color)
}

func TestAnalyze(t *testing.T) {
	a := Analyze(steadyHistory(0, 100), nil)
	require.NotNil(t, a.Recovery, "an empty list, not null, in summary.json")
	require.Empty(t, a.ByKind)
	a = Analyze(steadyHistory(0, 100), []Event{{Time: 0, Step: 1, Fault: KindKill, Event: PhaseInject}})
	require.Len(t, a.Recovery, 1)
	require.Len(t, a.ByKind, 1)
	require.Equal(t, 1, a.ByKind[0].Count)
}

func TestRecoveriesDelayedDent(t *testing.T) {
	// 100/s; a fault at 10 s whose effect starts only at 11.5 s (a session
	// that expires, an election timeout that runs out): nothing from 11.5 s
	// to 13 s, then 100/s again; healed at 14 s. The first windows after
	// the injection are full, but the fault did dent throughput: it is back
	// with the window (12.791, 13.791], the first to hold 80 returns after
	// the outage, 2791 ms after the injection.
	ops := append(steadyHistory(0, 1150), steadyHistory(1300, 2000)...)
	sec := func(s float64) int64 { return int64(s * float64(time.Second)) }
	rs := Recoveries(ops, []Event{
		{Time: sec(10), Step: 1, Fault: KindZKPartition, Event: PhaseInject},
		{Time: sec(14), Step: 1, Fault: KindZKPartition, Event: PhaseHeal},
	})
	require.Len(t, rs, 2)
	requireMs(t, 2791, rs[0].ThroughputMs, "throughput after a delayed outage")
	requireMs(t, 0, rs[1].ThroughputMs, "the heal found it whole")
	// A dent in windows that reach past the next event of another step is
	// that event's: the first low window starts at 10.71 s.
	rs = Recoveries(ops, []Event{
		{Time: sec(10), Step: 1, Fault: KindZKPartition, Event: PhaseInject},
		{Time: sec(10.4), Step: 2, Fault: KindKill, Event: PhaseInject},
	})
	requireMs(t, 0, rs[0].ThroughputMs, "no dent before the next fault")
	requireMs(t, 2391, rs[1].ThroughputMs, "the dent is the next fault's")
	// Not back by the next fault: no figure, rather than the next fault's.
	rs = Recoveries(ops, []Event{
		{Time: sec(10), Step: 1, Fault: KindZKPartition, Event: PhaseInject},
		{Time: sec(12.5), Step: 2, Fault: KindKill, Event: PhaseInject},
	})
	require.Nil(t, rs[0].ThroughputMs, "still down when the next fault came")
	// (its baseline, the 5 s before it, holds the outage: 80/s, so 64 in
	// the window (12.631, 13.631])
	requireMs(t, 131, rs[1].ThroughputMs, "back 131 ms after the next fault")
	// Its own heal does not end a fault's claim: back 2791 ms after the
	// injection even though healed at 10.4 s.
	rs = Recoveries(ops, []Event{
		{Time: sec(10), Step: 1, Fault: KindZKPartition, Event: PhaseInject},
		{Time: sec(10.4), Step: 1, Fault: KindZKPartition, Event: PhaseHeal},
	})
	requireMs(t, 2791, rs[0].ThroughputMs, "the fault's own figure")
	requireMs(t, 2391, rs[1].ThroughputMs, "and the heal's")
}
