package raftkv

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	"go.etcd.io/raft/v3/raftpb"
)

// probeNet is a three-node testNet whose leader has written enough that a
// follower cut off meanwhile is far behind, with the leader probing it (as
// after the transport reported it unreachable).
func probeNet(t *testing.T) (tn *testNet, lead, f uint64) {
	tn = newTestNet(t, 3, CoreConfig{SnapshotEvery: 1 << 30})
	lead = tn.leader()
	f = 1
	if lead == 1 {
		f = 2
	}
	tn.isolate(f)
	for i := range 2000 {
		tn.write(lead, put(7, uint64(i+1), fmt.Sprintf("k%03d", i%100), "a value long enough to make the window large"))
	}
	tn.heal()
	tn.cores[lead].ReportUnreachable(f)
	return tn, lead, f
}

// readyExcept handles the Ready of every node but skip and returns the
// messages produced, delivering those between the other nodes.
func (tn *testNet) readyExcept(skip uint64) (toSkip []*raftpb.Message) {
	for _, m := range tn.members {
		if m.ID != skip {
			tn.ready(m.ID)
		}
	}
	msgs := tn.inbox
	tn.inbox = nil
	for _, m := range msgs {
		switch {
		case m.GetTo() == skip:
			toSkip = append(toSkip, m)
		case m.GetFrom() != skip:
			_ = tn.cores[m.GetTo()].Step(m)
		}
	}
	return toSkip
}

// A follower resumed after a SIGSTOP answers, in one burst, every heartbeat
// the leader sent it meanwhile — with ReadOnlySafe one per ReadIndex round,
// hundreds a second. etcd raft answers each heartbeat response from a
// probing follower by sending the whole window again (up to MaxSizePerMsg):
// before throttleProbes the leader marshalled and queued one such append per
// held heartbeat (200 here, about 40 MB), which on a real cluster starved
// its loop for seconds. Now only the first leaves, and the follower still
// catches up.
func TestResumedFollowerBurstSendsOneProbe(t *testing.T) {
	tn, lead, f := probeNet(t)
	var held []*raftpb.Message
	for range 200 {
		readIDs++
		require.NoError(t, tn.cores[lead].Read(readIDs, "k001"))
		for range 3 {
			held = append(held, tn.readyExcept(f)...)
		}
	}
	beats := 0
	for _, m := range held {
		if m.GetType() == raftpb.MsgHeartbeat {
			beats++
		}
	}
	require.GreaterOrEqual(t, beats, 200, "each read round sends f a heartbeat")

	// f resumes: it handles everything held, and its answers reach the
	// leader in one burst.
	for _, m := range held {
		require.NoError(t, tn.cores[f].Step(m))
	}
	tn.ready(f)
	answers := tn.inbox
	tn.inbox = nil
	for _, m := range answers {
		_ = tn.cores[m.GetTo()].Step(m)
	}
	tn.ready(lead)
	apps := 0
	for _, m := range tn.inbox {
		if m.GetTo() == f && m.GetType() == raftpb.MsgApp && len(m.GetEntries()) > 0 {
			apps++
		}
	}
	require.Equal(t, 1, apps, "appends to the resumed follower after %d heartbeat answers", beats)

	tn.stabilize()
	require.Equal(t, tn.cores[lead].Applied(), tn.cores[f].Applied(), "the follower catches up")
}

// A probe lost on the way is sent again once probeRepeatTicks have passed:
// the throttle delays a retransmission, it never suppresses it for good.
func TestLostProbeIsSentAgain(t *testing.T) {
	tn, lead, f := probeNet(t)
	appsTo := func(msgs []*raftpb.Message) int {
		n := 0
		for _, m := range msgs {
			if m.GetType() == raftpb.MsgApp && len(m.GetEntries()) > 0 {
				n++
			}
		}
		return n
	}
	// A heartbeat reaches f; its answer makes the leader probe; the probe is
	// lost.
	tn.cores[lead].Tick()
	held := tn.readyExcept(f)
	require.NotEmpty(t, held)
	for _, m := range held {
		require.NoError(t, tn.cores[f].Step(m))
	}
	tn.ready(f)
	answers := tn.inbox
	tn.inbox = nil
	for _, m := range answers {
		_ = tn.cores[m.GetTo()].Step(m)
	}
	require.Equal(t, 1, appsTo(tn.readyExcept(f)), "the leader probes f")

	// The same answer again, within the window: the repeat is held back.
	for _, m := range answers {
		_ = tn.cores[m.GetTo()].Step(m)
	}
	require.Zero(t, appsTo(tn.readyExcept(f)), "a repeat within %d ticks", probeRepeatTicks)
	require.Less(t, tn.cores[f].Applied(), tn.cores[lead].Applied())

	// Past the window the next heartbeat answer brings the probe again.
	for range probeRepeatTicks {
		tn.tick(1)
	}
	require.Equal(t, tn.cores[lead].Applied(), tn.cores[f].Applied(), "the follower catches up after the lost probe")
}
