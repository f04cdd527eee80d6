package raftkv

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/kv"

	pb "github.com/chainraft/chainraft/raftkv/raftkvpb"
)

func TestCoreLeaderCrash(t *testing.T) {
	tn := newTestNet(t, 3, CoreConfig{})
	l := tn.leader()
	r := tn.write(l, put(7, 1, "k", "a"))
	require.NoError(t, r.Err)

	tn.crash(l)
	l2 := tn.leader()
	require.NotEqual(t, l, l2)
	require.Equal(t, "a", tn.read(l2, "k").GetValue(), "a write acknowledged by the old leader survives it")
	require.NoError(t, tn.write(l2, put(7, 2, "k", "b")).Err)

	tn.restart(l)
	tn.tick(3)
	require.Equal(t, "b", tn.cores[l].Get("k").GetValue(), "the restarted node caught up from its log and the leader")
	require.Equal(t, l2, tn.leader(), "PreVote: a restarted node does not depose a healthy leader")
}

func TestCorePartitionedLeader(t *testing.T) {
	tn := newTestNet(t, 3, CoreConfig{})
	l := tn.leader()
	require.NoError(t, tn.write(l, put(1, 1, "k", "before")).Err)

	tn.isolate(l)
	// Proposed at the cut-off leader: it can never commit there.
	require.NoError(t, tn.cores[l].Propose(put(2, 1, "k", "lost")))
	require.NoError(t, tn.cores[l].Read(1000, "k"))
	// CheckQuorum deposes l after an election timeout; the others elect
	// (split votes may take a few randomized timeouts).
	var l2 uint64
	for ticks := 0; l2 == 0 && ticks < 500; ticks++ {
		tn.tick(1)
		for id := range tn.cores {
			if id != l && tn.cores[id].Status().Role == "StateLeader" {
				l2 = id
			}
		}
	}
	require.NotZero(t, l2, "the majority side elected a leader")
	for ticks := 0; tn.cores[l].Status().Role == "StateLeader" && ticks < 2*10; ticks++ {
		tn.tick(1)
	}
	require.NotEqual(t, "StateLeader", tn.cores[l].Status().Role, "CheckQuorum deposed the isolated leader within two election timeouts")

	var sawLost, sawRead bool
	for _, r := range tn.takeReplies(l) {
		if r.Req == (kv.RequestID{Client: 2, Seq: 1}) {
			require.ErrorIs(t, r.Err, ErrUnknown, "a proposal outliving its leader is indeterminate")
			sawLost = true
		}
		if r.Read == 1000 {
			require.Error(t, r.Err, "the deposed leader does not serve the read")
			sawRead = true
		}
	}
	require.True(t, sawLost)
	require.True(t, sawRead)
	var nl *NotLeaderError
	require.True(t, errors.As(tn.cores[l].Propose(put(2, 2, "k", "x")), &nl), "a follower refuses before proposing")

	require.NoError(t, tn.write(l2, put(3, 1, "k", "after")).Err)
	tn.heal()
	tn.tick(3)
	require.Equal(t, "after", tn.cores[l].Get("k").GetValue(), "the old leader's uncommitted entry was overwritten")
	require.Equal(t, "after", tn.read(tn.leader(), "k").GetValue())
}

func TestCoreRestartFromStorage(t *testing.T) {
	tn := newTestNet(t, 3, CoreConfig{SnapshotEvery: 20, SnapshotKeep: 5})
	l := tn.leader()
	for i := uint64(1); i <= 50; i++ {
		require.NoError(t, tn.write(l, &pb.Command{Client: 9, Seq: i, Op: pb.Op_OP_APPEND, Key: "log", Value: "x"}).Err)
	}
	for _, m := range tn.members {
		tn.crash(m.ID)
	}
	for _, m := range tn.members {
		_, err := os.Stat(filepath.Join(tn.dirs[m.ID], snapName))
		require.NoError(t, err, "node %d took a snapshot", m.ID)
		tn.restart(m.ID)
	}
	l = tn.leader()
	v := tn.read(l, "log").GetValue()
	require.Len(t, v, 50, "every acknowledged append survives a full-cluster crash exactly once")
	// The dedup table came back too: a retry of the last request is not applied again.
	require.NoError(t, tn.write(l, &pb.Command{Client: 9, Seq: 50, Op: pb.Op_OP_APPEND, Key: "log", Value: "x"}).Err)
	require.Len(t, tn.read(l, "log").GetValue(), 50)
}

func TestCoreSnapshotToLaggingFollower(t *testing.T) {
	tn := newTestNet(t, 3, CoreConfig{SnapshotEvery: 10, SnapshotKeep: 2})
	l := tn.leader()
	lag := tn.follower(l)
	tn.crash(lag)
	tn.writes(l, 5, 1, 40)
	first, _ := tn.cores[l].ms.FirstIndex()
	require.Greater(t, first, uint64(10), "the leader compacted the entries the follower lacks")
	tn.restart(lag)
	tn.tick(5)
	c := tn.cores[lag]
	require.Equal(t, 1, c.installed, "the lagging follower was brought up by a snapshot")
	require.Equal(t, tn.cores[l].Get("k"), c.Get("k"))
	require.Equal(t, tn.cores[l].Applied(), c.Applied())

	// And the installed snapshot is durable on the follower.
	tn.crash(lag)
	tn.restart(lag)
	require.GreaterOrEqual(t, tn.cores[lag].Applied(), uint64(40))
}

func TestCoreDedupRetriedRequest(t *testing.T) {
	tn := newTestNet(t, 3, CoreConfig{})
	l := tn.leader()
	app := &pb.Command{Client: 4, Seq: 1, Op: pb.Op_OP_APPEND, Key: "k", Value: "x"}
	require.NoError(t, tn.write(l, app).Err)
	// A retry (the client never saw the first reply) returns the first
	// result and does not apply again.
	require.NoError(t, tn.write(l, app).Err)
	require.Equal(t, "x", tn.read(l, "k").GetValue())

	cas := &pb.Command{Client: 4, Seq: 2, Op: pb.Op_OP_CAS, Key: "k", Expect: "x", Value: "y"}
	r := tn.write(l, cas)
	require.True(t, r.Result.GetSwapped())
	r = tn.write(l, cas)
	require.True(t, r.Result.GetSwapped(), "the retry gets the first answer, not a second evaluation")
	require.Equal(t, "y", tn.read(l, "k").GetValue())

	// Two copies proposed before either applies: one effect, both answered.
	app3 := &pb.Command{Client: 4, Seq: 3, Op: pb.Op_OP_APPEND, Key: "k", Value: "z"}
	require.NoError(t, tn.cores[l].Propose(app3))
	require.NoError(t, tn.write(l, app3).Err)
	require.Equal(t, "yz", tn.read(l, "k").GetValue())

	// A request older than the client's last one is stale and never applies.
	r = tn.write(l, &pb.Command{Client: 4, Seq: 1, Op: pb.Op_OP_APPEND, Key: "k", Value: "old"})
	require.ErrorIs(t, r.Err, ErrUnknown)
	require.Equal(t, "yz", tn.read(l, "k").GetValue())
}

func TestCoreReadsShareRounds(t *testing.T) {
	tn := newTestNet(t, 3, CoreConfig{})
	l := tn.leader()
	require.NoError(t, tn.write(l, put(1, 1, "k", "v")).Err)
	c := tn.cores[l]
	for i := uint64(1); i <= 100; i++ {
		require.NoError(t, c.Read(5000+i, "k"))
	}
	require.LessOrEqual(t, c.readSeq, uint64(2), "100 queued reads need at most two ReadIndex rounds")
	tn.stabilize()
	n := 0
	for _, r := range tn.takeReplies(l) {
		if r.Read > 5000 {
			require.NoError(t, r.Err)
			require.Equal(t, "v", r.Result.GetValue())
			n++
		}
	}
	require.Equal(t, 100, n)
	require.LessOrEqual(t, c.readSeq, uint64(3))
}

func TestCoreMembership(t *testing.T) {
	tn := newTestNet(t, 3, CoreConfig{})
	l := tn.leader()
	var victim uint64
	for _, m := range tn.members {
		if m.ID != l {
			victim = m.ID
		}
	}
	require.NoError(t, tn.cores[l].RemoveNode(77, victim))
	tn.stabilize()
	require.Contains(t, tn.takeReplies(l), Reply{Conf: 77})
	require.Len(t, tn.cores[l].Members(), 2)
	require.ErrorIs(t, tn.cores[l].AddNode(78, Member{ID: victim, Addr: "again"}), ErrRejected, "ids are never reused")

	// A new node joins with no bootstrap and catches up from the leader.
	tn.members = append(tn.members, Member{ID: 4, Addr: "node4"})
	tn.dirs[4] = t.TempDir()
	tn.start(4, nil)
	require.NoError(t, tn.cores[l].AddNode(79, Member{ID: 4, Addr: "node4"}))
	tn.tick(3)
	require.Contains(t, tn.takeReplies(l), Reply{Conf: 79})
	require.NoError(t, tn.write(l, put(1, 1, "k", "v")).Err)
	tn.tick(2)
	require.Equal(t, "v", tn.cores[4].Get("k").GetValue())
	require.Contains(t, tn.cores[4].Members(), Member{ID: 4, Addr: "node4"}, "the joiner learned the membership, addresses included")

	// A retried change that already went through succeeds again, without
	// a second conf change; the same id at another address is refused.
	applied := tn.cores[l].Applied()
	require.NoError(t, tn.cores[l].AddNode(80, Member{ID: 4, Addr: "node4"}))
	require.NoError(t, tn.cores[l].RemoveNode(81, victim))
	tn.stabilize()
	require.Subset(t, tn.takeReplies(l), []Reply{{Conf: 80}, {Conf: 81}})
	require.Equal(t, applied, tn.cores[l].Applied(), "nothing was proposed")
	require.ErrorIs(t, tn.cores[l].AddNode(82, Member{ID: 4, Addr: "elsewhere"}), ErrRejected)
}
