package chain

import (
	"testing"

	"github.com/stretchr/testify/require"

	pb "github.com/chainraft/chainraft/chain/chainpb"
)

// newCraqSim is one chain of three nodes that answer reads at every member.
func newCraqSim(t *testing.T) *sim {
	return newSimOf(t, Placement{Chains: 1, Replicas: 3, Nodes: 3, ReadAny: true})
}

// readAny sends a CRAQ read to node id and returns its token; the reply,
// if the node answers at once, is in s.replies after s.handle.
func (s *sim) readAny(id uint64, chain int, key string) uint64 {
	tok := s.nextToken()
	s.cores[id].ReadAny(tok, uint32(chain), s.cfgs[chain].Epoch, key)
	return tok
}

// deliverOnly hands over the in-flight messages keep accepts and leaves
// the others in flight.
func (s *sim) deliverOnly(keep func(m *pb.Message) bool) {
	var later []*pb.Message
	msgs := s.inflight
	s.inflight = nil
	for _, m := range msgs {
		if !keep(m) {
			later = append(later, m)
			continue
		}
		if c, ok := s.cores[m.To]; ok {
			require.NoError(s.t, c.Step(m))
		}
	}
	s.inflight = append(later, s.inflight...)
}

func ofType(ts ...pb.MessageType) func(m *pb.Message) bool {
	return func(m *pb.Message) bool {
		for _, t := range ts {
			if m.Type == t {
				return true
			}
		}
		return false
	}
}

func (s *sim) requireRead(tok uint64, value string) {
	s.t.Helper()
	r, ok := s.replies[tok]
	require.True(s.t, ok, "read %d not answered", tok)
	require.Equal(s.t, pb.Status_STATUS_OK, r.Status, r.Err)
	require.True(s.t, r.Found)
	require.Equal(s.t, value, r.Value)
}

func (s *sim) requirePending(tok uint64) {
	s.t.Helper()
	_, ok := s.replies[tok]
	require.False(s.t, ok, "read %d answered before the tail's version came", tok)
}

func putOf(client, seq uint64, key, value string) *pb.Update {
	return &pb.Update{Client: client, ClientSeq: seq, Op: pb.Op_OP_PUT, Key: key, Value: value}
}

// dirtySeqs lists the dirty versions of key at node id.
func (s *sim) dirtySeqs(id uint64, chain int, key string) []uint64 {
	v := s.cores[id].chains[chain].dirty[key]
	if v == nil {
		return nil
	}
	var out []uint64
	for _, d := range v.dirty {
		out = append(out, d.seq)
	}
	return out
}

// TestCraqCleanAndDirtyVersions walks one chain through CRAQ's bookkeeping:
// versions are dirty from the write until the tail's ack comes back up,
// a clean key is answered by any member at once, and a dirty one waits for
// the tail's committed sequence and is answered with the version at it.
func TestCraqCleanAndDirtyVersions(t *testing.T) {
	s := newCraqSim(t)
	head, middle, tail := s.cfgs[0].Members[0].ID, s.cfgs[0].Members[1].ID, s.cfgs[0].Members[2].ID
	s.write(0, putOf(1, 1, "k", "a"))
	s.stabilize()
	for _, id := range []uint64{head, middle, tail} {
		require.Nil(t, s.dirtySeqs(id, 0, "k"), "node %d: the ack made k clean", id)
		tok := s.readAny(id, 0, "k")
		s.handle()
		s.requireRead(tok, "a")
	}
	require.Empty(t, s.inflight, "clean reads ask nobody")

	// b (seq 2) reaches the middle and the tail; c (seq 3) only the
	// middle; d (seq 4) stays at the head. No ack travels back.
	s.write(0, putOf(1, 2, "k", "b"))
	s.handle()
	s.deliverOnly(ofType(pb.MessageType_MSG_APPEND)) // b to the middle
	s.handle()
	s.deliverOnly(func(m *pb.Message) bool { return m.Type == pb.MessageType_MSG_APPEND && m.To == tail })
	s.write(0, putOf(1, 3, "k", "c"))
	s.handle()
	s.deliverOnly(func(m *pb.Message) bool { return m.Type == pb.MessageType_MSG_APPEND && m.To == middle })
	s.write(0, putOf(1, 4, "k", "d"))
	s.handle()
	s.inflight = nil // lost: d stays at the head, acks never arrive
	require.Equal(t, []uint64{2, 3, 4}, s.dirtySeqs(head, 0, "k"))
	require.Equal(t, []uint64{2, 3}, s.dirtySeqs(middle, 0, "k"))
	require.Nil(t, s.dirtySeqs(tail, 0, "k"), "the tail commits as it applies")

	// The tail answers b at once; the head and the middle hold k dirty
	// and ask the tail, which has committed 2: both answer b.
	tokTail, tokHead, tokMiddle := s.readAny(tail, 0, "k"), s.readAny(head, 0, "k"), s.readAny(middle, 0, "k")
	s.handle()
	s.requireRead(tokTail, "b")
	s.requirePending(tokHead)
	s.requirePending(tokMiddle)
	var queries int
	for _, m := range s.inflight {
		if m.Type == pb.MessageType_MSG_VERSION_QUERY {
			queries++
			require.Equal(t, tail, m.To)
		}
	}
	require.Equal(t, 2, queries, "one version query per asking member")
	// A read arriving after the query left waits for the next one.
	late := s.readAny(head, 0, "k")
	s.deliverOnly(ofType(pb.MessageType_MSG_VERSION_QUERY))
	s.handle()
	for _, m := range s.inflight {
		if m.Type == pb.MessageType_MSG_VERSION {
			require.Equal(t, uint64(2), m.Committed)
			require.False(t, m.Refused)
		}
	}
	s.deliverOnly(ofType(pb.MessageType_MSG_VERSION))
	s.handle()
	s.requireRead(tokHead, "b")
	s.requireRead(tokMiddle, "b")
	s.requirePending(late)
	s.deliverOnly(ofType(pb.MessageType_MSG_VERSION_QUERY, pb.MessageType_MSG_VERSION))
	s.handle()
	s.deliverOnly(ofType(pb.MessageType_MSG_VERSION_QUERY, pb.MessageType_MSG_VERSION))
	s.handle()
	s.requireRead(late, "b")

	// Once everything travels, the acks clean every version: d everywhere.
	s.stabilize()
	for _, id := range []uint64{head, middle, tail} {
		require.Nil(t, s.dirtySeqs(id, 0, "k"), "node %d", id)
		tok := s.readAny(id, 0, "k")
		s.handle()
		s.requireRead(tok, "d")
	}
	require.Empty(t, s.inflight)
}

// TestCraqPartialAckCleansAPrefix: an ack covering some of a key's dirty
// versions makes the newest covered one clean and keeps the rest dirty.
func TestCraqPartialAckCleansAPrefix(t *testing.T) {
	s := newCraqSim(t)
	head := s.head(0)
	cs := s.cores[head].chains[0]
	s.write(0, putOf(1, 1, "k", "a"))
	s.write(0, putOf(1, 2, "k", "b"))
	s.write(0, putOf(1, 3, "k", "c"))
	s.handle()
	s.inflight = nil
	require.Equal(t, []uint64{1, 2, 3}, s.dirtySeqs(head, 0, "k"))
	cs.commit(s.cores[head], 2)
	require.Equal(t, []uint64{3}, s.dirtySeqs(head, 0, "k"))
	require.Equal(t, "b", cs.dirty["k"].clean)
	for q, want := range map[uint64]string{0: "b", 2: "b", 3: "c"} {
		v, found, ok := cs.valueAt("k", q)
		require.True(t, ok && found, "q %d", q)
		require.Equal(t, want, v, "q %d: below committed the clean version answers", q)
	}
	_, _, ok := cs.valueAt("k", 4)
	require.False(t, ok, "a version beyond what the node holds")
	_, found, ok := cs.valueAt("other", 3)
	require.True(t, ok)
	require.False(t, found)
}

// TestCraqStateWithoutVersionsIsNotClean: a member that installed a
// snapshot (or restored one) cannot tell which of its keys are dirty, so
// it asks the tail until committed passes the snapshot, and refuses a
// version inside the snapshot.
func TestCraqStateWithoutVersionsIsNotClean(t *testing.T) {
	c, err := NewCore(CoreConfig{ID: 1, Chains: 1}, &Recovered{Chains: []RecoveredChain{{
		Snapshot: &pb.Snapshot{LastSeq: 5, Data: map[string]string{"k": "s"}},
		Entries:  []*pb.Entry{{Seq: 6, Update: putOf(9, 1, "j", "x")}},
	}}})
	require.NoError(t, err)
	cs := c.chains[0]
	require.False(t, cs.knownClean("k"))
	require.False(t, cs.knownClean("j"))
	_, _, ok := cs.valueAt("k", 4)
	require.False(t, ok, "version 4 lies inside the snapshot")
	v, found, ok := cs.valueAt("k", 5)
	require.True(t, ok && found)
	require.Equal(t, "s", v)
	v, found, ok = cs.valueAt("j", 5)
	require.True(t, ok)
	require.False(t, found, "j was written at 6, above the committed version")
	cs.commit(c, 6)
	v, found, ok = cs.valueAt("k", 4)
	require.True(t, ok && found, "a tail's answer older than what this node knows committed is raised to it")
	require.Equal(t, "s", v)
	require.True(t, cs.knownClean("k"))
	require.True(t, cs.knownClean("j"))
	require.Equal(t, "x", cs.data["j"])
}

// TestCraqRefusals: a member answers nothing it cannot vouch for.
func TestCraqRefusals(t *testing.T) {
	s := newCraqSim(t)
	head, middle, tail := s.cfgs[0].Members[0].ID, s.cfgs[0].Members[1].ID, s.cfgs[0].Members[2].ID
	s.write(0, putOf(1, 1, "k", "a"))
	s.handle()
	s.inflight = nil // k dirty at the head

	// A wrong epoch is refused before anything else.
	tok := s.nextToken()
	s.cores[head].ReadAny(tok, 0, s.cfgs[0].Epoch+1, "k")
	s.handle()
	require.Equal(t, pb.Status_STATUS_WRONG_EPOCH, s.replies[tok].Status)

	// A version answer refused by the tail (here: fenced behind a
	// deposed node) fails the waiting read, definitely.
	tok = s.readAny(head, 0, "k")
	s.handle()
	s.cores[tail].chains[0].cfg.Deposed = []Deposed{{ID: 9, Epoch: s.cfgs[0].Epoch}}
	s.deliverOnly(ofType(pb.MessageType_MSG_VERSION_QUERY))
	s.handle()
	s.deliverOnly(ofType(pb.MessageType_MSG_VERSION))
	s.handle()
	require.Equal(t, pb.Status_STATUS_UNAVAILABLE, s.replies[tok].Status)
	s.cores[tail].chains[0].cfg.Deposed = nil

	// A query nobody answers is asked again, and the read fails after
	// craqReadTicks.
	tok = s.readAny(head, 0, "k")
	s.handle()
	asked := 0
	for i := 0; i < craqReadTicks; i++ {
		for _, m := range s.inflight {
			if m.Type == pb.MessageType_MSG_VERSION_QUERY {
				asked++
			}
		}
		s.inflight = nil
		s.cores[head].Tick()
		s.handle()
	}
	require.Greater(t, asked, 1, "the lost query was sent again")
	require.Equal(t, pb.Status_STATUS_UNAVAILABLE, s.replies[tok].Status)

	// A reconfiguration fails the reads waiting at the old epoch.
	tok = s.readAny(head, 0, "k")
	s.handle()
	s.inflight = nil
	next := s.cfgs[0]
	next.Epoch++
	s.cores[head].SetConfig(next)
	s.handle()
	require.Equal(t, pb.Status_STATUS_UNAVAILABLE, s.replies[tok].Status)

	// Without a session nothing is answered, clean or not.
	s.cores[middle].SetSession(false)
	tok = s.readAny(middle, 0, "k")
	s.handle()
	require.Equal(t, pb.Status_STATUS_UNAVAILABLE, s.replies[tok].Status)
}

// TestCraqDirtyReadBug: the seeded bug answers the head's dirty version.
func TestCraqDirtyReadBug(t *testing.T) {
	s := newCraqSim(t)
	head := s.head(0)
	c, err := NewCore(CoreConfig{ID: head, Chains: 1, Bug: BugCraqDirtyRead, ReadAny: true}, nil)
	require.NoError(t, err)
	c.SetSession(true)
	c.SetConfig(s.cfgs[0])
	s.cores[head] = c
	s.write(0, putOf(1, 1, "k", "a"))
	s.handle()
	s.inflight = nil
	tok := s.readAny(head, 0, "k")
	s.handle()
	s.requireRead(tok, "a") // not committed anywhere but here
}

// TestCraqRemovedLiveMiddleIsDeposed: with reads at every member, a
// middle taken out while its session lives may answer a clean read at its
// old epoch until its watch fires, so the master deposes it as it deposes
// a tail, and the new chain commits nothing until it stepped down. Without
// CRAQ reads the removed middle answered nothing and is not deposed: the
// new chain commits at once.
func TestCraqRemovedLiveMiddleIsDeposed(t *testing.T) {
	s := newCraqSim(t)
	first := s.write(0, putOf(1, 1, "k", "a"))
	s.stabilize()
	require.Equal(t, pb.Status_STATUS_OK, s.replies[first].Status)
	mid := s.cfgs[0].Members[1].ID
	oldEpoch := s.takeOutLive(mid)
	require.Equal(t, []Deposed{{ID: mid, Epoch: oldEpoch + 1}}, s.cfgs[0].Deposed)

	w := s.write(0, putOf(1, 2, "k", "b"))
	s.runTicks(5)
	_, answered := s.replies[w]
	require.False(t, answered, "committed while the removed middle may still answer reads")
	tok := s.nextToken()
	s.cores[mid].ReadAny(tok, 0, oldEpoch, "k")
	s.handle()
	s.requireRead(tok, "a") // legal: b is not acknowledged

	s.releaseDeposed(mid, oldEpoch+1, w)
	tok = s.nextToken()
	s.cores[mid].ReadAny(tok, 0, oldEpoch, "k")
	s.handle()
	require.NotEqual(t, pb.Status_STATUS_OK, s.replies[tok].Status, "deposed, it answers nothing of the old epoch")

	tailOnly := newSim(t, 3, 1, 3)
	tailOnly.takeOutLive(tailOnly.cfgs[0].Members[1].ID)
	require.Empty(t, tailOnly.cfgs[0].Deposed, "tail reads: a removed middle answered nothing")
	w = tailOnly.write(0, putOf(1, 1, "k", "a"))
	tailOnly.runTicks(5)
	require.Equal(t, pb.Status_STATUS_OK, tailOnly.replies[w].Status)
}

// TestReadAnyRefusedWithoutCraqPlacement: a node not started for CRAQ
// reads answers them only as the tail — its master would not depose it,
// so as a removed member it could answer stale.
func TestReadAnyRefusedWithoutCraqPlacement(t *testing.T) {
	s := newSim(t, 3, 1, 3)
	s.write(0, putOf(1, 1, "k", "a"))
	s.stabilize()
	tok := s.readAny(s.head(0), 0, "k")
	s.handle()
	require.Equal(t, pb.Status_STATUS_UNAVAILABLE, s.replies[tok].Status)
	require.Contains(t, s.replies[tok].Err, "--read-mode craq")
	tok = s.readAny(s.tail(0), 0, "k")
	s.handle()
	s.requireRead(tok, "a")
}
