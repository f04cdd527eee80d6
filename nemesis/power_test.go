package nemesis

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// powerTarget is a fakeTarget whose disks can lose unsynced writes.
type powerTarget struct{ *fakeTarget }

func (p powerTarget) LoseUnsynced(_ context.Context, n int) error { return p.call("lose-unsynced", n) }

// A power fault on every node kills them all before any loses its data
// (the power goes everywhere at once), and the heal restarts them.
func TestInjectPowerAllKillsFirstThenDrops(t *testing.T) {
	ctx := context.Background()
	tg := powerTarget{newFakeTarget(1, 2, 3)}
	inj, err := Inject(ctx, tg, Fault{Kind: KindPower, Role: RoleAll})
	require.NoError(t, err)
	require.Equal(t, []int{1, 2, 3}, inj.Targets)
	require.NoError(t, Heal(ctx, tg, inj))
	require.Equal(t, []string{
		"kill 1", "kill 2", "kill 3",
		"lose-unsynced 1", "lose-unsynced 2", "lose-unsynced 3",
		"restart 1", "restart 2", "restart 3",
	}, tg.Calls())
	require.Equal(t, "power all", inj.Fault.Describe())
}

// Without a disk that can lose writes, a power fault is skipped before
// anything is killed: a kill alone would pass for one.
func TestInjectPowerUnsupportedKillsNothing(t *testing.T) {
	tg := newFakeTarget(1, 2, 3)
	_, err := Inject(context.Background(), tg, Fault{Kind: KindPower, Role: RoleAll})
	require.ErrorIs(t, err, ErrUnsupported)
	require.True(t, Skippable(err))
	require.Empty(t, tg.Calls())
}

// Generated power faults alternate between the whole cluster, first, and
// one of the store's roles.
func TestGeneratePowerAlternatesAll(t *testing.T) {
	steps, err := Generate(7, ScheduleOptions{Kinds: []string{KindPower}, Interval: time.Second,
		Total: 20 * time.Second, Roles: []string{RoleLeader, RoleFollower}})
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(steps), 4)
	for i, s := range steps {
		require.Equal(t, KindPower, s.Fault.Kind)
		if i%2 == 0 {
			require.Equal(t, RoleAll, s.Fault.Role, "step %d", i)
		} else {
			require.Contains(t, []string{RoleAny, RoleLeader, RoleFollower}, s.Fault.Role, "step %d", i)
		}
	}
	kinds, err := ParseKinds("all")
	require.NoError(t, err)
	all, err := expandKind(kinds[0])
	require.NoError(t, err)
	require.Contains(t, all, KindPower)
}
