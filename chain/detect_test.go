package chain

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	pb "github.com/chainraft/chainraft/chain/chainpb"
)

func liveWith(suspects map[uint64][]uint64, ids ...uint64) map[uint64]LiveNode {
	live := map[uint64]LiveNode{}
	for _, id := range ids {
		live[id] = LiveNode{Addr: fmt.Sprintf("n%d", id), Suspects: suspects[id]}
	}
	return live
}

func cover(live map[uint64]LiveNode, master uint64) []uint64 {
	links, accused := reportedLinks(live)
	return Cover(links, accused, master)
}

// A node cut off from the others is an endpoint of every link reported,
// whoever reports it: it alone is taken out, and the healthy nodes it
// suspects stay, even when only its own reports are in.
func TestCoverTakesOutTheCutOffNodeOnly(t *testing.T) {
	for _, tc := range []struct {
		name     string
		suspects map[uint64][]uint64
		ids      []uint64
		want     []uint64
	}{
		{"everyone reports", map[uint64][]uint64{3: {1, 2}, 1: {3}, 2: {3}}, []uint64{1, 2, 3}, []uint64{3}},
		{"only the cut-off node reports", map[uint64][]uint64{3: {1, 2}}, []uint64{1, 2, 3}, []uint64{3}},
		{"the cut-off node and one neighbour", map[uint64][]uint64{1: {2, 3}, 3: {1}}, []uint64{1, 2, 3}, []uint64{1}},
		{"five nodes, the master cut off", map[uint64][]uint64{1: {2, 3, 4, 5}, 2: {1}, 4: {1}}, []uint64{1, 2, 3, 4, 5}, []uint64{1}},
		{"a report about a node without a session", map[uint64][]uint64{1: {9}}, []uint64{1, 2, 3}, nil},
	} {
		require.Equal(t, tc.want, cover(liveWith(tc.suspects, tc.ids...), 1), tc.name)
	}
}

// One broken link cannot be attributed: one end goes, by the documented
// tie-breaks (more accusations, not the master, the higher id).
func TestCoverSingleLinkTieBreaks(t *testing.T) {
	// one-way cut 1→2: both ends report each other
	require.Equal(t, []uint64{2}, cover(liveWith(map[uint64][]uint64{1: {2}, 2: {1}}, 1, 2, 3), 3))
	require.Equal(t, []uint64{1}, cover(liveWith(map[uint64][]uint64{1: {2}, 2: {1}}, 1, 2, 3), 2), "the master stays")
	require.Equal(t, []uint64{1}, cover(liveWith(map[uint64][]uint64{2: {1}}, 1, 2, 3), 3), "the accused one goes")
	// every link broken: all but one go, and the chains keep one member
	require.Len(t, cover(liveWith(map[uint64][]uint64{1: {2, 3}, 2: {1, 3}, 3: {1, 2}}, 1, 2, 3), 1), 2)
}

// The detector acts on a link only once it stood settleTime, and holds a
// node it took out for holdBase, doubling on a repeat.
func TestDetectorSettlesAndHolds(t *testing.T) {
	d := newDetector()
	t0 := time.Unix(1000, 0)
	early := liveWith(map[uint64][]uint64{1: {3}}, 1, 2, 3)
	dec := d.decide(t0, early, 1)
	require.Equal(t, []Link{{1, 3}}, dec.links)
	require.Empty(t, dec.cover, "a fresh report waits for the others")
	require.Equal(t, t0.Add(settleTime), dec.wake)

	// The cut-off node's own report comes in within the settle time.
	all := liveWith(map[uint64][]uint64{1: {3}, 3: {1, 2}, 2: {3}}, 1, 2, 3)
	dec = d.decide(t0.Add(50*time.Millisecond), all, 1)
	require.Empty(t, dec.cover)
	t1 := t0.Add(settleTime + 50*time.Millisecond)
	dec = d.decide(t1, all, 1)
	require.Equal(t, []uint64{3}, dec.cover)
	require.Equal(t, map[uint64]bool{3: true}, dec.out)

	// Once out, nobody reports it any more; it stays out for the hold.
	quiet := liveWith(nil, 1, 2, 3)
	dec = d.decide(t1.Add(time.Second), quiet, 1)
	require.Empty(t, dec.cover)
	require.True(t, dec.out[3], "held down")
	require.Equal(t, t1.Add(holdBase), dec.wake)
	dec = d.decide(t1.Add(holdBase), quiet, 1)
	require.False(t, dec.out[3], "hold over")

	// Suspected again soon after: the hold doubles.
	t2 := t1.Add(holdBase + time.Second)
	d.decide(t2, all, 1)
	dec = d.decide(t2.Add(settleTime), all, 1)
	require.Equal(t, []uint64{3}, dec.cover)
	dec = d.decide(t2.Add(settleTime+time.Millisecond), quiet, 1)
	require.Equal(t, t2.Add(settleTime).Add(2*holdBase), dec.wake)
	require.Equal(t, holdMax, holdFor(20))
}

// A tail taken out while its session lives is deposed: the new tail waits
// until it reports adopting the epoch that removed it, and a held node is
// the joiner but is not promoted.
func TestReconcileDeposesALiveTail(t *testing.T) {
	live := liveWith(nil, 1, 2, 3)
	for id, n := range live {
		n.Synced, n.Stepped = map[int]uint64{}, map[int]uint64{}
		live[id] = n
	}
	cur := Config{Chain: 0, Epoch: 5, Members: []Member{{1, "n1"}, {2, "n2"}, {3, "n3"}}}
	out := map[uint64]bool{3: true}
	next, changed := ReconcileExcluding(cur, []uint64{1, 2, 3}, live, out)
	require.True(t, changed)
	require.Equal(t, uint64(6), next.Epoch)
	require.Equal(t, []Member{{1, "n1"}, {2, "n2"}}, next.Members)
	require.Equal(t, []Deposed{{ID: 3, Epoch: 6}}, next.Deposed)
	require.Equal(t, &Member{3, "n3"}, next.Joining, "a node out may copy state as the joiner")

	again, changed := ReconcileExcluding(next, []uint64{1, 2, 3}, live, out)
	require.False(t, changed, "nothing until the deposed tail reports: %+v", again)

	live[3].Stepped[0] = 6
	live[3].Synced[0] = 6
	next2, changed := ReconcileExcluding(next, []uint64{1, 2, 3}, live, out)
	require.True(t, changed)
	require.Empty(t, next2.Deposed, "adopted: the new tail is free")
	require.Equal(t, next.Members, next2.Members, "held: synced but not promoted")

	live[3].Synced[0] = 7
	next3, changed := ReconcileExcluding(next2, []uint64{1, 2, 3}, live, nil)
	require.True(t, changed)
	require.Equal(t, []uint64{1, 2, 3}, memberIDs(next3), "the hold over, it is the tail again")

	// A middle taken out deposes nobody; a dead tail neither (its lease
	// ended with its session).
	mid, _ := ReconcileExcluding(cur, []uint64{1, 2, 3}, live, map[uint64]bool{2: true})
	require.Empty(t, mid.Deposed)
	delete(live, 3)
	dead, _ := ReconcileExcluding(cur, []uint64{1, 2, 3}, live, nil)
	require.Empty(t, dead.Deposed)
}

// isolate drops every message between node x and the others, both ways.
func isolate(x uint64) func(m *pb.Message) bool {
	return func(m *pb.Message) bool { return m.From == x || m.To == x }
}

// runTicks runs the network for n ticks without the master.
func (s *sim) runTicks(n int) {
	for i := 0; i < n; i++ {
		for j := 0; j < 5; j++ {
			s.handle()
			s.deliver()
		}
		for _, c := range s.cores {
			c.Tick()
		}
	}
	s.handle()
	s.deliver()
}

// A node cut off from its neighbours (its ZooKeeper link intact) is
// suspected by them and suspects them; the master's cover takes it alone
// out of every chain, and the chains serve without it.
func TestCutOffNodeIsReportedAndSplicedOut(t *testing.T) {
	for _, x := range []uint64{1, 2, 3} {
		s := newSim(t, 3, 3, 3)
		s.drop = isolate(x)
		var toks []uint64
		for ch := 0; ch < 3; ch++ {
			toks = append(toks, s.write(ch, appendOf(10+uint64(ch), 1, "k", "<w>")))
		}
		s.runTicks(defaultDetectTicks + 2)
		// With the rotation, x's successor in every chain is x+1 and its
		// predecessor x-1: x suspects x+1, x-1 suspects x, and x is the
		// one end of both links.
		next, prev := x%3+1, (x+1)%3+1
		require.Equal(t, []uint64{next}, s.live[x].Suspects, "the cut-off node %d suspects its successor", x)
		require.Equal(t, []uint64{x}, s.live[prev].Suspects, "node %d suspects the cut-off node %d", prev, x)
		require.Empty(t, s.live[next].Suspects)
		require.Equal(t, []uint64{x}, cover(s.live, 1))
		s.out = map[uint64]bool{x: true}
		s.stabilize()
		for ch := 0; ch < 3; ch++ {
			require.NotContains(t, memberIDs(s.cfgs[ch]), x, "chain %d", ch)
			require.Empty(t, s.cfgs[ch].Deposed, "chain %d: the deposed tail stepped down", ch)
			s.requireConsistent(ch)
		}
		// Writes the cut-off head held are lost with it (the client
		// retries); the others are acknowledged. New writes go through.
		for ch := 0; ch < 3; ch++ {
			tok := s.write(ch, appendOf(20+uint64(ch), 1, "k", "<v>"))
			s.stabilize()
			require.Equal(t, pb.Status_STATUS_OK, s.replies[tok].Status, "isolated %d, chain %d", x, ch)
			require.Equal(t, pb.Status_STATUS_OK, s.read(ch, "k").Status)
		}
		for _, n := range s.live {
			require.Empty(t, n.Suspects, "suspicions end with the new configuration")
		}
	}
}

// One-way cuts show too: a successor that cannot send is silent, and one
// that cannot receive acknowledges without progress.
func TestOneWayCutsAreSuspected(t *testing.T) {
	// The tail's acks are lost: its predecessor hears nothing.
	s := newSim(t, 3, 1, 3)
	mid, tail := s.cfgs[0].Members[1].ID, s.tail(0)
	s.drop = func(m *pb.Message) bool { return m.From == tail && m.To == mid }
	s.runTicks(defaultDetectTicks + 1)
	require.Equal(t, []uint64{tail}, s.live[mid].Suspects)

	// The middle's appends are lost: the tail acks, behind, once a write
	// is pending.
	s = newSim(t, 3, 1, 3)
	mid, tail = s.cfgs[0].Members[1].ID, s.tail(0)
	s.drop = func(m *pb.Message) bool { return m.From == mid && m.To == tail }
	s.runTicks(defaultDetectTicks + 1)
	require.Empty(t, s.live[mid].Suspects, "nothing pending, nothing stalled")
	s.write(0, appendOf(1, 1, "k", "<a>"))
	s.runTicks(defaultDetectTicks + 1)
	require.Equal(t, []uint64{tail}, s.live[mid].Suspects)

	// Healed, the suspicion is withdrawn.
	s.drop = nil
	s.runTicks(retransmitTicks + 2)
	require.Empty(t, s.live[mid].Suspects)
}

// takeOutLive cuts node id off chain 0's data path while its ZooKeeper
// session lives and its watch lags, and has the master take it out. It
// returns the epoch before.
func (s *sim) takeOutLive(id uint64) uint64 {
	epoch := s.cfgs[0].Epoch
	s.drop = isolate(id)
	s.noConfig[id] = true
	s.out = map[uint64]bool{id: true}
	s.reconcile()
	return epoch
}

// releaseDeposed lets a deposed node, whose watch lagged, see chain 0's
// configurations again: it must report adopting the epoch that removed
// it, and the master then lift the fence (the Deposed entry goes, and the
// write w the new tail held commits).
func (s *sim) releaseDeposed(id, epoch, w uint64) {
	s.t.Helper()
	s.noConfig[id] = false
	s.pushConfigs()
	s.handle()
	require.Equal(s.t, epoch, s.live[id].Stepped[0], "adoption reported")
	s.stabilize()
	require.Empty(s.t, s.cfgs[0].Deposed)
	require.Equal(s.t, pb.Status_STATUS_OK, s.replies[w].Status)
}

// The safety of taking out a live tail: until the deposed tail adopts the
// epoch that removed it, it may still answer reads at its old epoch, so the
// new tail neither commits nor serves; once it reports, the master frees
// the new tail, which commits what it held.
func TestNewTailWaitsForTheDeposedTail(t *testing.T) {
	s := newSim(t, 3, 1, 3)
	first := s.write(0, appendOf(1, 1, "k", "<a>"))
	s.stabilize()
	require.Equal(t, pb.Status_STATUS_OK, s.replies[first].Status)
	old := s.tail(0)
	oldEpoch := s.takeOutLive(old)
	require.Equal(t, []Deposed{{ID: old, Epoch: oldEpoch + 1}}, s.cfgs[0].Deposed)
	newTail := s.tail(0)
	require.NotEqual(t, old, newTail)

	w := s.write(0, appendOf(2, 1, "k", "<b>"))
	s.runTicks(5)
	_, answered := s.replies[w]
	require.False(t, answered, "committed while the old tail may still serve")
	require.Equal(t, pb.Status_STATUS_UNAVAILABLE, s.read(0, "k").Status, "the new tail serves before the old one stepped down")
	tok := s.nextToken()
	s.cores[old].Read(tok, 0, oldEpoch, "k")
	s.handle()
	require.Equal(t, pb.Status_STATUS_OK, s.replies[tok].Status)
	require.Equal(t, "<a>", s.replies[tok].Value, "the deposed tail still answers at its epoch, without b: legal, b is not acknowledged")

	s.releaseDeposed(old, oldEpoch+1, w)
	s.requireAcked(0, "k", []string{"a", "b"})
	tok = s.nextToken()
	s.cores[old].Read(tok, 0, oldEpoch, "k")
	s.handle()
	require.NotEqual(t, pb.Status_STATUS_OK, s.replies[tok].Status, "deposed, it serves nothing of the old epoch")
}

// A tail whose acks its own disk holds back (they wait for its fsync)
// sends heartbeats marked lagging; its predecessor does not suspect it
// while they come, and does once they stop.
func TestLaggingHeartbeatsExcuseASlowTail(t *testing.T) {
	s := newSim(t, 3, 1, 3)
	tail, pred := s.tail(0), s.cfgs[0].Members[1].ID
	s.drop = func(m *pb.Message) bool { return m.Type == pb.MessageType_MSG_ACK && m.From == tail }
	heartbeat := func() {
		require.NoError(t, s.cores[pred].Step(&pb.Message{Type: pb.MessageType_MSG_ACK, Chain: 0, Epoch: s.cfgs[0].Epoch,
			From: tail, To: pred, Lagging: true}))
	}
	for seq := uint64(1); seq <= 3*defaultDetectTicks; seq++ {
		s.write(0, appendOf(1, seq, "k", "v"))
		s.runTicks(1)
		heartbeat()
	}
	require.Empty(t, s.cores[pred].Suspects(), "heartbeats from a lagging tail")
	s.runTicks(defaultDetectTicks + 1)
	require.Equal(t, []uint64{tail}, s.cores[pred].Suspects(), "no acks and no heartbeats")
}
