package harness

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/nemesis"
)

var (
	raftLike = &faultDriver{name: "raftlike", kinds: []string{nemesis.KindKill, nemesis.KindPause, nemesis.KindPartition}, roles: []Role{
		{Name: "leader", Jobs: []string{JobOrderWrites, JobAnswerReads, JobCoordinate}},
		{Name: "follower", Jobs: []string{JobReplicate}},
	}}
	chainLike = &faultDriver{name: "chainlike", kinds: []string{nemesis.KindKill, nemesis.KindPause, nemesis.KindPartition}, roles: []Role{
		{Name: "head", Jobs: []string{JobOrderWrites}, Indexed: true},
		{Name: "middle", Jobs: []string{JobReplicate}, Indexed: true},
		{Name: "tail", Jobs: []string{JobAnswerReads, JobAcknowledge}, Indexed: true},
	}}
)

func TestCriticalScheduleDealsTheSameBlowsToTheMostCriticalRole(t *testing.T) {
	steps, err := CriticalSteps(raftLike, 5*time.Second, 35*time.Second)
	require.NoError(t, err)
	require.Len(t, steps, 3)
	var kinds []string
	for i, st := range steps {
		kinds = append(kinds, st.Fault.Kind)
		require.Equal(t, "leader", st.Fault.Role, "the first role its driver lists")
		require.Equal(t, time.Duration(2*i+1)*5*time.Second, st.At, "an interval's quiet, then a fault every other interval")
		require.Equal(t, 5*time.Second, st.Duration)
		require.LessOrEqual(t, st.At+st.Duration, 30*time.Second, "an interval after the last heal")
	}
	require.Equal(t, []string{nemesis.KindKill, nemesis.KindPause, nemesis.KindPartition}, kinds)
	require.Equal(t, nemesis.ShapeIsolate, steps[2].Fault.Shape, "cut off: the role's node isolated")

	_, err = CriticalSteps(raftLike, 5*time.Second, 30*time.Second)
	require.ErrorIs(t, err, ErrInvalidConfig, "too short for three faults with recovery after each")
	_, err = CriticalSteps(&faultDriver{name: "killonly", kinds: []string{nemesis.KindKill}, roles: raftLike.roles}, time.Second, time.Minute)
	require.ErrorIs(t, err, ErrInvalidConfig)
}

func TestRoleTableMapsEveryRoleBothWays(t *testing.T) {
	rows := RoleTable([]Driver{raftLike, chainLike})
	require.Len(t, rows, 5)
	require.Equal(t, RoleRow{Store: "raftlike", Role: "leader", Jobs: raftLike.roles[0].Jobs, Critical: true, MapsTo: map[string]string{"chainlike": "head"}}, rows[0])
	require.Equal(t, "middle", rows[1].MapsTo["chainlike"])
	require.True(t, rows[2].Critical, "the chain's head is its most critical role")
	require.Equal(t, "leader", rows[2].MapsTo["raftlike"])
	require.Equal(t, "leader", rows[4].MapsTo["raftlike"], "the tail answers reads, as the leader does")
}
