package chain

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	pb "github.com/chainraft/chainraft/chain/chainpb"
)

// simDisk is a node's durable state in the simulation: what the Node would
// have fsync'd from the Ready's Persist list.
type simDisk struct {
	snap    *pb.Snapshot
	entries []*pb.Entry
}

// sim is an in-memory network of Cores plus an in-memory coordinator that
// runs the master's Reconcile, standing in for ZooKeeper.
type sim struct {
	t        *testing.T
	p        Placement
	cores    map[uint64]*Core
	disks    map[uint64][]simDisk
	live     map[uint64]LiveNode
	cfgs     []Config
	inflight []*pb.Message
	// drop filters messages on the wire (nil keeps all).
	drop    func(m *pb.Message) bool
	token   uint64
	replies map[uint64]Reply
	// out is the master's data-path decision (Cover, holds) the sim's
	// master reconciles with; noConfig holds back new configurations from
	// nodes, as a ZooKeeper watch that lags.
	out      map[uint64]bool
	noConfig map[uint64]bool
}

func newSim(t *testing.T, nodes, chains, replicas int) *sim {
	return newSimOf(t, Placement{Chains: chains, Replicas: replicas, Nodes: nodes})
}

func newSimOf(t *testing.T, p Placement) *sim {
	chains, nodes := p.Chains, p.Nodes
	s := &sim{t: t, p: p,
		cores: map[uint64]*Core{}, disks: map[uint64][]simDisk{}, live: map[uint64]LiveNode{},
		cfgs: make([]Config, chains), replies: map[uint64]Reply{}, noConfig: map[uint64]bool{}}
	for i := range s.cfgs {
		s.cfgs[i].Chain = i
	}
	for id := uint64(1); id <= uint64(nodes); id++ {
		s.start(id)
	}
	s.reconcile()
	s.stabilize()
	return s
}

func (s *sim) addr(id uint64) string { return fmt.Sprintf("n%d", id) }

// start runs a node from its disk, with a session and a registration.
func (s *sim) start(id uint64) {
	disk := s.disks[id]
	if disk == nil {
		disk = make([]simDisk, s.p.Chains)
		s.disks[id] = disk
	}
	rec := &Recovered{Chains: make([]RecoveredChain, s.p.Chains)}
	for i, d := range disk {
		rec.Chains[i] = RecoveredChain{Snapshot: d.snap, Entries: d.entries}
	}
	c, err := NewCore(CoreConfig{ID: id, Chains: s.p.Chains, ReadAny: s.p.ReadAny}, rec)
	require.NoError(s.t, err)
	c.SetSession(true)
	for _, cfg := range s.cfgs {
		if cfg.Epoch > 0 {
			c.SetConfig(cfg)
		}
	}
	s.cores[id] = c
	s.live[id] = LiveNode{Addr: s.addr(id), Synced: map[int]uint64{}, Stepped: map[int]uint64{}}
}

// crash stops a node: its session ends (the ephemeral znode goes) and
// whatever it had not persisted is lost.
func (s *sim) crash(id uint64) {
	delete(s.cores, id)
	delete(s.live, id)
}

// reconcile is the master: one Reconcile per chain, pushed to every node.
func (s *sim) reconcile() bool {
	changed := false
	for i := range s.cfgs {
		next, ok := reconcile(s.cfgs[i], s.p.Members(i), s.live, s.out, s.p.ReadAny)
		if !ok {
			continue
		}
		changed = true
		s.cfgs[i] = next
	}
	s.pushConfigs()
	return changed
}

// pushConfigs hands the current configurations to every node with a
// session whose watch is not held back.
func (s *sim) pushConfigs() {
	for id, c := range s.cores {
		if !c.session || s.noConfig[id] {
			continue
		}
		for _, cfg := range s.cfgs {
			if cfg.Epoch > 0 {
				c.SetConfig(cfg)
			}
		}
	}
}

// handle runs every Ready: persist to the sim disk, queue messages, record
// replies and synced reports.
func (s *sim) handle() bool {
	any := false
	for id, c := range s.cores {
		if !c.HasReady() {
			continue
		}
		any = true
		rd := c.Ready()
		for _, p := range rd.Persist {
			d := &s.disks[id][p.Chain]
			switch {
			case p.Wipe:
				*d = simDisk{}
			case p.Snapshot != nil:
				*d = simDisk{snap: p.Snapshot}
			default:
				d.entries = append(d.entries, p.Entries...)
			}
		}
		s.inflight = append(s.inflight, rd.Messages...)
		for _, r := range rd.Replies {
			_, dup := s.replies[r.Token]
			require.False(s.t, dup, "token %d answered twice", r.Token)
			s.replies[r.Token] = r
		}
		for _, ce := range rd.Synced {
			s.live[id].Synced[ce.Chain] = ce.Epoch
		}
		for _, ce := range rd.Deposed {
			s.live[id].Stepped[ce.Chain] = max(s.live[id].Stepped[ce.Chain], ce.Epoch)
		}
		if rd.SuspectsChanged {
			n := s.live[id]
			n.Suspects = rd.Suspects
			s.live[id] = n
		}
		c.Advance()
	}
	return any
}

// deliver hands every in-flight message to its receiver (if alive).
func (s *sim) deliver() bool {
	msgs := s.inflight
	s.inflight = nil
	for _, m := range msgs {
		if s.drop != nil && s.drop(m) {
			continue
		}
		if c, ok := s.cores[m.To]; ok {
			require.NoError(s.t, c.Step(m))
		}
	}
	return len(msgs) > 0
}

// stabilize runs the network, ticks and the master until nothing changes.
func (s *sim) stabilize() {
	for round := 0; round < 200; round++ {
		busy := false
		for i := 0; i < 50; i++ {
			h := s.handle()
			d := s.deliver()
			if !h && !d {
				break
			}
			busy = true
		}
		if s.reconcile() {
			busy = true
		}
		for _, c := range s.cores {
			c.Tick()
		}
		s.handle()
		s.deliver()
		if !busy && round > retransmitTicks+2 {
			return
		}
	}
}

func (s *sim) nextToken() uint64 { s.token++; return s.token }

func (s *sim) head(chain int) uint64 { return s.cfgs[chain].Head().ID }
func (s *sim) tail(chain int) uint64 { return s.cfgs[chain].Tail().ID }

// write proposes at the chain's current head and returns the token.
func (s *sim) write(chain int, u *pb.Update) uint64 {
	tok := s.nextToken()
	s.cores[s.head(chain)].Propose(tok, uint32(chain), s.cfgs[chain].Epoch, u)
	return tok
}

func (s *sim) read(chain int, key string) Reply {
	tok := s.nextToken()
	c, ok := s.cores[s.tail(chain)]
	require.True(s.t, ok, "tail %d of chain %d is down", s.tail(chain), chain)
	c.Read(tok, uint32(chain), s.cfgs[chain].Epoch, key)
	s.handle()
	r, ok := s.replies[tok]
	require.True(s.t, ok, "read got no reply")
	return r
}

func appendOf(client, seq uint64, key, value string) *pb.Update {
	return &pb.Update{Client: client, ClientSeq: seq, Op: pb.Op_OP_APPEND, Key: key, Value: value}
}

// requireValue reads at the tail and checks every acknowledged append is
// present exactly once.
func (s *sim) requireAcked(chain int, key string, acked []string) string {
	r := s.read(chain, key)
	require.Equal(s.t, pb.Status_STATUS_OK, r.Status, r.Err)
	for _, v := range acked {
		require.Equal(s.t, 1, strings.Count(r.Value, "<"+v+">"), "acked %s in %q", v, r.Value)
	}
	return r.Value
}

// requireConsistent checks the Update Propagation Invariant: along the chain
// each successor's history is a prefix of its predecessor's.
func (s *sim) requireConsistent(chain int) {
	cfg := s.cfgs[chain]
	var prev uint64
	for i, m := range cfg.Members {
		c := s.cores[m.ID]
		if c == nil {
			continue
		}
		st := c.Status()[chain]
		require.True(s.t, st.Member)
		require.Equal(s.t, i == 0, st.Head)
		require.Equal(s.t, i == len(cfg.Members)-1, st.Tail)
		if i > 0 {
			require.LessOrEqual(s.t, st.LastSeq, prev)
		}
		prev = st.LastSeq
	}
}

func TestPlacementRotates(t *testing.T) {
	p := Placement{Chains: 3, Replicas: 3, Nodes: 3}
	require.Equal(t, []uint64{1, 2, 3}, p.Members(0))
	require.Equal(t, []uint64{2, 3, 1}, p.Members(1))
	require.Equal(t, []uint64{3, 1, 2}, p.Members(2))
	require.Error(t, Placement{Chains: 1, Replicas: 4, Nodes: 3}.Validate())
}

func TestNormalCaseWritesReachEveryNode(t *testing.T) {
	s := newSim(t, 3, 3, 3)
	for ch := 0; ch < 3; ch++ {
		require.Equal(t, uint64(1), s.cfgs[ch].Epoch)
		require.Len(t, s.cfgs[ch].Members, 3)
	}
	var acked []string
	var toks []uint64
	for i := 1; i <= 20; i++ {
		v := fmt.Sprintf("v%d", i)
		toks = append(toks, s.write(0, appendOf(7, uint64(i), "k", "<"+v+">")))
		acked = append(acked, v)
	}
	s.stabilize()
	for _, tok := range toks {
		require.Equal(t, pb.Status_STATUS_OK, s.replies[tok].Status)
	}
	s.requireAcked(0, "k", acked)
	for id := uint64(1); id <= 3; id++ {
		st := s.cores[id].Status()[0]
		require.Equal(t, uint64(20), st.LastSeq)
		require.Equal(t, uint64(20), st.Committed, "node %d", id)
		require.Zero(t, st.SentLen, "acks trimmed node %d's Sent list", id)
	}

	// A retry of an applied request returns the first result without applying again.
	tok := s.write(0, appendOf(7, 20, "k", "<v20>"))
	s.stabilize()
	require.Equal(t, pb.Status_STATUS_OK, s.replies[tok].Status)
	s.requireAcked(0, "k", acked)

	// CAS results are computed once, at the head, and replicated.
	tok = s.write(0, &pb.Update{Client: 8, ClientSeq: 1, Op: pb.Op_OP_CAS, Key: "k", Expect: "nope", Value: "x"})
	s.stabilize()
	require.Equal(t, pb.Status_STATUS_OK, s.replies[tok].Status)
	require.False(t, s.replies[tok].Swapped)
}

func TestReplyWaitsForTheTail(t *testing.T) {
	s := newSim(t, 3, 1, 3)
	// Hold everything addressed to the tail: the write must not be answered.
	s.drop = func(m *pb.Message) bool { return m.To == s.tail(0) }
	tok := s.write(0, appendOf(1, 1, "k", "<a>"))
	for i := 0; i < 10; i++ {
		s.handle()
		s.deliver()
	}
	_, answered := s.replies[tok]
	require.False(t, answered, "a write is answered before the tail applied it")
	s.drop = nil
	s.stabilize()
	require.Equal(t, pb.Status_STATUS_OK, s.replies[tok].Status)
}

func TestHeadCrash(t *testing.T) {
	s := newSim(t, 3, 1, 3)
	var acked []string
	for i := 1; i <= 5; i++ {
		tok := s.write(0, appendOf(1, uint64(i), "k", fmt.Sprintf("<a%d>", i)))
		s.stabilize()
		require.Equal(t, pb.Status_STATUS_OK, s.replies[tok].Status)
		acked = append(acked, fmt.Sprintf("a%d", i))
	}
	// Two writes reach the head; only the first is forwarded before it dies.
	oldHead := s.head(0)
	forwarded := s.write(0, appendOf(2, 1, "k", "<b1>"))
	s.handle()
	s.deliver() // b1 reaches the middle
	s.drop = func(m *pb.Message) bool { return m.From == oldHead }
	lost := s.write(0, appendOf(3, 1, "k", "<c1>"))
	s.handle()
	s.crash(oldHead)
	s.drop = nil
	s.stabilize()
	require.NotEqual(t, oldHead, s.head(0))
	require.Len(t, s.cfgs[0].Members, 2)
	_, ok := s.replies[forwarded]
	require.False(t, ok, "the dead head cannot answer")
	_, ok = s.replies[lost]
	require.False(t, ok)

	// The clients retry at the new head with the same request ids: the
	// forwarded write is deduplicated, the lost one applied now.
	r1 := s.write(0, appendOf(2, 1, "k", "<b1>"))
	r2 := s.write(0, appendOf(3, 1, "k", "<c1>"))
	s.stabilize()
	require.Equal(t, pb.Status_STATUS_OK, s.replies[r1].Status)
	require.Equal(t, pb.Status_STATUS_OK, s.replies[r2].Status)
	acked = append(acked, "b1", "c1")
	s.requireAcked(0, "k", acked)
	s.requireConsistent(0)

	// The old head comes back with disk state holding c1 at a sequence the
	// chain reused: it is wiped and rejoins as the tail from a snapshot,
	// and the master then moves nodes until the preferred order is back.
	s.start(oldHead)
	s.reconcile()
	require.Equal(t, oldHead, s.cfgs[0].Joining.ID)
	s.stabilize()
	require.Equal(t, s.p.Members(0), memberIDs(s.cfgs[0]))
	s.requireAcked(0, "k", acked)
	s.requireConsistent(0)
	require.Equal(t, s.cores[s.head(0)].Data(0), s.cores[oldHead].Data(0))
}

func TestMiddleCrashResendsSentSuffix(t *testing.T) {
	s := newSim(t, 3, 1, 3)
	head, middle := s.head(0), s.cfgs[0].Members[1].ID
	// The middle swallows writes: it receives them but never forwards or acks.
	var toks []uint64
	s.drop = func(m *pb.Message) bool { return m.From == middle }
	for i := 1; i <= 10; i++ {
		toks = append(toks, s.write(0, appendOf(1, uint64(i), "k", fmt.Sprintf("<m%d>", i))))
		s.handle()
		s.deliver()
	}
	require.Equal(t, 10, s.cores[head].Status()[0].SentLen, "head keeps all unacked writes in Sent")
	s.crash(middle)
	s.drop = nil
	s.stabilize()
	require.Equal(t, []Member{{ID: head, Addr: s.addr(head)}, s.cfgs[0].Members[1]}, s.cfgs[0].Members)
	var acked []string
	for i, tok := range toks {
		require.Equal(t, pb.Status_STATUS_OK, s.replies[tok].Status, "write %d", i+1)
		acked = append(acked, fmt.Sprintf("m%d", i+1))
	}
	s.requireAcked(0, "k", acked)
	require.Zero(t, s.cores[head].Status()[0].SentLen)
}

func TestTailCrash(t *testing.T) {
	s := newSim(t, 3, 1, 3)
	tail := s.tail(0)
	s.drop = func(m *pb.Message) bool { return m.From == tail }
	tok := s.write(0, appendOf(1, 1, "k", "<t1>"))
	for i := 0; i < 5; i++ {
		s.handle()
		s.deliver()
	}
	s.crash(tail)
	s.drop = nil
	s.stabilize()
	require.NotEqual(t, tail, s.tail(0))
	require.Equal(t, pb.Status_STATUS_OK, s.replies[tok].Status, "the new tail commits what the old tail had not acked")
	s.requireAcked(0, "k", []string{"t1"})
	s.requireConsistent(0)
}

func TestAddTailDuringWrites(t *testing.T) {
	s := newSim(t, 3, 1, 3)
	tail := s.tail(0)
	var acked []string
	seq := uint64(0)
	writeOK := func() {
		seq++
		v := fmt.Sprintf("w%d", seq)
		tok := s.write(0, appendOf(1, seq, "k", "<"+v+">"))
		s.handle()
		s.deliver()
		s.handle()
		s.deliver()
		s.handle()
		s.deliver()
		if r, ok := s.replies[tok]; ok {
			require.Equal(t, pb.Status_STATUS_OK, r.Status)
		}
		acked = append(acked, v)
	}
	for i := 0; i < 5; i++ {
		writeOK()
	}
	s.crash(tail)
	s.stabilize()
	for i := 0; i < 5; i++ {
		writeOK()
	}
	// The crashed tail restarts: it becomes the joiner behind the current
	// tail, which keeps committing and answering reads while it copies.
	s.start(tail)
	s.reconcile()
	require.Equal(t, tail, s.cfgs[0].Joining.ID)
	joinEpoch := s.cfgs[0].Epoch
	oldTail := s.tail(0)
	for i := 0; i < 5; i++ {
		writeOK()
		s.reconcile()
		if s.cfgs[0].Epoch == joinEpoch {
			require.Equal(t, oldTail, s.tail(0), "while joining the old tail stays tail")
			r := s.read(0, "k")
			require.Equal(t, pb.Status_STATUS_OK, r.Status, "the chain keeps serving reads during the copy")
			st := s.cores[tail].Status()[0]
			require.True(t, st.Joiner)
			require.False(t, st.Tail)
		}
	}
	s.stabilize()
	require.Equal(t, tail, s.tail(0))
	require.Nil(t, s.cfgs[0].Joining)
	s.requireAcked(0, "k", acked)
	s.requireConsistent(0)
	for id := uint64(1); id <= 3; id++ {
		require.Equal(t, s.cores[s.head(0)].Data(0), s.cores[id].Data(0), "node %d", id)
	}
}

func TestStaleEpochRejected(t *testing.T) {
	s := newSim(t, 3, 1, 3)
	head, middle := s.head(0), s.cfgs[0].Members[1].ID
	oldEpoch := s.cfgs[0].Epoch
	// The master splices the head out while the old head still runs (a false
	// suspicion); the old head accepts a write at its old epoch and forwards it.
	oldHeadCore := s.cores[head]
	delete(s.live, head)
	s.reconcile()
	require.Equal(t, middle, s.head(0))
	// The old head has not heard of the new epoch: it still believes it is head.
	tok := s.nextToken()
	oldHeadCore.Propose(tok, 0, oldEpoch, appendOf(9, 1, "k", "<fork>"))
	s.handle()
	s.deliver()
	s.stabilize()
	require.Equal(t, uint64(0), s.cores[middle].Status()[0].LastSeq, "a message from an old epoch never applies")

	// A client with the old configuration is told to refresh.
	tok = s.nextToken()
	s.cores[middle].Propose(tok, 0, oldEpoch, appendOf(9, 1, "k", "<x>"))
	s.handle()
	require.Equal(t, pb.Status_STATUS_WRONG_EPOCH, s.replies[tok].Status)
	require.Equal(t, s.cfgs[0].Epoch, s.replies[tok].Epoch)
}

func TestLostSessionServesNothing(t *testing.T) {
	s := newSim(t, 3, 1, 3)
	tail, head := s.tail(0), s.head(0)
	s.drop = func(m *pb.Message) bool { return m.To == tail }
	pending := s.write(0, appendOf(1, 1, "k", "<p>"))
	s.handle()
	s.deliver()
	s.cores[tail].SetSession(false)
	s.cores[head].SetSession(false)
	s.handle()
	require.Equal(t, pb.Status_STATUS_UNKNOWN, s.replies[pending].Status, "a head without session cannot say whether its write commits")

	tok := s.nextToken()
	s.cores[tail].Read(tok, 0, s.cfgs[0].Epoch, "k")
	s.handle()
	require.Equal(t, pb.Status_STATUS_UNAVAILABLE, s.replies[tok].Status, "a tail without session serves no read")
	tok = s.nextToken()
	s.cores[head].Propose(tok, 0, s.cfgs[0].Epoch, appendOf(1, 2, "k", "<q>"))
	s.handle()
	require.Equal(t, pb.Status_STATUS_UNAVAILABLE, s.replies[tok].Status)

	// With the session back (and the config unchanged) the chain resumes;
	// the client's retry of the pending write is deduplicated.
	s.drop = nil
	s.cores[tail].SetSession(true)
	s.cores[head].SetSession(true)
	s.stabilize()
	retry := s.write(0, appendOf(1, 1, "k", "<p>"))
	s.stabilize()
	require.Equal(t, pb.Status_STATUS_OK, s.replies[retry].Status)
	s.requireAcked(0, "k", []string{"p"})
}

func TestDeposedHeadRejoinsWithoutItsFork(t *testing.T) {
	s := newSim(t, 3, 1, 3)
	head := s.head(0)
	for i := 1; i <= 3; i++ {
		tok := s.write(0, appendOf(1, uint64(i), "k", fmt.Sprintf("<a%d>", i)))
		s.stabilize()
		require.Equal(t, pb.Status_STATUS_OK, s.replies[tok].Status)
	}
	// The head is cut off (paused, partitioned) with a write nobody else got;
	// the master splices it out and the chain reuses the sequence number.
	s.drop = func(m *pb.Message) bool { return m.From == head || m.To == head }
	old := s.cores[head]
	forked := s.write(0, appendOf(2, 1, "k", "<fork>"))
	old.HasReady()
	old.Ready()
	old.Advance()
	delete(s.cores, head)
	delete(s.live, head)
	s.stabilize()
	tok := s.write(0, appendOf(3, 1, "k", "<after>"))
	s.stabilize()
	require.Equal(t, pb.Status_STATUS_OK, s.replies[tok].Status)
	_, answered := s.replies[forked]
	require.False(t, answered)

	// It comes back with its session and sees only the newest config, in
	// which it is already the joiner: its fork must not survive.
	s.cores[head] = old
	s.live[head] = LiveNode{Addr: s.addr(head), Synced: map[int]uint64{}}
	s.reconcile()
	require.Equal(t, head, s.cfgs[0].Joining.ID)
	s.drop = nil
	s.stabilize()
	require.Equal(t, s.p.Members(0), memberIDs(s.cfgs[0]), "back in order, the old head included")
	v := s.requireAcked(0, "k", []string{"a1", "a2", "a3", "after"})
	require.NotContains(t, v, "<fork>")
	s.requireConsistent(0)
}

func TestQuickRestartRejoinsInSameEpochFromDisk(t *testing.T) {
	s := newSim(t, 3, 1, 3)
	var acked []string
	for i := 1; i <= 5; i++ {
		tok := s.write(0, appendOf(1, uint64(i), "k", fmt.Sprintf("<q%d>", i)))
		s.stabilize()
		require.Equal(t, pb.Status_STATUS_OK, s.replies[tok].Status)
		acked = append(acked, fmt.Sprintf("q%d", i))
	}
	epoch := s.cfgs[0].Epoch
	// Each node in turn dies and is back before the master noticed (its
	// znode never went away): it restores from disk and keeps its place.
	for n, id := range []uint64{s.cfgs[0].Members[1].ID, s.tail(0), s.head(0)} {
		pending := s.write(0, appendOf(2, uint64(n+1), "k", fmt.Sprintf("<r%d>", id)))
		s.handle()
		s.deliver()
		delete(s.cores, id) // in-flight messages to it are lost
		s.handle()
		s.deliver()
		s.start(id)
		s.stabilize()
		require.Equal(t, epoch, s.cfgs[0].Epoch, "no reconfiguration")
		if r, ok := s.replies[pending]; ok {
			require.Equal(t, pb.Status_STATUS_OK, r.Status)
		} else {
			// The head restarted: its waiter is gone; the client retries.
			retry := s.write(0, appendOf(2, uint64(n+1), "k", fmt.Sprintf("<r%d>", id)))
			s.stabilize()
			require.Equal(t, pb.Status_STATUS_OK, s.replies[retry].Status)
		}
		acked = append(acked, fmt.Sprintf("r%d", id))
		s.requireAcked(0, "k", acked)
		s.requireConsistent(0)
	}
}

func TestLogCompactsIntoSnapshots(t *testing.T) {
	s := newSim(t, 3, 1, 3)
	for _, c := range s.cores {
		c.cfg.SnapshotEvery = 10
	}
	var acked []string
	for i := 1; i <= 25; i++ {
		tok := s.write(0, appendOf(1, uint64(i), "k", fmt.Sprintf("<c%d>", i)))
		s.stabilize()
		require.Equal(t, pb.Status_STATUS_OK, s.replies[tok].Status)
		acked = append(acked, fmt.Sprintf("c%d", i))
	}
	for id, disk := range s.disks {
		d := disk[0]
		require.NotNil(t, d.snap, "node %d took a snapshot", id)
		require.Equal(t, uint64(20), d.snap.LastSeq)
		require.Len(t, d.entries, 5, "node %d's log holds only what follows the snapshot", id)
	}
	// Every node restarts from snapshot + log, in place.
	for _, id := range []uint64{1, 2, 3} {
		delete(s.cores, id)
		s.start(id)
	}
	s.stabilize()
	s.requireAcked(0, "k", acked)
	s.requireConsistent(0)
}

// A big state is not rewritten every SnapshotEvery small entries: the
// entries since the last snapshot must hold as many bytes as the state
// (snapshotEvery), unless Storage asks for a compaction.
func TestBigStateSnapshotsByBytes(t *testing.T) {
	s := newSim(t, 3, 1, 3)
	for _, c := range s.cores {
		c.cfg.SnapshotEvery = 10
	}
	big := strings.Repeat("x", 64<<10)
	seq := uint64(0)
	put := func(key, value string) {
		seq++
		tok := s.write(0, putOf(1, seq, key, value))
		s.stabilize()
		require.Equal(t, pb.Status_STATUS_OK, s.replies[tok].Status)
	}
	snapAt := func() map[uint64]uint64 {
		out := map[uint64]uint64{}
		for id, disk := range s.disks {
			if d := disk[0]; d.snap != nil {
				out[id] = d.snap.LastSeq
			}
		}
		return out
	}
	// The big value is in the log itself: the first 10 entries hold more
	// bytes than the state, and the chain snapshots at 10 as before.
	put("big", big)
	for i := 0; i < 9; i++ {
		put("k", fmt.Sprint(i))
	}
	require.Equal(t, map[uint64]uint64{1: 10, 2: 10, 3: 10}, snapAt())
	// 40 small entries hold a few kilobytes, far less than the state: no
	// snapshot, where the entry count alone would have written 4.
	for i := 0; i < 40; i++ {
		put("k", fmt.Sprint(i))
	}
	require.Equal(t, map[uint64]uint64{1: 10, 2: 10, 3: 10}, snapAt())
	for _, c := range s.cores {
		require.Equal(t, 64<<10+len("big")+len("k")+len("39"), c.chains[0].stateBytes, "the state's keys and values")
	}
	// Storage's request for a compaction is granted whatever the bytes.
	s.cores[2].Compact(0)
	s.stabilize()
	require.Equal(t, map[uint64]uint64{1: 10, 2: 50, 3: 10}, snapAt())
	// Entries that add up to the state's size trigger it too: here an
	// overwrite of the big value.
	put("big", big)
	require.Equal(t, map[uint64]uint64{1: 51, 2: 50, 3: 51}, snapAt())
	// A restart counts the bytes of the entries it replays.
	delete(s.cores, 2)
	s.start(2)
	s.stabilize()
	cs := s.cores[2].chains[0]
	require.Equal(t, 1, cs.sinceSnap)
	require.Equal(t, entrySize(&pb.Entry{Seq: 51, Update: putOf(1, 51, "big", big)}), cs.sinceSnapBytes)
	require.Equal(t, 64<<10+len("big")+len("k")+len("39"), cs.stateBytes)
}

// Once a chain shrinks to one node, that node alone holds what it applies:
// its read replies say they depend on its pending Persist (Durable), so the
// Node answers them only after the fsync, and a crash cannot unsay a value
// already read. A tail with a predecessor reads without waiting: the
// predecessor keeps, durably, whatever the tail has not acknowledged.
func TestLoneTailReadDependsOnItsPersist(t *testing.T) {
	s := newSim(t, 3, 1, 3)
	s.write(0, appendOf(1, 1, "k", "<a>"))
	s.stabilize()
	r := s.read(0, "k")
	require.Equal(t, pb.Status_STATUS_OK, r.Status, r.Err)
	require.False(t, r.Durable, "a tail with a predecessor need not wait for its own fsync")

	s.crash(s.head(0))
	s.stabilize()
	s.crash(s.head(0))
	s.stabilize()
	require.Len(t, s.cfgs[0].Members, 1)
	lone := s.cores[s.head(0)]
	s.write(0, appendOf(1, 2, "k", "<b>"))
	tok := s.nextToken()
	lone.Read(tok, 0, s.cfgs[0].Epoch, "k")
	rd := lone.Ready()
	require.NotEmpty(t, rd.Persist, "the write is not on disk yet")
	var got *Reply
	for i := range rd.Replies {
		if rd.Replies[i].Token == tok {
			got = &rd.Replies[i]
		}
	}
	require.NotNil(t, got)
	require.Equal(t, "<a><b>", got.Value)
	require.True(t, got.Durable, "a lone tail's read must wait for its pending fsync")
}

func memberIDs(c Config) []uint64 {
	var ids []uint64
	for _, m := range c.Members {
		ids = append(ids, m.ID)
	}
	return ids
}

func TestCompactSnapshotsAChainWithNewEntriesOnly(t *testing.T) {
	s := newSim(t, 3, 1, 3)
	tok := s.write(0, appendOf(1, 1, "k", "<a>"))
	s.stabilize()
	require.Equal(t, pb.Status_STATUS_OK, s.replies[tok].Status)
	c := s.cores[s.head(0)]
	c.Compact(0)
	c.Compact(7) // no such chain: ignored
	require.True(t, c.HasReady())
	rd := c.Ready()
	require.Len(t, rd.Persist, 1)
	require.NotNil(t, rd.Persist[0].Snapshot)
	require.Equal(t, map[string]string{"k": "<a>"}, rd.Persist[0].Snapshot.Data)
	c.Advance()
	c.Compact(0)
	require.False(t, c.HasReady(), "nothing new since the snapshot: no second one")
}

// TestSyncedOnlyFromASyncedPredecessor is the case `run --nemesis all`
// caught once the master moved nodes to restore the rotation: the old tail
// becomes the head, the new tail has not caught up with it yet, and a
// joiner behind the new tail must not count as caught up (nor, appended,
// serve reads) while a committed write is still on its way.
func TestSyncedOnlyFromASyncedPredecessor(t *testing.T) {
	s := newSim(t, 3, 1, 3) // chain 0: 1, 2, 3
	cfg := func(epoch uint64, members []uint64, joining uint64) Config {
		c := Config{Chain: 0, Epoch: epoch}
		for _, id := range members {
			c.Members = append(c.Members, Member{ID: id, Addr: s.addr(id)})
		}
		if joining != 0 {
			c.Joining = &Member{ID: joining, Addr: s.addr(joining)}
		}
		return c
	}
	push := func(c Config) {
		s.cfgs[0] = c
		for _, core := range s.cores {
			core.SetConfig(c)
		}
	}
	pump := func() {
		for range retransmitTicks + 3 {
			for _, c := range s.cores {
				c.Tick()
			}
			// Quiet between ticks: a message loop that never ends is a
			// livelock, and fails here rather than hanging.
			for n := 0; s.handle() || s.deliver(); n++ {
				require.Less(t, n, 1000, "messages never stop between ticks")
			}
		}
	}

	push(cfg(2, []uint64{1, 2}, 0)) // node 3 leaves (and wipes the chain)
	pump()
	tok := s.write(0, appendOf(1, 1, "k", "<a>"))
	pump()
	require.Equal(t, pb.Status_STATUS_OK, s.replies[tok].Status, "committed at tail 2")

	// The old tail 2 is the head now, 3 the tail, 1 joins behind 3; nothing
	// gets from 2 to 3 for a while.
	s.drop = func(m *pb.Message) bool { return m.From == 2 && m.To == 3 }
	push(cfg(3, []uint64{2, 3}, 1))
	pump()
	require.NotEqual(t, uint64(3), s.live[1].Synced[0],
		"the joiner caught up with a tail that lacks a committed write")

	// Appended anyway (a master acting on an older report), the joiner
	// must still refuse reads until its predecessor is synced.
	push(cfg(4, []uint64{2, 3, 1}, 0))
	pump()
	r := s.read(0, "k")
	require.NotEqual(t, pb.Status_STATUS_OK, r.Status, "read %q at a tail missing <a>", r.Value)

	s.drop = nil
	for range snapshotRetryTicks/(retransmitTicks+3) + 1 {
		pump() // a snapshot lost to the drop is sent again after snapshotRetryTicks
	}
	s.requireAcked(0, "k", []string{"a"})
	s.requireConsistent(0)
}

// newTestCore is node 1's Core over chains chains from rec.
func newTestCore(t testing.TB, chains int, rec *Recovered) *Core {
	t.Helper()
	c, err := NewCore(CoreConfig{ID: 1, Chains: chains}, rec)
	require.NoError(t, err)
	return c
}

// TestOneSnapshotInFlight: a joiner that needs the whole state gets one
// snapshot, not one per ack. Its acks (one a tick) show its old position
// until the snapshot is installed; answering each with another copy of
// the state flooded the link, and a joiner of a store holding megabytes
// never caught up. A snapshot that is lost is sent again after its retry
// time.
func TestOneSnapshotInFlight(t *testing.T) {
	s := newSim(t, 3, 1, 3)
	for i := range 5 {
		s.write(0, appendOf(1, uint64(i+1), "k", fmt.Sprintf("<%d>", i)))
	}
	s.stabilize()
	joiner := s.tail(0)
	s.crash(joiner)
	s.disks[joiner] = nil // a fresh node: the Sent lists no longer hold what it lacks
	s.reconcile()
	s.stabilize()
	snapshots := 0
	s.drop = func(m *pb.Message) bool {
		if m.Type == pb.MessageType_MSG_SNAPSHOT && m.To == joiner {
			snapshots++
			return true // in flight for as long as the test looks
		}
		return false
	}
	s.start(joiner)
	s.pushConfigs()
	s.reconcile()
	s.runTicks(snapshotRetryTicks - 2)
	require.Equal(t, 1, snapshots, "one snapshot while the first is unacknowledged")
	s.runTicks(4)
	require.Equal(t, 2, snapshots, "a lost snapshot is sent again after its retry time")
	s.drop = nil
	s.runTicks(snapshotRetryTicks + 2) // the next copy goes through
	s.stabilize()
	s.requireAcked(0, "k", []string{"0", "1", "2", "3", "4"})
	require.Equal(t, 3, len(s.cfgs[0].Members), "the joiner caught up and was appended")
}

// TestOneSnapshotPerRejoinUnderWrites: a joiner whose snapshot takes a
// while to arrive and install, with writes going on all the while, gets
// the state once and catches up with appends. The tail commits those
// writes at once; when it trimmed them from its Sent list, the joiner's
// ack of the installed snapshot found them gone and drew the whole state
// again, three to four copies per rejoin in the harness at 100 MB.
func TestOneSnapshotPerRejoinUnderWrites(t *testing.T) {
	s := newSim(t, 3, 1, 3)
	seq := uint64(0)
	write := func() {
		seq++
		s.write(0, appendOf(1, seq, "k", fmt.Sprintf("<%d>", seq)))
	}
	for range 5 {
		write()
	}
	s.stabilize()
	joiner := s.tail(0)
	s.crash(joiner)
	s.disks[joiner] = nil
	s.reconcile()
	s.stabilize()

	// Every snapshot to the joiner travels (and installs) for travelTicks,
	// less than its retry time, while a write comes every tick.
	const travelTicks = snapshotRetryTicks / 2
	type held struct {
		m  *pb.Message
		at int
	}
	var travelling []held
	arrived := map[*pb.Message]bool{}
	snapshots, now := 0, 0
	s.drop = func(m *pb.Message) bool {
		if m.Type == pb.MessageType_MSG_SNAPSHOT && m.To == joiner && !arrived[m] {
			snapshots++
			travelling = append(travelling, held{m, now})
			return true
		}
		return false
	}
	s.start(joiner)
	s.reconcile()
	joined := func() bool { return slices.Contains(memberIDs(s.cfgs[0]), joiner) }
	for now = 0; now < 10*snapshotRetryTicks && !joined(); now++ {
		write()
		for range 5 {
			s.handle()
			s.deliver()
		}
		for len(travelling) > 0 && now-travelling[0].at >= travelTicks {
			arrived[travelling[0].m] = true
			s.inflight = append(s.inflight, travelling[0].m)
			travelling = travelling[1:]
		}
		for _, c := range s.cores {
			c.Tick()
		}
		s.reconcile()
	}
	require.True(t, joined(), "the joiner caught up and was appended as the tail")
	require.Equal(t, 1, snapshots, "one copy of the state per rejoin; the writes during it went as appends")
	s.drop = nil
	s.stabilize()
	acked := make([]string, 0, seq)
	for i := uint64(1); i <= seq; i++ {
		acked = append(acked, fmt.Sprint(i))
	}
	s.requireAcked(0, "k", acked)
	s.requireConsistent(0)
}
