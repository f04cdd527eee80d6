package raftkv

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// A node added after the leader compacted its log is brought up by a
// snapshot, and raft ignores a snapshot whose ConfState lacks the receiver:
// the leader must send one taken after the conf change that added it.
func TestCoreJoinerAfterCompaction(t *testing.T) {
	tn := newTestNet(t, 3, CoreConfig{SnapshotEvery: 10, SnapshotKeep: 2})
	l := tn.leader()
	// 21 writes: the last snapshot (every 10 applied entries) lands a few
	// entries before the conf change, as it will in a real run.
	tn.writes(l, 5, 1, 21)
	first, _ := tn.cores[l].ms.FirstIndex()
	require.Greater(t, first, uint64(10), "the leader compacted its log")
	require.Less(t, tn.cores[l].Applied()-tn.cores[l].snapIndex+3, uint64(10), "no periodic snapshot falls after the conf change")

	tn.members = append(tn.members, Member{ID: 4, Addr: "node4"})
	tn.dirs[4] = t.TempDir()
	tn.start(4, nil)
	require.NoError(t, tn.cores[l].AddNode(79, Member{ID: 4, Addr: "node4"}))
	tn.tick(3)
	require.Contains(t, tn.takeReplies(l), Reply{Conf: 79})
	require.NoError(t, tn.write(l, put(6, 1, "j", "v")).Err)
	tn.tick(3)
	c := tn.cores[4]
	require.Equal(t, 1, c.installed, "the joiner was brought up by a snapshot")
	require.Equal(t, "v", c.Get("j").GetValue())
	require.Equal(t, tn.cores[l].Get("k"), c.Get("k"))

	// Same applied index, same data, same digest, on every node.
	for _, m := range tn.members {
		st := tn.cores[m.ID].Status()
		require.Equal(t, tn.cores[l].Status().Applied, st.Applied, "node %d", m.ID)
		require.Equal(t, tn.cores[l].Status().Digest, st.Digest, "node %d", m.ID)
	}
	before := tn.cores[l].Status().Digest
	require.NoError(t, tn.write(l, put(6, 2, "j", "w")).Err)
	require.NotEqual(t, before, tn.cores[l].Status().Digest, "the digest covers the data")
}
