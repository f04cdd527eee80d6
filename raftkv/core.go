package raftkv

import (
	"encoding/binary"
	"fmt"
	"io"
	"log"
	"maps"
	"slices"
	"sort"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
	"google.golang.org/protobuf/proto"

	"github.com/chainraft/chainraft/kv"
	pb "github.com/chainraft/chainraft/raftkv/raftkvpb"
)

// CoreConfig configures a Core. Times are in ticks: the Core has no clock.
type CoreConfig struct {
	ID uint64
	// Bootstrap are the initial members of a new cluster (self included;
	// every initial member must be given the same list). A node that
	// recovered state, or joins an existing cluster, has none: it learns
	// the membership from the log.
	Bootstrap []Member
	// ElectionTick and HeartbeatTick are raft's; defaults 10 and 1.
	ElectionTick, HeartbeatTick int
	// Lease serves reads from the leader's lease (ReadOnlyLeaseBased)
	// instead of a heartbeat round per batch (ReadOnlySafe, the default).
	Lease bool
	// SnapshotEvery is the number of applied entries between snapshots
	// (default 10,000), once they carry as many bytes as the state, or
	// once there are snapshotEntriesCap times as many (see StartSnapshot);
	// SnapshotKeep the entries kept behind a snapshot for followers that
	// lag a little (default SnapshotEvery/2).
	SnapshotEvery, SnapshotKeep uint64
	// SnapshotBytes also starts a snapshot once the entries applied since
	// the last one carry this many bytes (default 256 MiB), and an eighth
	// of it bounds the bytes kept behind a snapshot: with large values a
	// count of entries alone let the log in memory grow to gigabytes.
	SnapshotBytes uint64
	// ReadTimeoutTicks fails a ReadIndex round that got no answer (raft
	// drops read requests silently); default 2*ElectionTick.
	ReadTimeoutTicks int
	// Logger receives raft's log lines; nil discards them.
	Logger raft.Logger
	// Bug is a seeded bug (see bugs.go); only BugNoDedup lives in the Core.
	Bug string
	// Preferred is the member that should lead this group (0: any). Under
	// multi-raft the groups' leaders are spread over the nodes as the
	// chains' heads are, so that no node orders every write and answers
	// every read: the preferred member campaigns when it finds no leader
	// soon after it starts, and a leader hands leadership to it whenever it
	// is caught up (checked every RebalanceTicks, default 2*ElectionTick).
	Preferred      uint64
	RebalanceTicks int
}

func (c *CoreConfig) setDefaults() {
	if c.ElectionTick == 0 {
		c.ElectionTick = 10
	}
	if c.HeartbeatTick == 0 {
		c.HeartbeatTick = 1
	}
	if c.SnapshotEvery == 0 {
		c.SnapshotEvery = 10000
	}
	if c.SnapshotKeep == 0 {
		c.SnapshotKeep = c.SnapshotEvery / 2
	}
	if c.SnapshotBytes == 0 {
		c.SnapshotBytes = 256 << 20
	}
	if c.ReadTimeoutTicks == 0 {
		c.ReadTimeoutTicks = 2 * c.ElectionTick
	}
	if c.RebalanceTicks == 0 {
		c.RebalanceTicks = 2 * c.ElectionTick
	}
	if c.Logger == nil {
		c.Logger = &raft.DefaultLogger{Logger: log.New(io.Discard, "", 0)}
	}
}

// Recovered is the durable state a Core restarts from (see Storage.Open).
type Recovered struct {
	Snapshot  *raftpb.Snapshot
	HardState *raftpb.HardState
	Entries   []*raftpb.Entry
}

func (r *Recovered) empty() bool {
	return r == nil || (raft.IsEmptySnap(r.Snapshot) && raft.IsEmptyHardState(r.HardState) && len(r.Entries) == 0)
}

// Member is a voter and its address.
type Member struct {
	ID   uint64
	Addr string
}

// Reply answers one local request: a write (Req), a read (Read) or a
// membership change (Conf). Exactly one of Result and Err is set (a
// membership change reply has neither on success).
type Reply struct {
	Req    kv.RequestID
	Read   uint64
	Conf   uint64
	Result *pb.Result
	Err    error
}

// Ready is one batch of Core output, handled in order: Storage.Save (HardState,
// Entries, Snapshot; fsync when MustSync), send Messages, then Apply, then
// Advance. The Core remembers the Ready it handed out, so Apply and Advance
// take no argument (raft's RawNode.Advance ignores its own).
type Ready struct {
	HardState *raftpb.HardState
	Entries   []*raftpb.Entry
	Snapshot  *raftpb.Snapshot
	MustSync  bool
	Messages  []*raftpb.Message
}

// Core is the deterministic part of a raft node: raft's RawNode, the log
// mirror raft reads from (MemoryStorage), the KV state machine and the
// bookkeeping of local requests. It has no goroutines, clock or I/O, so the
// same Core runs in a Node and in the in-memory network of the tests.
type Core struct {
	cfg  CoreConfig
	bugs bugs // seeded bugs, all false unless CoreConfig.Bug names one
	rn   *raft.RawNode
	ms   *raft.MemoryStorage
	fsm  *fsm

	applied   uint64
	snapIndex uint64
	// confSinceSnap: a conf change was applied after the last snapshot
	// (StartSnapshot then takes one); confIndex is the last one's index.
	confSinceSnap bool
	confIndex     uint64
	// sinceSnapBytes counts the entry bytes applied since the last
	// snapshot began; snapJob is the snapshot being built, if any.
	sinceSnapBytes uint64
	snapJob        *SnapshotJob
	confState      *raftpb.ConfState
	soft           raft.SoftState

	// pending counts the local proposals of each request id still awaiting
	// apply; pendingConf the local membership changes.
	pending     map[kv.RequestID]int
	pendingConf map[uint64]bool

	// Reads: queued reads wait for the next ReadIndex round; a round covers
	// every read queued when it started; confirmed reads wait for
	// applied >= their index.
	readQueue []readReq
	round     *readRound
	confirmed []confirmedReads
	readSeq   uint64

	// ticks counts Tick calls; probes remembers, per follower, the last
	// non-empty MsgApp let out and when (see throttleProbes).
	ticks  int64
	probes map[uint64]probeMark

	// handed is the raft Ready last handed out, until Advance, and
	// handedSnap its snapshot with the data Step kept (snapData, by index).
	handed     raft.Ready
	handedSnap *raftpb.Snapshot
	snapData   map[uint64][]byte
	hasHanded  bool

	replies        []Reply
	membersChanged bool
	installed      int // snapshots received from a leader, for tests and logs
}

// probeMark identifies an append by the log position it continues.
type probeMark struct {
	index, term uint64
	tick        int64
}

// probeRepeatTicks is how long a repeat of the same probing append is held
// back: long enough for a follower to store and answer one append of up to
// MaxSizePerMsg, short enough that a probe lost on the way is sent again
// soon (raft treats a held-back repeat as one more lost message).
const probeRepeatTicks = 2

type readReq struct {
	id  uint64
	key string
}

type readRound struct {
	rctx  []byte
	reads []readReq
	age   int
}

type confirmedReads struct {
	index uint64
	reads []readReq
}

// NewCore builds a Core from recovered state (nil for a fresh node). A
// node with no state bootstraps cfg.Bootstrap; a joining node has none and
// waits to be added by a conf change.
func NewCore(cfg CoreConfig, rec *Recovered) (*Core, error) {
	cfg.setDefaults()
	if cfg.ID == 0 {
		return nil, fmt.Errorf("raftkv: node id 0 is reserved")
	}
	planted, err := parseBugs(cfg.Bug)
	if err != nil {
		return nil, err
	}
	c := &Core{
		cfg:         cfg,
		bugs:        planted,
		ms:          raft.NewMemoryStorage(),
		fsm:         newFSM(),
		confState:   &raftpb.ConfState{},
		pending:     map[kv.RequestID]int{},
		pendingConf: map[uint64]bool{},
		probes:      map[uint64]probeMark{},
	}
	if rec != nil {
		if err := c.restore(rec); err != nil {
			return nil, err
		}
	}
	rc := &raft.Config{
		ID:                        cfg.ID,
		ElectionTick:              cfg.ElectionTick,
		HeartbeatTick:             cfg.HeartbeatTick,
		Storage:                   coreStorage{c.ms, c},
		Applied:                   c.applied,
		MaxSizePerMsg:             1 << 20,
		MaxCommittedSizePerReady:  4 << 20,
		MaxUncommittedEntriesSize: 64 << 20,
		MaxInflightMsgs:           256,
		CheckQuorum:               true,
		PreVote:                   true,
		ReadOnlyOption:            raft.ReadOnlySafe,
		DisableProposalForwarding: true,
		StepDownOnRemoval:         true,
		Logger:                    cfg.Logger,
	}
	if cfg.Lease {
		rc.ReadOnlyOption = raft.ReadOnlyLeaseBased
	}
	rn, err := raft.NewRawNode(rc)
	if err != nil {
		return nil, fmt.Errorf("raftkv: new raw node: %w", err)
	}
	c.rn = rn
	if rec.empty() && len(cfg.Bootstrap) > 0 {
		peers := make([]raft.Peer, len(cfg.Bootstrap))
		for i, m := range cfg.Bootstrap {
			ctx, err := proto.Marshal(&pb.ConfContext{Members: []*pb.Member{{Id: m.ID, Addr: m.Addr}}})
			if err != nil {
				return nil, fmt.Errorf("raftkv: marshal bootstrap context: %w", err)
			}
			peers[i] = raft.Peer{ID: m.ID, Context: ctx}
		}
		if err := rn.Bootstrap(peers); err != nil {
			return nil, fmt.Errorf("raftkv: bootstrap: %w", err)
		}
	}
	c.soft = rn.BasicStatus().SoftState
	return c, nil
}

func (c *Core) restore(rec *Recovered) error {
	if snap := rec.Snapshot; !raft.IsEmptySnap(snap) {
		if err := c.ms.ApplySnapshot(withoutData(snap)); err != nil {
			return fmt.Errorf("raftkv: restore snapshot: %w", err)
		}
		if err := c.fsm.restore(snap.GetData()); err != nil {
			return fmt.Errorf("raftkv: restore snapshot %d: %w", snap.GetMetadata().GetIndex(), err)
		}
		c.applied = snap.GetMetadata().GetIndex()
		c.snapIndex = c.applied
		c.confState = proto.Clone(snap.GetMetadata().GetConfState()).(*raftpb.ConfState)
		c.membersChanged = true
	}
	ents, ok := logMatchesSnapshot(rec.Snapshot, rec.Entries)
	if !ok {
		// Stale entries behind a snapshot (OpenStorage already rewrote such
		// a log on disk; a Recovered built elsewhere gets the same rule).
		ents = nil
	}
	if len(ents) > 0 {
		if first := ents[0].GetIndex(); first > c.applied+1 && c.applied > 0 {
			return fmt.Errorf("raftkv: log starts at %d but snapshot ends at %d", first, c.applied)
		}
		if err := c.ms.Append(ents); err != nil {
			return fmt.Errorf("raftkv: restore entries: %w", err)
		}
	}
	if hs := rec.HardState; !raft.IsEmptyHardState(hs) {
		hs = proto.Clone(hs).(*raftpb.HardState)
		// The snapshot is fsynced on its own; the commit index in the log
		// may be older. Everything in a snapshot is committed.
		if hs.GetCommit() < c.applied {
			hs.Commit = proto.Uint64(c.applied)
		}
		last, _ := c.ms.LastIndex()
		if hs.GetCommit() > last {
			return fmt.Errorf("raftkv: hard state commit %d beyond last log index %d", hs.GetCommit(), last)
		}
		if err := c.ms.SetHardState(hs); err != nil {
			return fmt.Errorf("raftkv: restore hard state: %w", err)
		}
	}
	return nil
}

// Tick advances raft's logical clock, ages the ReadIndex round and moves
// leadership towards the preferred member.
func (c *Core) Tick() {
	c.ticks++
	c.rn.Tick()
	c.prefer()
	if c.round != nil {
		c.round.age++
		if c.round.age > c.cfg.ReadTimeoutTicks {
			c.failReads(c.round.reads, ErrReadLost)
			c.round = nil
			c.startRound()
		}
	}
}

// preferStartTicks is when, after it starts, a preferred member that has
// heard of no leader campaigns: soon enough to take the group's first
// election, late enough for its peers' processes to be up.
const preferStartTicks = 3

// transferLag is how far behind the leader's log the preferred member may
// be for the leader to hand it leadership.
const transferLag = 64

// prefer makes the preferred member the leader (CoreConfig.Preferred):
// once at start by campaigning, later by the leader transferring to it
// when it has every entry the leader has (a transfer to a member still
// catching up would stall writes until it caught up).
func (c *Core) prefer() {
	p := c.cfg.Preferred
	if p == 0 {
		return
	}
	bs := c.rn.BasicStatus()
	if p == c.cfg.ID {
		if c.ticks == preferStartTicks && bs.Lead == 0 && bs.RaftState != raft.StateLeader {
			_ = c.rn.Campaign()
		}
		return
	}
	if bs.RaftState != raft.StateLeader || bs.LeadTransferee != 0 || c.ticks%int64(c.cfg.RebalanceTicks) != 0 {
		return
	}
	pr, ok := c.rn.Status().Progress[p]
	// Replicating and close behind: raft then sends the rest and the
	// timeout-now within a round trip; proposals pause only that long.
	if last, _ := c.ms.LastIndex(); ok && pr.RecentActive && !pr.IsLearner &&
		pr.State == tracker.StateReplicate && pr.Match+transferLag >= last {
		c.rn.TransferLeader(p)
	}
}

// Step feeds a message from a peer. A snapshot's data is kept here and
// raft gets the snapshot without it: raft copies every snapshot it is
// given (a gigabyte, on the loop, for seconds) and needs only the
// metadata; Ready puts the data back for the caller to save and Apply to
// install. Step takes ownership of m.
func (c *Core) Step(m *raftpb.Message) error {
	if snap := m.GetSnapshot(); m.GetType() == raftpb.MsgSnap && len(snap.GetData()) > 0 {
		c.keepSnapData(snap.GetMetadata().GetIndex(), snap.GetData())
		m.Snapshot = withoutData(snap)
	}
	return c.rn.Step(m)
}

// maxKeptSnaps bounds the snapshots' data kept for Ready: raft takes at
// most one snapshot per Ready, and one it refused is dropped for a newer.
const maxKeptSnaps = 2

func (c *Core) keepSnapData(index uint64, data []byte) {
	if c.snapData == nil {
		c.snapData = map[uint64][]byte{}
	}
	c.snapData[index] = data
	for len(c.snapData) > maxKeptSnaps {
		delete(c.snapData, slices.Min(slices.Collect(maps.Keys(c.snapData))))
	}
}

// ReportUnreachable and ReportSnapshot feed the transport's observations
// back to raft: a peer whose messages could not be sent is probed again, and
// a follower waiting for a snapshot is unpaused.
func (c *Core) ReportUnreachable(id uint64) { c.rn.ReportUnreachable(id) }

// ReportSnapshot reports whether a snapshot message reached the peer.
func (c *Core) ReportSnapshot(id uint64, ok bool) {
	st := raft.SnapshotFinish
	if !ok {
		st = raft.SnapshotFailure
	}
	c.rn.ReportSnapshot(id, st)
}

// Campaign makes this node start an election (tests, and leadership
// transfer by hand).
func (c *Core) Campaign() error { return c.rn.Campaign() }

// isLeader asks raft itself rather than the last Ready's SoftState: a Step
// since then may have deposed us.
func (c *Core) isLeader() bool {
	return c.rn.BasicStatus().RaftState == raft.StateLeader
}

func (c *Core) notLeader() error {
	lead := c.rn.BasicStatus().Lead
	if lead == c.cfg.ID {
		lead = 0
	}
	return &NotLeaderError{Leader: lead, Addr: c.fsm.members[lead]}
}

// Propose proposes a write. An error means it was not proposed (definite);
// after nil, the reply comes through Ready when it applies, or as
// ErrLeadershipLost (indeterminate) when leadership is lost first.
func (c *Core) Propose(cmd *pb.Command) error {
	switch cmd.GetOp() {
	case pb.Op_OP_PUT, pb.Op_OP_APPEND, pb.Op_OP_CAS:
	default:
		return fmt.Errorf("%w: op %v is not a write", ErrBadRequest, cmd.GetOp())
	}
	if cmd.GetClient() == 0 || cmd.GetSeq() == 0 {
		return fmt.Errorf("%w: request id %x/%d", ErrBadRequest, cmd.GetClient(), cmd.GetSeq())
	}
	if !c.isLeader() {
		return c.notLeader()
	}
	data, err := proto.Marshal(cmd)
	if err != nil {
		return fmt.Errorf("%w: marshal: %w", ErrBadRequest, err)
	}
	if err := c.rn.Propose(data); err != nil {
		return fmt.Errorf("%w: %w", ErrProposalDropped, err)
	}
	c.pending[kv.RequestID{Client: cmd.GetClient(), Seq: cmd.GetSeq()}]++
	return nil
}

// Read queues a linearizable read of key under the caller's read id. Reads
// queued together share one ReadIndex round.
func (c *Core) Read(id uint64, key string) error {
	if !c.isLeader() {
		return c.notLeader()
	}
	c.readQueue = append(c.readQueue, readReq{id: id, key: key})
	if c.round == nil {
		c.startRound()
	}
	return nil
}

func (c *Core) startRound() {
	if len(c.readQueue) == 0 {
		return
	}
	c.readSeq++
	rctx := make([]byte, 8)
	binary.BigEndian.PutUint64(rctx, c.readSeq)
	c.round = &readRound{rctx: rctx, reads: c.readQueue}
	c.readQueue = nil
	c.rn.ReadIndex(rctx)
}

func (c *Core) failReads(reads []readReq, err error) {
	for _, r := range reads {
		c.replies = append(c.replies, Reply{Read: r.id, Err: err})
	}
}

// AddNode proposes adding a voter; RemoveNode removing one. Ids are never
// reused: an id once removed is refused for good.
func (c *Core) AddNode(req uint64, m Member) error {
	if m.ID == 0 || m.Addr == "" {
		return fmt.Errorf("%w: add node needs an id and an address", ErrRejected)
	}
	// A change is retried when its first attempt timed out, and may have
	// gone through: the member the caller asked for, already there, is
	// its success, not a rejection.
	if addr, ok := c.fsm.members[m.ID]; ok {
		if addr != m.Addr {
			return fmt.Errorf("%w: node %d is already a member, at %s", ErrRejected, m.ID, addr)
		}
		c.replies = append(c.replies, Reply{Conf: req})
		return nil
	}
	if c.fsm.removed[m.ID] {
		return fmt.Errorf("%w: node id %d was removed and is never reused", ErrRejected, m.ID)
	}
	return c.proposeConf(req, raftpb.ConfChangeAddNode, m)
}

// RemoveNode proposes removing a voter.
func (c *Core) RemoveNode(req uint64, id uint64) error {
	if _, ok := c.fsm.members[id]; !ok {
		if c.fsm.removed[id] {
			c.replies = append(c.replies, Reply{Conf: req}) // as AddNode: a retry
			return nil
		}
		return fmt.Errorf("%w: node %d is not a member", ErrRejected, id)
	}
	if len(c.fsm.members) <= 1 {
		return fmt.Errorf("%w: cannot remove the last member", ErrRejected)
	}
	return c.proposeConf(req, raftpb.ConfChangeRemoveNode, Member{ID: id})
}

func (c *Core) proposeConf(req uint64, typ raftpb.ConfChangeType, m Member) error {
	if !c.isLeader() {
		return c.notLeader()
	}
	if len(c.pendingConf) > 0 {
		// raft would turn a second change into an empty entry silently.
		return fmt.Errorf("%w: another membership change is in flight", ErrRejected)
	}
	ctx, err := proto.Marshal(&pb.ConfContext{Request: req, Members: []*pb.Member{{Id: m.ID, Addr: m.Addr}}})
	if err != nil {
		return fmt.Errorf("%w: marshal conf context: %w", ErrBadRequest, err)
	}
	cc := &raftpb.ConfChangeV2{
		Changes: []*raftpb.ConfChangeSingle{{Type: typ.Enum(), NodeId: proto.Uint64(m.ID)}},
		Context: ctx,
	}
	if err := c.rn.ProposeConfChange(cc); err != nil {
		return fmt.Errorf("%w: %w", ErrProposalDropped, err)
	}
	c.pendingConf[req] = true
	return nil
}

// HasReady says whether Ready would return anything to handle.
func (c *Core) HasReady() bool { return len(c.replies) > 0 || c.rn.HasReady() }

// Ready returns the next batch of output. The caller persists and sends,
// then calls Apply and Advance before asking again.
func (c *Core) Ready() Ready {
	if c.hasHanded {
		panic(fmt.Sprintf("raftkv: node %d: Ready called again before Advance", c.cfg.ID))
	}
	if !c.rn.HasReady() {
		return Ready{}
	}
	r := c.rn.Ready()
	c.handed, c.hasHanded = r, true
	c.handedSnap = r.Snapshot
	if s := r.Snapshot; !raft.IsEmptySnap(s) {
		idx := s.GetMetadata().GetIndex()
		if data, ok := c.snapData[idx]; ok {
			c.handedSnap = &raftpb.Snapshot{Metadata: s.GetMetadata(), Data: data}
		}
		for i := range c.snapData {
			if i <= idx {
				delete(c.snapData, i)
			}
		}
	}
	return Ready{
		HardState: r.HardState,
		Entries:   r.Entries,
		Snapshot:  c.handedSnap,
		MustSync:  r.MustSync,
		Messages:  c.throttleProbes(r.Messages),
	}
}

// throttleProbes drops repeats of a probing append. A leader probing a
// follower (StateProbe: after a restart, a snapshot, a rejection or
// ReportUnreachable) sends the whole window from the follower's next index,
// up to MaxSizePerMsg, again on every heartbeat response from it — and with
// ReadOnlySafe every ReadIndex round is a heartbeat, hundreds a second, plus
// the stale ones a paused follower answers in a burst on SIGCONT. Each
// repeat is the same megabyte marshalled on the loop, queued and decoded by
// the follower, which answers only the first usefully: a follower coming
// back starved the leader's loop and the other follower's appends for
// seconds. An append that continues the log at the same (index, term) as
// the last non-empty one to that follower, within probeRepeatTicks, is such
// a repeat (in StateReplicate each append continues where the previous one
// ended, so repeats occur only while probing); it is dropped, which raft
// tolerates as message loss.
func (c *Core) throttleProbes(msgs []*raftpb.Message) []*raftpb.Message {
	out := msgs[:0:0]
	for _, m := range msgs {
		if m.GetType() == raftpb.MsgApp && len(m.GetEntries()) > 0 {
			to := m.GetTo()
			last, ok := c.probes[to]
			if ok && last.index == m.GetIndex() && last.term == m.GetLogTerm() && c.ticks-last.tick < probeRepeatTicks {
				continue
			}
			c.probes[to] = probeMark{index: m.GetIndex(), term: m.GetLogTerm(), tick: c.ticks}
		}
		out = append(out, m)
	}
	return out
}

// Apply runs after the last Ready's state is durable and its messages are
// sent: it mirrors the persisted state into raft's MemoryStorage, installs
// a snapshot, applies committed entries and returns the replies they
// produce (plus those pending since the last call).
func (c *Core) Apply() []Reply {
	if c.hasHanded {
		r := c.handed
		if snap := c.handedSnap; !raft.IsEmptySnap(snap) {
			c.installSnapshot(snap)
		}
		if err := c.ms.Append(r.Entries); err != nil {
			panic(fmt.Sprintf("raftkv: node %d: mirror %d entries: %v", c.cfg.ID, len(r.Entries), err))
		}
		if !raft.IsEmptyHardState(r.HardState) {
			if err := c.ms.SetHardState(r.HardState); err != nil {
				panic(fmt.Sprintf("raftkv: node %d: mirror hard state: %v", c.cfg.ID, err))
			}
		}
		for _, e := range r.CommittedEntries {
			c.applyEntry(e)
		}
		for _, rs := range r.ReadStates {
			c.readConfirmed(rs)
		}
		if r.SoftState != nil {
			c.softChanged(*r.SoftState)
		}
		c.serveReads()
	}
	out := c.replies
	c.replies = nil
	return out
}

// Advance acknowledges that the last Ready was handled.
func (c *Core) Advance() {
	if c.hasHanded {
		c.rn.Advance(c.handed)
		c.handed, c.handedSnap, c.hasHanded = raft.Ready{}, nil, false
	}
}

func (c *Core) installSnapshot(snap *raftpb.Snapshot) {
	idx := snap.GetMetadata().GetIndex()
	if idx <= c.applied {
		panic(fmt.Sprintf("raftkv: node %d: snapshot at %d does not move applied %d forward", c.cfg.ID, idx, c.applied))
	}
	if err := c.ms.ApplySnapshot(withoutData(snap)); err != nil {
		panic(fmt.Sprintf("raftkv: node %d: apply snapshot %d: %v", c.cfg.ID, idx, err))
	}
	if err := c.fsm.restore(snap.GetData()); err != nil {
		panic(fmt.Sprintf("raftkv: node %d: restore snapshot %d: %v", c.cfg.ID, idx, err))
	}
	c.applied = idx
	c.snapIndex = idx
	c.sinceSnapBytes = 0
	c.confState = proto.Clone(snap.GetMetadata().GetConfState()).(*raftpb.ConfState)
	c.membersChanged = true
	c.installed++
}

func (c *Core) applyEntry(e *raftpb.Entry) {
	idx := e.GetIndex()
	if idx <= c.applied {
		return // replayed below a snapshot just installed
	}
	if idx != c.applied+1 {
		panic(fmt.Sprintf("raftkv: node %d: applying entry %d after %d (gap)", c.cfg.ID, idx, c.applied))
	}
	c.applied = idx
	c.sinceSnapBytes += uint64(len(e.GetData()))
	switch e.GetType() {
	case raftpb.EntryNormal:
		if len(e.GetData()) == 0 {
			return // a new leader's empty entry
		}
		var cmd pb.Command
		if err := proto.Unmarshal(e.GetData(), &cmd); err != nil {
			panic(fmt.Sprintf("raftkv: node %d: committed entry %d does not decode: %v", c.cfg.ID, idx, err))
		}
		res, err := c.fsm.apply(&cmd, c.bugs.noDedup)
		id := kv.RequestID{Client: cmd.GetClient(), Seq: cmd.GetSeq()}
		if c.pending[id] > 0 {
			delete(c.pending, id)
			if err != nil {
				c.replies = append(c.replies, Reply{Req: id, Err: unknown(err)})
			} else {
				c.replies = append(c.replies, Reply{Req: id, Result: res})
			}
		}
	case raftpb.EntryConfChange, raftpb.EntryConfChangeV2:
		c.applyConfChange(e)
	default:
		panic(fmt.Sprintf("raftkv: node %d: entry %d has type %v", c.cfg.ID, idx, e.GetType()))
	}
}

// applyConfChange applies a membership change, deciding only from the
// replicated state (so every node decides alike): a change that re-adds a
// removed id or removes a non-member gets NodeId 0, which raft ignores, and
// is still handed to ApplyConfChange as raft requires.
func (c *Core) applyConfChange(e *raftpb.Entry) {
	var cc *raftpb.ConfChangeV2
	if e.GetType() == raftpb.EntryConfChange {
		var v1 raftpb.ConfChange
		if err := proto.Unmarshal(e.GetData(), &v1); err != nil {
			panic(fmt.Sprintf("raftkv: node %d: conf change %d does not decode: %v", c.cfg.ID, e.GetIndex(), err))
		}
		cc = v1.AsV2()
	} else {
		cc = &raftpb.ConfChangeV2{}
		if err := proto.Unmarshal(e.GetData(), cc); err != nil {
			panic(fmt.Sprintf("raftkv: node %d: conf change %d does not decode: %v", c.cfg.ID, e.GetIndex(), err))
		}
	}
	var cctx pb.ConfContext
	if err := proto.Unmarshal(cc.GetContext(), &cctx); err != nil {
		panic(fmt.Sprintf("raftkv: node %d: conf change %d context does not decode: %v", c.cfg.ID, e.GetIndex(), err))
	}
	addrs := map[uint64]string{}
	for _, m := range cctx.GetMembers() {
		addrs[m.GetId()] = m.GetAddr()
	}
	var rejected error
	for _, ch := range cc.GetChanges() {
		id := ch.GetNodeId()
		switch ch.GetType() {
		case raftpb.ConfChangeAddNode:
			if c.fsm.removed[id] {
				rejected = fmt.Errorf("%w: node id %d was removed", ErrRejected, id)
				ch.NodeId = proto.Uint64(0)
				continue
			}
			c.fsm.members[id] = addrs[id]
		case raftpb.ConfChangeRemoveNode:
			if _, ok := c.fsm.members[id]; !ok {
				rejected = fmt.Errorf("%w: node %d is not a member", ErrRejected, id)
				ch.NodeId = proto.Uint64(0)
				continue
			}
			delete(c.fsm.members, id)
			c.fsm.removed[id] = true
		default:
			rejected = fmt.Errorf("%w: change type %v unsupported", ErrRejected, ch.GetType())
			ch.NodeId = proto.Uint64(0)
		}
	}
	c.confState = c.rn.ApplyConfChange(cc)
	c.membersChanged = true
	c.confSinceSnap = true
	c.confIndex = e.GetIndex()
	if req := cctx.GetRequest(); req != 0 && c.pendingConf[req] {
		delete(c.pendingConf, req)
		c.replies = append(c.replies, Reply{Conf: req, Err: rejected})
	}
}

func (c *Core) readConfirmed(rs raft.ReadState) {
	if c.round == nil || string(rs.RequestCtx) != string(c.round.rctx) {
		return // a round we already gave up on
	}
	c.confirmed = append(c.confirmed, confirmedReads{index: rs.Index, reads: c.round.reads})
	c.round = nil
	c.startRound()
}

func (c *Core) serveReads() {
	n := 0
	for _, cr := range c.confirmed {
		if cr.index > c.applied {
			break
		}
		for _, r := range cr.reads {
			c.replies = append(c.replies, Reply{Read: r.id, Result: c.fsm.get(r.key)})
		}
		n++
	}
	c.confirmed = c.confirmed[n:]
}

// softChanged fails what a deposed leader can no longer finish: its
// proposals may still commit under the next leader (indeterminate), and its
// unconfirmed reads are simply lost (reads have no effect).
func (c *Core) softChanged(s raft.SoftState) {
	wasLeader := c.soft.RaftState == raft.StateLeader
	c.soft = s
	if !wasLeader || s.RaftState == raft.StateLeader {
		return
	}
	ids := make([]kv.RequestID, 0, len(c.pending))
	for id := range c.pending {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool {
		if ids[i].Client != ids[j].Client {
			return ids[i].Client < ids[j].Client
		}
		return ids[i].Seq < ids[j].Seq
	})
	for _, id := range ids {
		c.replies = append(c.replies, Reply{Req: id, Err: unknown(ErrLeadershipLost)})
	}
	clear(c.pending)
	for _, req := range sortedKeys(c.pendingConf) {
		c.replies = append(c.replies, Reply{Conf: req, Err: unknown(ErrLeadershipLost)})
	}
	clear(c.pendingConf)
	if c.round != nil {
		c.failReads(c.round.reads, ErrLeadershipLost)
		c.round = nil
	}
	c.failReads(c.readQueue, ErrLeadershipLost)
	c.readQueue = nil
}

// A snapshot is taken in three steps, so that the node's loop never stops
// for the slow part (marshalling the whole state and writing it out, whole
// seconds at a gigabyte; etcd takes its snapshots apart from its raft loop
// too): StartSnapshot, on the loop, copies the state at the applied index;
// SnapshotJob.Build marshals it, anywhere, and the caller makes the result
// durable; FinishSnapshot, on the loop again, hands it to raft and compacts
// the log behind it. One snapshot is built at a time.
//
// raft's MemoryStorage holds the snapshot without its data: the state is
// already in memory once, in the fsm, and a second copy doubled what a node
// holds. So a MsgSnap leaves the Core with no data, and its sender attaches
// the durable snapshot's (Storage.LoadSnapshot): the one raft named, or a
// newer one, which raft accepts as well.

// SnapshotJob is the state at one applied index, copied so that it can be
// marshalled off the loop while the loop applies more.
type SnapshotJob struct {
	meta  *raftpb.SnapshotMetadata
	state *fsm
}

// Index is the applied index the job's state is at.
func (j *SnapshotJob) Index() uint64 { return j.meta.GetIndex() }

// Build marshals the job's state into a snapshot; it reads only the job,
// so any goroutine may call it.
func (j *SnapshotJob) Build() *raftpb.Snapshot {
	return &raftpb.Snapshot{Metadata: j.meta, Data: j.state.marshal()}
}

// StartSnapshot returns a job when a snapshot is due — SnapshotEvery
// entries or SnapshotBytes bytes applied since the last one, or a conf
// change — and none is being built; else nil. Call it only after Advance,
// when every entry raft knows is mirrored.
func (c *Core) StartSnapshot() *SnapshotJob {
	if c.snapJob != nil || c.applied <= c.snapIndex {
		return nil
	}
	// A conf change also forces a snapshot: a node added by it that has to
	// be sent a snapshot must find itself in the snapshot's ConfState, or
	// raft ignores the snapshot ("not in the ConfState") and the new node
	// never catches up; the latest snapshot is the one the leader sends
	// (and coreStorage holds it back until one covers the change).
	if !c.snapshotDue() {
		return nil
	}
	term, err := c.ms.Term(c.applied)
	if err != nil {
		panic(fmt.Sprintf("raftkv: node %d: term of applied %d: %v", c.cfg.ID, c.applied, err))
	}
	c.confSinceSnap = false
	c.sinceSnapBytes = 0
	c.snapJob = &SnapshotJob{
		meta: &raftpb.SnapshotMetadata{Index: proto.Uint64(c.applied), Term: proto.Uint64(term),
			ConfState: proto.Clone(c.confState).(*raftpb.ConfState)},
		state: c.fsm.clone(),
	}
	return c.snapJob
}

// snapshotEntriesCap bounds the entries between snapshots whatever their
// bytes, as a multiple of SnapshotEvery: raft's MemoryStorage holds every
// entry since the last snapshot, each with tens of bytes of its own.
const snapshotEntriesCap = 32

// snapshotDue reports whether a snapshot is due. A count of entries alone
// is not enough: a snapshot writes the whole state, and at the harness's
// 1 GB preload every 10,000 small workload writes had each node build and
// write a gigabyte. So the count also waits for the entries to carry as
// many bytes as the state (a state of S bytes is written at most once per
// S bytes of log, the chain's rule too), up to snapshotEntriesCap times the
// count; SnapshotBytes of entries and a conf change force one.
func (c *Core) snapshotDue() bool {
	n := c.applied - c.snapIndex
	switch {
	case c.confSinceSnap, c.sinceSnapBytes >= c.cfg.SnapshotBytes:
		return true
	case n < c.cfg.SnapshotEvery:
		return false
	default:
		return c.sinceSnapBytes >= c.fsm.bytes || n >= snapshotEntriesCap*c.cfg.SnapshotEvery
	}
}

// LogAfter is what a log started at j's index holds (Storage.Rotate): the
// hard state and the entries after the index, all mirrored from disk.
func (c *Core) LogAfter(j *SnapshotJob) (*raftpb.HardState, []*raftpb.Entry) {
	last, _ := c.ms.LastIndex()
	if last <= j.Index() {
		return c.hardState(), nil
	}
	ents, err := c.ms.Entries(j.Index()+1, last+1, ^uint64(0))
	if err != nil {
		panic(fmt.Sprintf("raftkv: node %d: entries (%d,%d]: %v", c.cfg.ID, j.Index(), last, err))
	}
	return c.hardState(), ents
}

// SnapshotSuperseded says whether a snapshot installed from the leader
// since j started is at least as new as j: then j must not replace it.
func (c *Core) SnapshotSuperseded(j *SnapshotJob) bool { return j.Index() <= c.snapIndex }

// FinishSnapshot ends the job j, once its snapshot is durable (or dropped,
// if superseded). It makes it raft's snapshot, compacts the in-memory log
// behind it (keeping up to SnapshotKeep entries and SnapshotBytes/8 bytes
// for followers that lag a little) and returns the log the caller must
// rewrite: the returned HardState and entries. It returns nil for a
// superseded job.
func (c *Core) FinishSnapshot(j *SnapshotJob) *Compaction {
	if c.snapJob != j {
		panic(fmt.Sprintf("raftkv: node %d: finishing snapshot %d, which is not the one being built", c.cfg.ID, j.Index()))
	}
	c.snapJob = nil
	if c.SnapshotSuperseded(j) {
		return nil
	}
	idx := j.Index()
	if _, err := c.ms.CreateSnapshot(idx, j.meta.GetConfState(), nil); err != nil {
		panic(fmt.Sprintf("raftkv: node %d: create snapshot at %d: %v", c.cfg.ID, idx, err))
	}
	c.snapIndex = idx
	if to := c.compactTo(idx); to > 0 {
		if err := c.ms.Compact(to); err != nil && err != raft.ErrCompacted {
			panic(fmt.Sprintf("raftkv: node %d: compact to %d: %v", c.cfg.ID, to, err))
		}
	}
	return &Compaction{Snapshot: &raftpb.Snapshot{Metadata: j.meta}, HardState: c.hardState(), Entries: c.entries()}
}

// compactTo is the index to compact the log to behind a snapshot at idx:
// what is kept after it is at most SnapshotKeep entries and
// SnapshotBytes/8 bytes — and, on a leader, also the entries after a
// snapshot being sent to a follower, up to SnapshotBytes (a follower that
// is merely behind, or down, holds nothing back). Without that, a
// follower that took longer to
// install a gigabyte's snapshot than the leader took to apply
// SnapshotEvery entries found the entries after it compacted, and got
// another whole snapshot, and another.
func (c *Core) compactTo(idx uint64) uint64 {
	floor := idx // followers need the entries after floor
	if c.isLeader() {
		c.rn.WithProgress(func(id uint64, _ raft.ProgressType, pr tracker.Progress) {
			if id != c.cfg.ID && pr.State == tracker.StateSnapshot {
				floor = min(floor, pr.PendingSnapshot)
			}
		})
	}
	first, _ := c.ms.FirstIndex()
	from := first
	if idx > c.cfg.SnapshotKeep {
		from = max(from, min(idx-c.cfg.SnapshotKeep, floor)+1)
	}
	if from > idx {
		return idx
	}
	ents, err := c.ms.Entries(from, idx+1, ^uint64(0))
	if err != nil {
		panic(fmt.Sprintf("raftkv: node %d: entries [%d,%d]: %v", c.cfg.ID, from, idx, err))
	}
	var bytes, kept uint64
	for i := len(ents) - 1; i >= 0; i-- {
		bytes += uint64(len(ents[i].GetData()))
		usual := kept < c.cfg.SnapshotKeep && bytes <= c.cfg.SnapshotBytes/8
		needed := ents[i].GetIndex() > floor && bytes <= c.cfg.SnapshotBytes
		if !usual && !needed {
			break
		}
		kept++
	}
	return idx - kept
}

// MaybeSnapshot is StartSnapshot, Build and FinishSnapshot in one go, for
// callers with no loop to keep going (the simulator, tests); the returned
// Compaction's Snapshot carries the data, for the caller to save first.
func (c *Core) MaybeSnapshot() *Compaction {
	j := c.StartSnapshot()
	if j == nil {
		return nil
	}
	snap := j.Build()
	cp := c.FinishSnapshot(j)
	cp.Snapshot = snap
	return cp
}

// coreStorage is what raft reads: the MemoryStorage, except that no
// snapshot is offered while the last conf change is newer than it (a node
// it added would refuse it), which raft takes as "try again later".
type coreStorage struct {
	*raft.MemoryStorage
	c *Core
}

func (s coreStorage) Snapshot() (*raftpb.Snapshot, error) {
	if s.c.snapIndex < s.c.confIndex {
		return nil, raft.ErrSnapshotTemporarilyUnavailable
	}
	return s.MemoryStorage.Snapshot()
}

// withoutData is snap's metadata alone (see SnapshotJob).
func withoutData(snap *raftpb.Snapshot) *raftpb.Snapshot {
	return &raftpb.Snapshot{Metadata: snap.GetMetadata()}
}

// Compaction is a snapshot and the log that remains behind it.
type Compaction struct {
	Snapshot  *raftpb.Snapshot
	HardState *raftpb.HardState
	Entries   []*raftpb.Entry
}

func (c *Core) hardState() *raftpb.HardState {
	hs, _, err := c.ms.InitialState()
	if err != nil {
		panic(fmt.Sprintf("raftkv: node %d: hard state: %v", c.cfg.ID, err))
	}
	return hs
}

func (c *Core) entries() []*raftpb.Entry {
	first, _ := c.ms.FirstIndex()
	last, _ := c.ms.LastIndex()
	if last < first {
		return nil
	}
	ents, err := c.ms.Entries(first, last+1, ^uint64(0))
	if err != nil {
		panic(fmt.Sprintf("raftkv: node %d: entries [%d,%d]: %v", c.cfg.ID, first, last, err))
	}
	return ents
}

// RoleNone is the role a node reports for a raft group it has no replica
// of (multi-raft: see Host); the other roles are raft's state names.
const RoleNone = "none"

// Status is a snapshot of the Core's view, for operators and the harness.
type Status struct {
	ID, Leader, Term, Commit, Applied uint64
	Role                              string
	Members                           []Member
	// Digest hashes the applied data at Applied (see fsm.digest).
	Digest string
}

// Status reports the Core's view.
func (c *Core) Status() Status { return c.status(true) }

// status is Status, with the digest (a hash of all the data) only if asked.
func (c *Core) status(digest bool) Status {
	bs := c.rn.BasicStatus()
	st := Status{
		ID: c.cfg.ID, Leader: bs.Lead, Term: bs.HardState.GetTerm(), Commit: bs.HardState.GetCommit(),
		Applied: c.applied, Role: bs.RaftState.String(), Members: c.Members(),
	}
	if digest {
		st.Digest = c.fsm.digest()
	}
	return st
}

// dataCopy is a copy of the data's map for hashing off the loop (its
// strings are shared: the state machine never changes one in place).
func (c *Core) dataCopy() map[string]string { return maps.Clone(c.fsm.data) }

// Members lists the voters with their addresses, by id.
func (c *Core) Members() []Member {
	out := make([]Member, 0, len(c.fsm.members))
	for _, id := range sortedKeys(c.fsm.members) {
		out = append(out, Member{ID: id, Addr: c.fsm.members[id]})
	}
	return out
}

// TakeMembersChanged reports (once) whether membership changed since the
// last call, so the node can update its transport.
func (c *Core) TakeMembersChanged() bool {
	ch := c.membersChanged
	c.membersChanged = false
	return ch
}

// Get reads the local state machine without any linearizability guarantee
// (tests and the seeded bugs BugLocalRead and BugEarlyAck only).
func (c *Core) Get(key string) *pb.Result { return c.fsm.get(key) }

// Applied is the index of the last applied entry.
func (c *Core) Applied() uint64 { return c.applied }
