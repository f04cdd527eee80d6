package nemesis

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// clockTarget is a fakeTarget whose nodes' clocks can be stepped.
type clockTarget struct{ *fakeTarget }

func (c clockTarget) StepClock(_ context.Context, nodes []int, d time.Duration) error {
	for _, n := range nodes {
		if err := c.call("step "+signed(d), n); err != nil {
			return err
		}
	}
	return nil
}

// A clock fault steps the resolved node's clock and its heal steps it back
// by the same amount.
func TestInjectClockStepsAndHealStepsBack(t *testing.T) {
	ctx := context.Background()
	tg := clockTarget{newFakeTarget(1, 2, 3)}
	f := Fault{Kind: KindClock, Role: "node:2", Step: -8 * time.Second}
	require.Equal(t, "clock node:2 -8s", f.Describe())
	inj, err := Inject(ctx, tg, f)
	require.NoError(t, err)
	require.Equal(t, []int{2}, inj.Targets)
	require.NoError(t, Heal(ctx, tg, inj))
	require.Equal(t, []string{"step -8s 2", "step +8s 2"}, tg.Calls())
}

// A cluster whose clocks the harness cannot step skips clock faults,
// touching nothing; a step of zero or past the bound is malformed.
func TestClockUnsupportedAndMalformed(t *testing.T) {
	tg := newFakeTarget(1, 2, 3)
	_, err := Inject(context.Background(), tg, Fault{Kind: KindClock, Step: time.Second})
	require.ErrorIs(t, err, ErrUnsupported)
	require.Empty(t, tg.Calls())
	require.Error(t, Fault{Kind: KindClock}.Validate())
	require.Error(t, Fault{Kind: KindClock, Step: -MaxClockStep - 1}.Validate())
	require.NoError(t, Fault{Kind: KindClock, Step: -MaxClockStep}.Validate())
}

// Generated clock faults jump both ways, by 250 ms to 32 s; "all" never
// includes them (a user asks for clock faults by name).
func TestGenerateClockSteps(t *testing.T) {
	steps, err := Generate(3, ScheduleOptions{Kinds: []string{KindClock}, Interval: time.Second,
		Total: 60 * time.Second, Roles: []string{RoleLeader}})
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(steps), 20)
	back, forward := 0, 0
	for _, s := range steps {
		require.NoError(t, s.Fault.Validate())
		a := s.Fault.Step.Abs()
		require.True(t, a >= 250*time.Millisecond && a <= 32*time.Second, "step %v", s.Fault.Step)
		require.Zero(t, a%(250*time.Millisecond))
		if s.Fault.Step < 0 {
			back++
		} else {
			forward++
		}
	}
	require.Positive(t, back)
	require.Positive(t, forward)
	all, err := expandKind("all")
	require.NoError(t, err)
	require.NotContains(t, all, KindClock)
}
