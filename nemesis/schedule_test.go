package nemesis

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestGenerateSameSeedSameSchedule(t *testing.T) {
	o := ScheduleOptions{Kinds: []string{"all"}, Total: 2 * time.Minute, Roles: []string{RoleLeader, RoleFollower}}
	a, err := Generate(7, o)
	require.NoError(t, err)
	b, err := Generate(7, o)
	require.NoError(t, err)
	require.Equal(t, a, b)
	c, err := Generate(8, o)
	require.NoError(t, err)
	require.NotEqual(t, a, c)

	// Defaults: 5s quiet, 5s faults, 5s between them; all healed by Total.
	require.Equal(t, 5*time.Second, a[0].At)
	require.Equal(t, 5*time.Second, a[0].Duration)
	require.Equal(t, 15*time.Second, a[1].At)
	last := a[len(a)-1]
	require.LessOrEqual(t, last.At+last.Duration, o.Total)
	require.Len(t, a, 12)
	kinds := map[string]bool{}
	for i, s := range a {
		require.Equal(t, i+1, s.ID)
		require.NoError(t, s.Fault.Validate())
		kinds[s.Fault.Kind] = true
		require.NotEqual(t, KindDelay, s.Fault.Kind, "all means the issue's five groups, not delay")
	}
	require.Greater(t, len(kinds), 3)

	// The order of the kinds in the flag does not change the schedule.
	x, err := Generate(3, ScheduleOptions{Kinds: []string{"kill", "pause"}, Total: time.Minute})
	require.NoError(t, err)
	y, err := Generate(3, ScheduleOptions{Kinds: []string{"pause", "kill", "kill"}, Total: time.Minute})
	require.NoError(t, err)
	require.Equal(t, x, y)
}

func TestGenerateOverlapAndKinds(t *testing.T) {
	s, err := Generate(1, ScheduleOptions{Kinds: []string{"zk"}, Interval: time.Second, Quiet: 3 * time.Second, Overlap: true, Total: 10 * time.Second})
	require.NoError(t, err)
	require.Equal(t, 3*time.Second, s[0].At)
	require.Equal(t, 4*time.Second, s[1].At, "overlapping faults start an interval apart")
	require.Equal(t, 2*time.Second, s[0].Duration)
	require.Greater(t, s[0].At+s[0].Duration, s[1].At, "and overlap")
	for _, st := range s {
		require.Contains(t, []string{KindZKPartition, KindZKKill}, st.Fault.Kind)
	}

	d, err := Generate(1, ScheduleOptions{Kinds: []string{"delay"}, Interval: time.Second, Total: 5 * time.Second})
	require.NoError(t, err)
	require.Equal(t, 50*time.Millisecond, d[0].Fault.Delay)

	_, err = Generate(1, ScheduleOptions{Kinds: []string{"meteor"}, Total: time.Minute})
	require.Error(t, err)
	none, err := Generate(1, ScheduleOptions{Kinds: []string{"all"}, Total: time.Second})
	require.NoError(t, err)
	require.Empty(t, none, "no room for a fault")
	none, err = Generate(1, ScheduleOptions{Total: time.Minute})
	require.NoError(t, err)
	require.Empty(t, none, "no kinds, no faults")

	k, err := ParseKinds("kill, partition")
	require.NoError(t, err)
	require.Equal(t, []string{"kill", "partition"}, k)
	k, err = ParseKinds("none")
	require.NoError(t, err)
	require.Empty(t, k)
	_, err = ParseKinds("kill,bogus")
	require.Error(t, err)
}

// testClock is a real monotonic clock started by the test.
func testClock() func() int64 {
	start := time.Now()
	return func() int64 { return int64(time.Since(start)) }
}

func TestRunnerRecordsAndReplays(t *testing.T) {
	tg := newFakeTarget(1, 2, 3)
	tg.roles[RoleLeader] = []int{1}
	tg.roles[RoleFollower] = []int{2, 3}
	tg.unsupported["remove"] = true
	steps, err := Generate(11, ScheduleOptions{
		Kinds: []string{"kill", "pause", "member"}, Interval: MinInterval,
		Quiet: MinInterval, Total: 30 * MinInterval, Roles: []string{RoleLeader, RoleFollower},
	})
	require.NoError(t, err)
	require.Greater(t, len(steps), 5)

	var events, log bytes.Buffer
	r := &Runner{Target: tg, Clock: testClock(), Events: NewEventWriter(&events), Log: &log}
	require.NoError(t, r.Run(context.Background(), steps))
	require.NoError(t, r.HealAll(context.Background()))
	require.Empty(t, r.Active())

	evs, err := ReadEvents(&events)
	require.NoError(t, err)
	injects, heals, skipped := 0, 0, 0
	var prev int64
	for _, e := range evs {
		require.GreaterOrEqual(t, e.Time, prev, "events are in time order")
		prev = e.Time
		switch {
		case e.Event == PhaseInject && e.Skipped:
			skipped++
			require.Equal(t, KindMember, e.Fault)
			require.Contains(t, e.Error, "unsupported")
		case e.Event == PhaseInject:
			injects++
			require.NotEmpty(t, e.Targets)
			require.GreaterOrEqual(t, e.Time, int64(e.At))
		default:
			heals++
		}
	}
	require.Equal(t, injects, heals, "every injected fault healed, none of the skipped")
	require.Equal(t, len(steps), injects+skipped)
	require.Equal(t, injects+skipped+heals, strings.Count(log.String(), "\n"), "one log line per event")

	replayed, err := Replay(evs)
	require.NoError(t, err)
	require.Equal(t, steps, replayed)
}

func TestRunnerHealAllReverseOrderAfterCancel(t *testing.T) {
	tg := newFakeTarget(1, 2, 3)
	steps := []Step{
		{ID: 1, At: 0, Duration: time.Hour, Fault: Fault{Kind: KindKill, Role: "node:1"}},
		{ID: 2, At: time.Millisecond, Duration: time.Hour, Fault: Fault{Kind: KindPause, Role: "node:2"}},
		{ID: 3, At: 2 * time.Millisecond, Duration: time.Hour, Fault: Fault{Kind: KindKill, Role: "node:3"}},
	}
	r := &Runner{Target: tg, Clock: testClock()}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, steps) }()
	for deadline := time.Now().Add(5 * time.Second); len(tg.Calls()) < 3 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	require.Equal(t, []int{1, 2, 3}, r.Active())
	require.NoError(t, r.HealAll(context.Background()))
	require.Equal(t, []string{"kill 1", "pause 2", "kill 3", "restart 3", "resume 2", "restart 1"}, tg.Calls())
}

func TestRunnerHealErrorsAreReported(t *testing.T) {
	tg := newFakeTarget(1, 2)
	r := &Runner{Target: tg, Clock: testClock()}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// A cancelled run injects nothing...
	require.ErrorIs(t, r.Run(ctx, []Step{{ID: 1, At: time.Hour, Duration: time.Hour, Fault: Fault{Kind: KindKill}}}), context.Canceled)
	require.Empty(t, tg.Calls())
	// ...and a heal that fails is returned, and not retried forever.
	r.inject(context.Background(), Step{ID: 2, Fault: Fault{Kind: KindPause, Role: "node:1"}})
	tg.unsupported["resume"] = true
	err := r.HealAll(context.Background())
	require.ErrorIs(t, err, ErrUnsupported)
	require.Empty(t, r.Active())
}

func TestEventsReadWrite(t *testing.T) {
	var b bytes.Buffer
	w := NewEventWriter(&b)
	f := Fault{Kind: KindKill, Role: RoleLeader, Seed: 9}
	require.NoError(t, w.Write(Event{Time: 10, Step: 1, Fault: KindKill, Event: PhaseInject, Role: RoleLeader, Targets: []int{2}, Spec: &f, At: 5, Duration: 7}))
	require.NoError(t, w.Write(Event{Time: 20, Step: 1, Fault: KindKill, Event: PhaseHeal, Role: RoleLeader, Targets: []int{2}}))
	require.Equal(t, 2, strings.Count(b.String(), "\n"))
	require.Contains(t, b.String(), `"event":"inject"`)
	require.Contains(t, b.String(), `"targets":[2]`)

	torn := b.String() + `{"time":30,"st`
	evs, err := ReadEvents(strings.NewReader(torn))
	require.NoError(t, err, "a torn last line is what a killed harness leaves")
	require.Len(t, evs, 2)
	require.Equal(t, "kill n2 (leader)", evs[0].Description())

	_, err = ReadEvents(strings.NewReader(`{"time":1,"st` + "\n" + b.String()))
	require.ErrorIs(t, err, ErrBadEvents)
	_, err = ReadEvents(strings.NewReader(`{"time":1,"event":"boom"}` + "\n"))
	require.ErrorIs(t, err, ErrBadEvents)

	steps, err := Replay(evs)
	require.NoError(t, err)
	require.Equal(t, []Step{{ID: 1, At: 5, Duration: 7, Fault: f}}, steps)
	_, err = Replay([]Event{{Step: 1, Event: PhaseInject}})
	require.ErrorIs(t, err, ErrBadEvents)
}

// TestRunnerPartitionsRealNetwork runs partition faults of every shape on a
// wired five-node network and checks that each is applied while active and
// that nothing stays cut after HealAll.
func TestRunnerPartitionsRealNetwork(t *testing.T) {
	s := newServer(t)
	n := NewNetwork()
	t.Cleanup(func() { _ = n.Close() })
	nodes := map[int]string{}
	for i := 1; i <= 5; i++ {
		nodes[i] = s.addr()
	}
	_, err := n.Wire(Topology{Nodes: nodes})
	require.NoError(t, err)
	tg := newFakeTarget(1, 2, 3, 4, 5)
	tg.net = n
	var steps []Step
	for i, shape := range Shapes {
		steps = append(steps, Step{ID: i + 1, At: time.Duration(i) * 2 * time.Millisecond, Duration: time.Hour,
			Fault: Fault{Kind: KindPartition, Shape: shape, Seed: int64(i)}})
	}
	var events bytes.Buffer
	r := &Runner{Target: tg, Clock: testClock(), Events: NewEventWriter(&events)}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		deadline := time.Now().Add(5 * time.Second)
		for len(r.Active()) < len(steps) && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	require.ErrorIs(t, r.Run(ctx, steps), context.Canceled)
	evs, err := ReadEvents(bytes.NewReader(events.Bytes()))
	require.NoError(t, err)
	require.Len(t, evs, len(Shapes))
	for _, e := range evs {
		require.Empty(t, e.Error)
		require.NotEmpty(t, e.Cuts, "%s applied cuts", e.Spec.Shape)
		for _, c := range e.Cuts {
			require.True(t, n.IsCut(c.From, c.To))
		}
	}
	require.NoError(t, r.HealAll(context.Background()))
	for _, l := range n.Links() {
		require.Equal(t, Direction(0), n.Proxy(l).Blackholed(), "%s still cut", l)
	}
}

func TestRunnerZeroLengthFaultHealsAfterItsInjection(t *testing.T) {
	tg := newFakeTarget(1, 2)
	r := &Runner{Target: tg, Clock: testClock()}
	require.NoError(t, r.Run(context.Background(), []Step{
		{ID: 1, Fault: Fault{Kind: KindKill, Role: "node:1"}},
		{ID: 2, At: time.Millisecond, Duration: time.Millisecond, Fault: Fault{Kind: KindPause, Role: "node:2"}},
		{ID: 3, At: 2 * time.Millisecond, Fault: Fault{Kind: KindKill, Role: "node:2"}},
	}))
	require.Empty(t, r.Active(), "Run healed everything itself")
	require.Equal(t, []string{"kill 1", "restart 1", "pause 2", "resume 2", "kill 2", "restart 2"}, tg.Calls())
}

func TestRunnerRunAndHealAfterTimeLimit(t *testing.T) {
	tg := newFakeTarget(1, 2)
	r := &Runner{Target: tg, Clock: testClock()}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err := r.RunAndHeal(ctx, []Step{{ID: 1, Duration: time.Hour, Fault: Fault{Kind: KindKill, Role: "node:2"}}}, time.Second)
	require.NoError(t, err, "the time limit ending the run is not an error")
	require.Equal(t, []string{"kill 2", "restart 2"}, tg.Calls())
	require.Empty(t, r.Active())
}
