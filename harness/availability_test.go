package harness

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/histories"
	"github.com/chainraft/chainraft/nemesis"
)

const sec = int64(time.Second)

// steady makes a history of one read and one write every ms from 0 to end
// (each taking 0.5 ms), except where down says the read or write fails:
// then it is recorded as info (a timeout), which counts for nothing.
func steady(end int64, down func(t int64, write bool) bool) []histories.Operation {
	var ops []histories.Operation
	for t := int64(0); t < end; t += int64(time.Millisecond) {
		for _, write := range []bool{false, true} {
			o := histories.Operation{Op: histories.Get, Key: "k", Call: t, Return: t + int64(500*time.Microsecond), Outcome: histories.OK}
			if write {
				o.Op, o.Value = histories.Put, "v"
			}
			if down != nil && down(t, write) {
				o.Outcome, o.Return = histories.Info, 0
			}
			ops = append(ops, o)
		}
	}
	return ops
}

func fault(step int, kind string, inject, heal int64) []nemesis.Event {
	return []nemesis.Event{
		{Time: inject, Step: step, Fault: kind, Event: nemesis.PhaseInject, Role: "leader", Targets: []int{1}},
		{Time: heal, Step: step, Fault: kind, Event: nemesis.PhaseHeal, Role: "leader", Targets: []int{1}},
	}
}

func TestAvailabilitySeparatesSpeedFromOutage(t *testing.T) {
	// 2000 ok ops/s, nothing at all for 2 s after a kill at 10 s.
	ops := steady(30*sec, func(t int64, _ bool) bool { return t >= 10*sec && t < 12*sec })
	a := MeasureAvailability(ops, fault(1, "kill", 10*sec, 15*sec), 30*time.Second)
	require.NotNil(t, a.HealthyThroughput)
	require.InDelta(t, 2000, *a.HealthyThroughput, 20, "the healthy rate is the rate outside the fault")
	require.InDelta(t, 1000, *a.HealthyReadThroughput, 10)
	require.InDelta(t, 2.0, a.UnavailableS, 0.11, "the outage, to a bin")
	require.InDelta(t, 25.0, a.HealthyS, 0.11, "30 s less the fault's 5 s (no recovery after the heal)")
	require.Len(t, a.Faults, 1)
	f := a.Faults[0]
	require.InDelta(t, 2.0, f.UnavailableS, 0.11)
	require.InDelta(t, 2.0, *f.ReadOutageS, 0.11)
	require.InDelta(t, 2.0, *f.WriteOutageS, 0.11)
	require.NotNil(t, f.FirstWriteMS)
	require.InDelta(t, 2000.5, *f.FirstWriteMS, 1)
	require.InDelta(t, 30.0, f.HorizonS, 1e-9, "the last fault's horizon is the end of the workload")
	require.NotNil(t, f.BackAfterHealMS)
	require.Zero(t, *f.BackAfterHealMS, "no dip after the heal")
}

func TestAvailabilityWritesNotBackBeforeTheHeal(t *testing.T) {
	// A partition: reads go on, writes stop for the whole cut.
	ops := steady(30*sec, func(t int64, write bool) bool { return write && t >= 10*sec && t < 15*sec })
	a := MeasureAvailability(ops, fault(1, "partition", 10*sec, 15*sec), 30*time.Second)
	f := a.Faults[0]
	require.Nil(t, f.FirstWriteMS, "no write succeeded before the heal: said as such, not as 5000 ms")
	require.NotNil(t, f.FirstReadMS)
	require.Less(t, *f.FirstReadMS, 1.0)
	require.NotNil(t, f.WriteAfterHealMS)
	require.Less(t, *f.WriteAfterHealMS, 1.0)
	require.InDelta(t, 5.0, *f.WriteOutageS, 0.11)
	require.Zero(t, *f.ReadOutageS)
	require.Zero(t, a.UnavailableS, "half the rate is not below a tenth of it")
}

func TestAvailabilityChargesADipAfterTheHealToTheHeal(t *testing.T) {
	// A pause does nothing while it lasts (say, reads from a cache), and
	// the store stalls for a second once it ends.
	ops := steady(30*sec, func(t int64, _ bool) bool { return t >= 15*sec && t < 16*sec })
	a := MeasureAvailability(ops, fault(1, "pause", 10*sec, 15*sec), 30*time.Second)
	f := a.Faults[0]
	require.NotNil(t, f.FirstWriteMS)
	require.Less(t, *f.FirstWriteMS, 1.0, "during the fault nothing was lost")
	require.NotNil(t, f.BackAfterHealMS)
	require.InDelta(t, 1000, *f.BackAfterHealMS, float64(a.BinMS)+1, "back a second after the heal")
	require.InDelta(t, 1.0, f.UnavailableS, 0.11)
	require.InDelta(t, 2000, *a.HealthyThroughput, 20, "the recovery is left out of the healthy rate")
}

func TestAvailabilityHorizonEndsAtTheNextFault(t *testing.T) {
	// Down from 5 s to 20 s; a second fault comes at 15 s.
	ops := steady(30*sec, func(t int64, _ bool) bool { return t >= 5*sec && t < 20*sec })
	events := append(fault(1, "kill", 5*sec, 10*sec), fault(2, "pause", 15*sec, 17*sec)...)
	a := MeasureAvailability(ops, events, 30*time.Second)
	require.Len(t, a.Faults, 2)
	f := a.Faults[0]
	require.InDelta(t, 15.0, f.HorizonS, 1e-9)
	require.Nil(t, f.BackAfterHealMS, "not back before the next fault")
	require.Nil(t, f.ReadAfterHealMS)
	require.InDelta(t, 10.0, f.UnavailableS, 0.11, "only up to the horizon")
	require.InDelta(t, 5.0, a.Faults[1].UnavailableS, 0.11)
	require.InDelta(t, 15.0, a.UnavailableS, 0.11)
	require.InDelta(t, 2000, *a.HealthyThroughput, 20)
}

func TestAvailabilitySkipsFaultsThatDidNotHappen(t *testing.T) {
	ops := steady(10*sec, nil)
	events := []nemesis.Event{{Time: 2 * sec, Step: 1, Fault: "kill", Event: nemesis.PhaseInject, Skipped: true}}
	a := MeasureAvailability(ops, events, 10*time.Second)
	require.Empty(t, a.Faults)
	require.InDelta(t, 10.0, a.HealthyS, 1e-9)
	require.Zero(t, a.UnavailableS)
}

func TestAvailabilityIgnoresOperationsAfterTheWorkload(t *testing.T) {
	// The end-of-run checks' final reads come after the workload's end and
	// must not count in its rates.
	ops := steady(10*sec, nil)
	ops = append(ops, histories.Operation{Op: histories.Get, Key: "k", Call: 12 * sec, Return: 12*sec + 1, Outcome: histories.OK})
	a := MeasureAvailability(ops, nil, 10*time.Second)
	require.InDelta(t, 2000, *a.HealthyThroughput, 1)
}

func TestAvailabilityWithoutHealthyTime(t *testing.T) {
	ops := steady(10*sec, nil)
	a := MeasureAvailability(ops, fault(1, "kill", 0, 10*sec), 10*time.Second)
	require.Nil(t, a.HealthyThroughput, "no healthy time: no healthy rate, never a guessed one")
	require.Len(t, a.Faults, 1)
}
