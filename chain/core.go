package chain

import (
	"errors"
	"fmt"
	"slices"
	"sort"

	pb "github.com/chainraft/chainraft/chain/chainpb"
	"github.com/chainraft/chainraft/kv"
	"google.golang.org/protobuf/proto"
)

// maxBatch bounds the entries of one append message, so a successor that
// fell far behind is caught up in pieces instead of one huge message.
const maxBatch = 512

// snapshotEvery is how many entries a chain may add to the node's log on
// disk before the Core asks for a snapshot of the chain's state, which makes
// them dead so their log segments can go: restart time and disk use stay
// bounded. It takes as many bytes of entries as the state holds too
// (chainState.due): a snapshot writes the whole state, and at the
// harness's 1 GB preload every node rewrote each chain's 330 MB every
// 10,000 small workload writes, nine such files every 25 s on two cores,
// whose stalls the data-path detector took for failures. A state of S
// bytes is now written at most once per S bytes of log, Storage.Pinning's
// rule, and restart replays no more log than the snapshot it reads.
const snapshotEvery = 10000

// retransmitTicks is how many ticks a predecessor waits without its
// successor's progress before it resends from what the successor last
// acknowledged (messages can be dropped by a full queue or a failed call).
const retransmitTicks = 4

// A snapshot sent to a successor may go unacknowledged for
// snapshotRetryTicks, plus a tick per snapshotBytesPerTick of its size,
// before another is sent: time to copy and install a large state at 10
// MB/s and more, and not much longer, since a lost one (a reset stream) is
// waited out.
const (
	snapshotRetryTicks   = 20
	snapshotBytesPerTick = 512 << 10
)

// maxHeldBytes bounds the committed entries a Sent list keeps for a
// successor being brought up by a snapshot (chainState.holding). A
// successor that falls further behind than this gets the whole state
// again rather than the node holding an unbounded log for it.
const maxHeldBytes = 128 << 20

// defaultDetectTicks is how many ticks a predecessor waits for its
// successor (silent, or behind and not progressing) before it suspects it:
// 20 ticks of 50 ms, one second, unless the Node sets its own
// (CoreConfig.DetectTicks, from NodeConfig.DetectTimeout).
const defaultDetectTicks = 20

// craqReadTicks is how long a CRAQ read of a dirty key may wait for the
// tail's version answer before it is refused (definite: a read has no
// effect), so its client tries another member instead of waiting out its
// attempt timeout behind a tail that does not answer.
const craqReadTicks = 20

// maxCraqReads bounds the CRAQ reads of one chain waiting at a node for a
// version answer; past it a dirty read is refused at once.
const maxCraqReads = 4096

// Reply answers one client request, matched by the token the Node gave it.
type Reply struct {
	Token   uint64
	Status  pb.Status
	Epoch   uint64 // the node's epoch for the chain, so a client can refresh
	Swapped bool   // cas
	Found   bool   // read
	Value   string // read
	Err     string
	// Durable says the reply depends on this node's own pending Persist: a
	// chain of one, where the head is also the tail that commits, and reads
	// there, which may see writes only this node holds. Other replies
	// report a commit at the tail (durable there), a read at a tail whose
	// predecessor still holds, durably, what the tail has not acknowledged,
	// or a refusal, and may be given before this node's fsync completes.
	Durable bool
}

// Persist is one durable change of a chain's state: entries to append to
// its log, a snapshot that replaces everything before it, or a wipe of a
// chain the node no longer belongs to. The Node applies them in order.
type Persist struct {
	Chain    int
	Entries  []*pb.Entry
	Snapshot *pb.Snapshot
	Wipe     bool
	// Compact: Snapshot is a compaction of the chain's own log, not a
	// state from elsewhere; the chain's history goes on from it, so
	// Storage keeps writing the chain's entries while it is written.
	Compact bool
}

// ChainEpoch names a chain at an epoch.
type ChainEpoch struct {
	Chain int
	Epoch uint64
}

// Ready is the Core's output. The Node handles it in order: persist (fsync)
// everything in Persist, then send Messages, then give Replies and report
// Synced, then call Advance.
type Ready struct {
	Persist  []Persist
	Messages []*pb.Message
	Replies  []Reply
	// Synced lists chains where this node, joining behind the tail or
	// promoted to tail behind a predecessor, has caught up in the current
	// epoch: the coordinator tells the master, which makes a joiner the
	// tail, and lets a tail's last predecessor go.
	Synced []ChainEpoch
	// Deposed lists chains where this node adopted a configuration that
	// names it deposed (Config.Deposed): from now on it serves nothing of
	// the older epoch, and the coordinator tells the master so, which lets
	// the new tail commit and serve.
	Deposed []ChainEpoch
	// Suspects, when SuspectsChanged, is the sorted set of peers this node
	// now suspects on the data path (a successor silent, or behind and not
	// progressing, for the detection time), over all its chains; the
	// coordinator publishes it for the master.
	Suspects        []uint64
	SuspectsChanged bool
}

func (rd Ready) empty() bool {
	return len(rd.Persist) == 0 && len(rd.Messages) == 0 && len(rd.Replies) == 0 && len(rd.Synced) == 0 &&
		len(rd.Deposed) == 0 && !rd.SuspectsChanged
}

// CoreConfig configures a Core. Times are in ticks: the Core has no clock.
type CoreConfig struct {
	ID uint64
	// Chains is the number of chains of the store (Placement.Chains): the
	// Core keeps a state for each, member or not.
	Chains int
	// SnapshotEvery is how many entries a chain may add to the log before
	// the Core snapshots it (default 10,000), once they hold as many bytes
	// as the state (see snapshotEvery).
	SnapshotEvery int
	// DetectTicks is the failure-detection time: how long a successor may
	// stay silent, or behind without progress, before this node suspects it
	// (default 20; at least retransmitTicks+1).
	DetectTicks int
	// Bug is a seeded bug (see bugs.go); empty for a correct node.
	Bug string
	// ReadAny: this node answers reads as any member (ReadAny), not only
	// as the tail (Placement.ReadAny). Off, a member that is not the tail
	// refuses them: its master would not depose it when it is removed
	// while live, so it could answer a stale read.
	ReadAny bool
}

func (c *CoreConfig) setDefaults() {
	if c.SnapshotEvery == 0 {
		c.SnapshotEvery = snapshotEvery
	}
	if c.DetectTicks == 0 {
		c.DetectTicks = defaultDetectTicks
	}
	c.DetectTicks = max(c.DetectTicks, retransmitTicks+1)
}

// Recovered is the durable state a Core restarts from (see OpenStorage):
// per chain, its newest snapshot and the log entries after it.
type Recovered struct {
	Chains []RecoveredChain
}

// RecoveredChain is one chain's part of Recovered.
type RecoveredChain struct {
	Snapshot *pb.Snapshot
	Entries  []*pb.Entry
}

// Core is one node's chain-replication state machine for every chain it may
// belong to. It is deterministic: no goroutines, clock or I/O. Exactly one
// goroutine drives it (Node.run, or a test's simulated network).
type Core struct {
	cfg  CoreConfig
	bugs bugs // seeded bugs, all false unless CoreConfig.Bug names one
	id   uint64
	// suspects is the suspect set last put in a Ready.
	suspects []uint64
	session  bool
	chains   []*chainState
	rd       Ready
	// now counts ticks: the age of waiting CRAQ reads.
	now uint64
	// lagging: this node's own output is held back (SetLagging).
	lagging bool
}

type waiter struct {
	token   uint64
	swapped bool
}

// chainState is one chain at this node. Its Hist is the applied state plus
// lastSeq; log holds the entries above committed, which this node may still
// have to resend to its successor (the paper's Sent list).
type chainState struct {
	id  int
	cfg Config

	data    map[string]string
	dedup   map[uint64]*pb.DedupRecord
	lastSeq uint64
	// committed is the highest sequence known to have reached the tail. Never
	// above lastSeq.
	committed uint64
	// log is the Sent list: seq committed+1 .. lastSeq, ascending, and
	// below committed what holding keeps. logBytes is its approximate size
	// (entrySize).
	log      []*pb.Entry
	logBytes int

	// Position in the current configuration.
	member, joiner bool
	pred, succ     uint64 // 0 when none
	succJoiner     bool
	// synced latches, once per epoch, when this node has received from its
	// predecessor everything the predecessor held when it sent a message in
	// this epoch, and the predecessor was synced itself then (the head is,
	// by definition): so a synced node holds everything committed before
	// the epoch began, wherever the old tail now sits. A tail serves reads
	// only once synced, and a joiner reports itself caught up only once
	// synced.
	synced       bool
	syncReported bool

	succKnown  bool   // heard the successor's ack in this epoch
	succMatch  uint64 // successor's last sequence as it last reported
	succSynced bool   // the successor's last ack said it was synced
	next       uint64 // next sequence to send to the successor
	stallTicks int
	// snapOut is the last sequence of the snapshot sent to the successor
	// and not yet acknowledged (0: none), snapAt the tick it left.
	// While it travels, what the successor lacks is what follows it: the
	// link is FIFO, so its acks, which still show the old position until
	// it is installed, ask for nothing new. Without this every ack (one a
	// tick) drew another copy of the whole state, and a joiner of a store
	// holding megabytes never caught up.
	snapOut   uint64
	snapAt    uint64
	snapRetry uint64 // ticks after snapAt when another copy may go
	// holding: a snapshot went to the successor in this epoch, so the Sent
	// list keeps, past committed, every entry after what the successor is
	// known to hold (the snapshot in flight, then its acks). Writes go on
	// while a large state travels and installs, and the tail commits them
	// at once; trimmed, they were gone when the successor's ack showed the
	// snapshot installed, and it got the whole state again, three or four
	// times per rejoin. Kept, the rejoin ends with appends. Bounded by
	// maxHeldBytes; ends with the epoch.
	holding  bool
	snapWhy  string // see Status.SnapWhy
	needAck  bool
	needSend bool // send an append to the successor even if empty

	// Failure detection of the successor (a member, not a joiner: a
	// joiner blocks nothing). succSilent counts ticks since the last
	// message from it in this epoch; succBehind counts ticks it has been
	// behind (lacking entries, or unsynced behind a synced node) without
	// progress. Either reaching detectTicks makes it a suspect. Both
	// directions of a cut show here: a successor that cannot send is
	// silent, one that cannot receive acks without progress.
	succSilent, succBehind int

	waiting map[uint64][]waiter // head only: client writes by sequence

	// Since the last snapshot: entries persisted, their bytes
	// (entrySize), and whether Storage asked for one (Compact).
	sinceSnap      int
	sinceSnapBytes int
	compactAsked   bool
	// stateBytes approximates the state's size, keys and values: what a
	// snapshot of it writes.
	stateBytes int

	// CRAQ bookkeeping (see doc.go, "CRAQ reads"). data holds each key's
	// newest version; dirty holds, for every key written above committed,
	// its clean version and the newer (dirty) ones in sequence order, the
	// version number being the entry's sequence. A key absent from dirty
	// is clean: its newest version is at or below committed. The ack that
	// raises committed (commit) cleans versions; nothing else does.
	dirty map[string]*versions
	// unsure is the last sequence of state this node holds without
	// per-key versions (a snapshot installed from the predecessor or
	// restored from disk, which may hold writes the tail has not
	// applied): until committed reaches it no key is known clean.
	unsure uint64
	// craqReads wait for the tail's answer to a version query. Each is
	// tagged with the query that will cover it: one sent after the read
	// arrived, so that the tail's answer is given within the read.
	craqReads  []craqRead
	queryNext  uint64 // the next version query's number (from 1)
	queryOut   uint64 // the query in flight, 0 when none
	queryTicks int    // ticks the query in flight has waited
}

// versions are one key's clean version and its dirty ones at a node.
type versions struct {
	clean      string
	cleanFound bool
	dirty      []version // ascending sequence
}

type version struct {
	seq   uint64
	value string
}

// craqRead is a read of a dirty key waiting for the tail's version.
type craqRead struct {
	token uint64
	key   string
	query uint64 // the first query whose answer may serve it
	born  uint64 // Core.now when it arrived
}

// NewCore builds the Core of node cfg.ID over cfg.Chains chains from
// recovered state (nil for a fresh node).
func NewCore(cfg CoreConfig, rec *Recovered) (*Core, error) {
	cfg.setDefaults()
	if cfg.ID == 0 {
		return nil, errors.New("chain: node id 0 is reserved for 'no node'")
	}
	if cfg.Chains < 1 {
		return nil, fmt.Errorf("chain: %d chains (want at least 1)", cfg.Chains)
	}
	planted, err := parseBugs(cfg.Bug)
	if err != nil {
		return nil, err
	}
	c := &Core{cfg: cfg, bugs: planted, id: cfg.ID, chains: make([]*chainState, cfg.Chains)}
	for i := range c.chains {
		cs := &chainState{id: i, queryNext: 1}
		cs.reset()
		if rec != nil && i < len(rec.Chains) {
			cs.restore(rec.Chains[i])
		}
		c.chains[i] = cs
	}
	return c, nil
}

func (cs *chainState) reset() {
	cs.data = map[string]string{}
	cs.dedup = map[uint64]*pb.DedupRecord{}
	cs.lastSeq, cs.committed, cs.log, cs.logBytes = 0, 0, nil, 0
	cs.waiting = map[uint64][]waiter{}
	cs.snapshotted()
	cs.stateBytes = 0
	cs.dirty, cs.unsure = map[string]*versions{}, 0
}

// snapshotted starts the counts toward the next snapshot over.
func (cs *chainState) snapshotted() {
	cs.sinceSnap, cs.sinceSnapBytes, cs.compactAsked = 0, 0, false
}

// due reports whether the chain's state should be snapshotted: see
// snapshotEvery.
func (cs *chainState) due(every int) bool {
	return cs.compactAsked || (cs.sinceSnap >= every && cs.sinceSnapBytes >= cs.stateBytes)
}

func (cs *chainState) restore(r RecoveredChain) {
	if r.Snapshot != nil {
		cs.install(r.Snapshot)
	}
	cs.sinceSnap = len(r.Entries)
	for _, e := range r.Entries {
		cs.sinceSnapBytes += entrySize(e)
		if e.Seq <= cs.lastSeq {
			continue
		}
		if e.Seq != cs.lastSeq+1 {
			panic(fmt.Sprintf("chain %d: restored log jumps from %d to %d", cs.id, cs.lastSeq, e.Seq))
		}
		cs.apply(e)
	}
}

func (cs *chainState) install(s *pb.Snapshot) {
	cs.data = make(map[string]string, len(s.Data))
	cs.stateBytes = 0
	for k, v := range s.Data {
		cs.data[k] = v
		cs.stateBytes += len(k) + len(v)
	}
	cs.dedup = make(map[uint64]*pb.DedupRecord, len(s.Dedup))
	for _, d := range s.Dedup {
		cs.dedup[d.Client] = d
	}
	cs.lastSeq = s.LastSeq
	cs.log, cs.logBytes = nil, 0
	// The snapshot has no versions: which of its keys are dirty is
	// unknown until committed reaches its last sequence.
	cs.dirty, cs.unsure = map[string]*versions{}, s.LastSeq
	// The snapshot may hold entries the tail has not applied, so committed
	// does not move up; nothing below the snapshot is resendable any more,
	// and a successor that needs it gets this snapshot in turn.
	if cs.committed > cs.lastSeq {
		cs.committed = cs.lastSeq
	}
}

func (cs *chainState) snapshot() *pb.Snapshot {
	s := &pb.Snapshot{LastSeq: cs.lastSeq, Data: make(map[string]string, len(cs.data))}
	for k, v := range cs.data {
		s.Data[k] = v
	}
	clients := make([]uint64, 0, len(cs.dedup))
	for c := range cs.dedup {
		clients = append(clients, c)
	}
	sort.Slice(clients, func(i, j int) bool { return clients[i] < clients[j] })
	for _, c := range clients {
		d := cs.dedup[c]
		s.Dedup = append(s.Dedup, &pb.DedupRecord{Client: d.Client, ClientSeq: d.ClientSeq, Seq: d.Seq, Swapped: d.Swapped})
	}
	return s
}

// apply adds the next entry to Hist: the state machine step, the dedup
// record, and the Sent list.
func (cs *chainState) apply(e *pb.Entry) bool {
	if e.Seq != cs.lastSeq+1 {
		panic(fmt.Sprintf("chain %d: applying seq %d after %d", cs.id, e.Seq, cs.lastSeq))
	}
	u := e.Update
	prev, had := cs.data[u.Key]
	swapped := false
	switch u.Op {
	case pb.Op_OP_PUT:
		cs.data[u.Key] = u.Value
		swapped = true
	case pb.Op_OP_APPEND:
		cs.data[u.Key] += u.Value
		swapped = true
	case pb.Op_OP_CAS:
		if cur, ok := cs.data[u.Key]; ok && cur == u.Expect {
			cs.data[u.Key] = u.Value
			swapped = true
		}
	default:
		panic(fmt.Sprintf("chain %d: entry %d has unknown op %v", cs.id, e.Seq, u.Op))
	}
	if swapped {
		cs.stateBytes += len(cs.data[u.Key]) - len(prev)
		if !had {
			cs.stateBytes += len(u.Key)
		}
		// A new version of the key, dirty until the tail's ack covers it
		// (at the tail, the commit that follows cleans it at once).
		v := cs.dirty[u.Key]
		if v == nil {
			v = &versions{clean: prev, cleanFound: had}
			cs.dirty[u.Key] = v
		}
		v.dirty = append(v.dirty, version{seq: e.Seq, value: cs.data[u.Key]})
	}
	cs.dedup[u.Client] = &pb.DedupRecord{Client: u.Client, ClientSeq: u.ClientSeq, Seq: e.Seq, Swapped: swapped}
	cs.lastSeq = e.Seq
	cs.log = append(cs.log, e)
	cs.logBytes += entrySize(e)
	return swapped
}

// entrySize approximates an entry's memory for maxHeldBytes.
func entrySize(e *pb.Entry) int {
	return len(e.Update.Key) + len(e.Update.Value) + len(e.Update.Expect) + 64
}

// trim drops from the Sent list what no successor can need: entries up to
// committed, except those holding keeps for a successor that is catching
// up from a snapshot.
func (cs *chainState) trim() {
	upTo := cs.committed
	if cs.holding {
		if cs.logBytes > maxHeldBytes {
			cs.holding = false
		} else {
			upTo = min(upTo, max(cs.snapOut, cs.succMatch))
		}
	}
	i := 0
	for i < len(cs.log) && cs.log[i].Seq <= upTo {
		cs.logBytes -= entrySize(cs.log[i])
		i++
	}
	cs.log = cs.log[i:]
}

// clean marks key's versions up to upTo clean: the newest of them becomes
// the clean version, and a key with no dirty version left leaves dirty.
func (cs *chainState) clean(key string, upTo uint64) {
	v := cs.dirty[key]
	if v == nil {
		return
	}
	n := 0
	for n < len(v.dirty) && v.dirty[n].seq <= upTo {
		n++
	}
	if n == 0 {
		return
	}
	if n == len(v.dirty) {
		delete(cs.dirty, key)
		return
	}
	v.clean, v.cleanFound = v.dirty[n-1].value, true
	v.dirty = v.dirty[n:]
}

// knownClean reports whether key's newest version here is committed: no
// dirty version of it, and no state of unknown cleanliness.
func (cs *chainState) knownClean(key string) bool {
	return cs.dirty[key] == nil && cs.committed >= cs.unsure
}

// valueAt is key's value at version q: the newest version at or below q.
// The tail answered q within the read; committed may have passed it since
// (versions below committed are dropped), and that is as good: the tail
// committed it after answering and before this node learned it, so also
// within the read. ok is false when this node cannot tell: q beyond what
// it holds, or inside state it holds without versions.
func (cs *chainState) valueAt(key string, q uint64) (value string, found, ok bool) {
	q = max(q, cs.committed)
	if q > cs.lastSeq || q < cs.unsure {
		return "", false, false
	}
	v := cs.dirty[key]
	if v == nil {
		value, found = cs.data[key]
		return value, found, true
	}
	for i := len(v.dirty) - 1; i >= 0; i-- {
		if v.dirty[i].seq <= q {
			return v.dirty[i].value, true, true
		}
	}
	return v.clean, v.cleanFound, true
}

// isTail reports whether this node is the chain's tail: the last member.
func (cs *chainState) isTail() bool { return cs.member && cs.succ == 0 || cs.member && cs.succJoiner }

func (cs *chainState) isHead() bool { return cs.member && cs.pred == 0 }

// fenced reports whether this node, as the chain's tail, must neither
// commit nor serve: the configuration names a deposed member (removed while
// its session lived, the tail of an older epoch) that has not yet reported
// adopting the epoch that removed it, and may still answer reads at the
// old epoch. Committing or reading here first could show a write that a
// later read at the old tail lacks.
func (cs *chainState) fenced() bool { return cs.isTail() && len(cs.cfg.Deposed) > 0 }

// IsTail reports whether this node is the tail of chain i.
func (c *Core) IsTail(i uint32) bool {
	cs := c.chain(i)
	return cs != nil && cs.isTail()
}

// SetSession tells the Core whether the node holds a live ZooKeeper
// session. Without one it serves nothing and drops every message: the master
// may already have replaced it. Writes waiting at a head get an unknown
// outcome, since they may still commit.
func (c *Core) SetSession(ok bool) {
	if c.session == ok {
		return
	}
	c.session = ok
	for _, cs := range c.chains {
		// Ticks stop and messages are dropped without a session: the
		// detection starts over, so a node back from a lost session does
		// not suspect peers it was not listening to.
		cs.succSilent, cs.succBehind = 0, 0
		if !ok {
			c.failWaiters(cs, "node lost its ZooKeeper session")
			c.failCraqReads(cs, "node lost its ZooKeeper session")
		}
	}
	c.updateSuspects()
}

// SetConfig moves a chain to a newer configuration. Older or equal epochs are
// ignored: configurations only move forward.
func (c *Core) SetConfig(cfg Config) {
	if cfg.Chain < 0 || cfg.Chain >= len(c.chains) {
		panic(fmt.Sprintf("chain: config for chain %d, node has %d chains", cfg.Chain, len(c.chains)))
	}
	cs := c.chains[cfg.Chain]
	if cfg.Epoch <= cs.cfg.Epoch {
		return
	}
	defer c.updateSuspects()
	// Reads waiting for a version answer were admitted at the old epoch;
	// the answer would come at it, and this node may be wiped below.
	c.failCraqReads(cs, "chain reconfigured while the read waited for the tail's version")
	cs.queryOut, cs.queryTicks = 0, 0
	wasHead, wasJoiner, wasSucc := cs.isHead(), cs.joiner, cs.succ
	cs.cfg = cfg
	idx := cfg.index(c.id)
	cs.member = idx >= 0
	cs.joiner = !cs.member && cfg.Joining != nil && cfg.Joining.ID == c.id
	cs.pred, cs.succ, cs.succJoiner = 0, 0, false
	switch {
	case cs.member:
		if idx > 0 {
			cs.pred = cfg.Members[idx-1].ID
		}
		if idx < len(cfg.Members)-1 {
			cs.succ = cfg.Members[idx+1].ID
		} else if cfg.Joining != nil {
			cs.succ, cs.succJoiner = cfg.Joining.ID, true
		}
	case cs.joiner:
		if len(cfg.Members) == 0 {
			panic(fmt.Sprintf("chain %d epoch %d: joiner %d with no members", cfg.Chain, cfg.Epoch, c.id))
		}
		cs.pred = cfg.Tail().ID
	}
	cs.synced = cs.pred == 0
	cs.syncReported = false
	cs.succKnown, cs.succMatch, cs.succSynced, cs.next, cs.stallTicks = false, 0, false, 0, 0
	cs.snapOut = 0
	// A joiner appended as the tail is still a few writes behind: the
	// Sent list goes on holding for it (its acks of this epoch move what
	// is held), or the entries this node committed as the tail would be
	// gone and it would get the whole state again.
	cs.holding = cs.holding && cs.succ != 0 && cs.succ == wasSucc
	cs.trim()
	cs.succSilent, cs.succBehind = 0, 0
	cs.needAck, cs.needSend = cs.pred != 0, false
	if cfg.deposed(c.id) {
		// Adopted: from here on this node answers nothing at an older
		// epoch. Reported at once (it depends on nothing on disk).
		c.rd.Deposed = append(c.rd.Deposed, ChainEpoch{Chain: cfg.Chain, Epoch: cfg.Epoch})
	}

	if wasHead && !cs.isHead() {
		c.failWaiters(cs, "node is no longer the head")
	}
	if !cs.member && (!cs.joiner || !wasJoiner) {
		// Outside the chain, or joining it afresh (perhaps straight from an
		// old membership it never saw end), this node's history may fork
		// from the chain's (an old head's unforwarded writes): it drops it
		// and copies the tail. A joiner that stays joiner across epochs
		// keeps what it copied: it came from tails, a prefix of any later
		// tail's history.
		if cs.lastSeq != 0 || len(cs.data) != 0 {
			cs.reset()
			c.rd.Persist = append(c.rd.Persist, Persist{Chain: cs.id, Wipe: true})
		}
		if !cs.joiner {
			return
		}
	}
	if cs.isTail() && cs.lastSeq > cs.committed {
		cs.commit(c, cs.lastSeq)
	}
}

func (c *Core) failWaiters(cs *chainState, why string) {
	seqs := make([]uint64, 0, len(cs.waiting))
	for s := range cs.waiting {
		seqs = append(seqs, s)
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	for _, s := range seqs {
		for _, w := range cs.waiting[s] {
			c.rd.Replies = append(c.rd.Replies, Reply{Token: w.token, Status: pb.Status_STATUS_UNKNOWN, Epoch: cs.cfg.Epoch, Err: why})
		}
	}
	cs.waiting = map[uint64][]waiter{}
}

// commit raises committed, trims the Sent list and answers the head's
// waiting writes.
func (cs *chainState) commit(c *Core, upTo uint64) {
	if cs.fenced() {
		return // a deposed tail may still serve reads: see fenced
	}
	if upTo > cs.lastSeq {
		upTo = cs.lastSeq
	}
	if upTo <= cs.committed {
		return
	}
	if len(cs.log) > 0 {
		// The Sent list holds every entry above committed (and, while
		// holding, some below it, already cleaned).
		first := cs.log[0].Seq
		for seq := max(cs.committed+1, first); seq <= upTo; seq++ {
			cs.clean(cs.log[seq-first].Update.Key, upTo)
		}
	}
	cs.committed = upTo
	cs.trim()
	for s, ws := range cs.waiting {
		if s > upTo {
			continue
		}
		for _, w := range ws {
			c.rd.Replies = append(c.rd.Replies, Reply{Token: w.token, Status: pb.Status_STATUS_OK, Epoch: cs.cfg.Epoch, Swapped: w.swapped, Durable: cs.isTail()})
		}
		delete(cs.waiting, s)
	}
	cs.needAck = cs.pred != 0
}

func (c *Core) reject(token uint64, cs *chainState, st pb.Status, why string) {
	c.rd.Replies = append(c.rd.Replies, Reply{Token: token, Status: st, Epoch: cs.cfg.Epoch, Err: why})
}

func (c *Core) chain(i uint32) *chainState {
	if int(i) >= len(c.chains) {
		return nil
	}
	return c.chains[i]
}

// Propose hands a client write to the head. The reply comes in a later
// Ready: OK once the tail has applied it, or a status saying why not.
func (c *Core) Propose(token uint64, chain uint32, epoch uint64, u *pb.Update) {
	cs := c.chain(chain)
	switch {
	case cs == nil:
		c.rd.Replies = append(c.rd.Replies, Reply{Token: token, Status: pb.Status_STATUS_UNAVAILABLE, Err: fmt.Sprintf("no chain %d", chain)})
		return
	case !c.session:
		c.reject(token, cs, pb.Status_STATUS_UNAVAILABLE, "no ZooKeeper session")
		return
	case epoch != cs.cfg.Epoch:
		c.reject(token, cs, pb.Status_STATUS_WRONG_EPOCH, fmt.Sprintf("request epoch %d, node epoch %d", epoch, cs.cfg.Epoch))
		return
	case !cs.isHead():
		c.reject(token, cs, pb.Status_STATUS_NOT_HEAD, "not the head")
		return
	case u.Client == 0 || u.ClientSeq == 0 || u.Op == pb.Op_OP_UNSPECIFIED:
		c.reject(token, cs, pb.Status_STATUS_UNAVAILABLE, "malformed update")
		return
	}
	if d, ok := cs.dedup[u.Client]; ok && u.ClientSeq <= d.ClientSeq {
		if u.ClientSeq < d.ClientSeq {
			// The client moved on; this is a late copy of an old request whose
			// outcome is no longer recorded.
			c.reject(token, cs, pb.Status_STATUS_UNKNOWN, "request superseded by a later one of the same client")
			return
		}
		if d.Seq <= cs.committed {
			c.rd.Replies = append(c.rd.Replies, Reply{Token: token, Status: pb.Status_STATUS_OK, Epoch: cs.cfg.Epoch, Swapped: d.Swapped, Durable: cs.isTail()})
		} else {
			cs.waiting[d.Seq] = append(cs.waiting[d.Seq], waiter{token: token, swapped: d.Swapped})
		}
		return
	}
	e := &pb.Entry{Seq: cs.lastSeq + 1, Update: u}
	swapped := cs.apply(e)
	c.persistEntry(cs, e)
	if c.bugs.earlyReply {
		c.rd.Replies = append(c.rd.Replies, Reply{Token: token, Status: pb.Status_STATUS_OK, Epoch: cs.cfg.Epoch, Swapped: swapped})
	} else {
		cs.waiting[e.Seq] = append(cs.waiting[e.Seq], waiter{token: token, swapped: swapped})
	}
	if cs.isTail() {
		cs.commit(c, cs.lastSeq)
	}
	cs.needSend = true
}

func (c *Core) persistEntry(cs *chainState, e *pb.Entry) {
	cs.sinceSnap++
	cs.sinceSnapBytes += entrySize(e)
	if n := len(c.rd.Persist); n > 0 && c.rd.Persist[n-1].Chain == cs.id && c.rd.Persist[n-1].Snapshot == nil && !c.rd.Persist[n-1].Wipe {
		c.rd.Persist[n-1].Entries = append(c.rd.Persist[n-1].Entries, e)
		return
	}
	c.rd.Persist = append(c.rd.Persist, Persist{Chain: cs.id, Entries: []*pb.Entry{e}})
}

// Read answers a query at the tail from the tail's state, which is the
// chain's committed history.
func (c *Core) Read(token uint64, chain uint32, epoch uint64, key string) {
	cs := c.chain(chain)
	switch {
	case cs == nil:
		c.rd.Replies = append(c.rd.Replies, Reply{Token: token, Status: pb.Status_STATUS_UNAVAILABLE, Err: fmt.Sprintf("no chain %d", chain)})
	case !c.session && !c.bugs.staleTail: // SEEDED BUG (BugStaleTail): serve without a session
		c.reject(token, cs, pb.Status_STATUS_UNAVAILABLE, "no ZooKeeper session")
	case epoch != cs.cfg.Epoch:
		c.reject(token, cs, pb.Status_STATUS_WRONG_EPOCH, fmt.Sprintf("request epoch %d, node epoch %d", epoch, cs.cfg.Epoch))
	case !cs.isTail() && !(c.bugs.headRead && cs.isHead()): // SEEDED BUG (BugHeadRead): the head answers reads
		c.reject(token, cs, pb.Status_STATUS_NOT_TAIL, "not the tail")
	case !cs.synced:
		c.reject(token, cs, pb.Status_STATUS_UNAVAILABLE, "new tail not yet synced with its predecessor")
	case cs.fenced():
		c.reject(token, cs, pb.Status_STATUS_UNAVAILABLE, "new tail waits for the deposed tail to step down")
	default:
		v, ok := cs.data[key]
		// A tail with no predecessor (a chain of one) is the only holder of
		// what it applied: until its own fsync, nobody else has it, so the
		// reply waits for this node's pending Persist like a write's does.
		c.rd.Replies = append(c.rd.Replies, Reply{Token: token, Status: pb.Status_STATUS_OK, Epoch: cs.cfg.Epoch, Found: ok, Value: v,
			Durable: cs.isTail() && cs.pred == 0})
	}
}

// ReadAny answers a read at any member of the chain: CRAQ's apportioned
// queries (Terrace & Freedman 2009; `--read-mode craq`). The tail answers
// as Read does. Another member answers a clean key from its own state,
// and for a dirty key asks the tail for its committed sequence (a version
// query, batched: one in flight per chain) and answers with the key's
// version at that sequence, which it holds. doc.go argues why both are
// linearizable.
func (c *Core) ReadAny(token uint64, chain uint32, epoch uint64, key string) {
	cs := c.chain(chain)
	switch {
	case cs == nil:
		c.rd.Replies = append(c.rd.Replies, Reply{Token: token, Status: pb.Status_STATUS_UNAVAILABLE, Err: fmt.Sprintf("no chain %d", chain)})
	case !c.session:
		c.reject(token, cs, pb.Status_STATUS_UNAVAILABLE, "no ZooKeeper session")
	case epoch != cs.cfg.Epoch:
		c.reject(token, cs, pb.Status_STATUS_WRONG_EPOCH, fmt.Sprintf("request epoch %d, node epoch %d", epoch, cs.cfg.Epoch))
	case cs.isTail():
		c.Read(token, chain, epoch, key)
	case !cs.member:
		c.reject(token, cs, pb.Status_STATUS_UNAVAILABLE, "not a member of the chain")
	case !c.cfg.ReadAny:
		c.reject(token, cs, pb.Status_STATUS_UNAVAILABLE, "members answer reads only in a cluster started for CRAQ reads (--read-mode craq)")
	case !cs.synced:
		// An unsynced member may lack writes an older tail committed (it
		// follows a node that had not caught up when the chain changed).
		c.reject(token, cs, pb.Status_STATUS_UNAVAILABLE, "member not yet synced with its predecessor")
	case c.bugs.craqDirtyRead || cs.knownClean(key):
		// SEEDED BUG (BugCraqDirtyRead): the newest version, dirty or not.
		v, ok := cs.data[key]
		c.rd.Replies = append(c.rd.Replies, Reply{Token: token, Status: pb.Status_STATUS_OK, Epoch: cs.cfg.Epoch, Found: ok, Value: v})
	case len(cs.craqReads) >= maxCraqReads:
		c.reject(token, cs, pb.Status_STATUS_UNAVAILABLE, "too many reads waiting for the tail's version")
	default:
		cs.craqReads = append(cs.craqReads, craqRead{token: token, key: key, query: cs.queryNext, born: c.now})
	}
}

// failCraqReads refuses every read waiting for a version answer. A read
// has no effect, so the refusal is definite and the client tries again.
func (c *Core) failCraqReads(cs *chainState, why string) {
	for _, r := range cs.craqReads {
		c.reject(r.token, cs, pb.Status_STATUS_UNAVAILABLE, why)
	}
	cs.craqReads = nil
}

// answerVersion is the tail's side of a version query: its committed
// sequence, if it may serve reads now (synced, not fenced). The Node sends
// the answer only while its lease holds, as it does a read reply.
func (c *Core) answerVersion(cs *chainState, m *pb.Message) {
	ok := cs.isTail() && cs.synced && !cs.fenced()
	c.rd.Messages = append(c.rd.Messages, &pb.Message{Type: pb.MessageType_MSG_VERSION, Chain: uint32(cs.id), Epoch: cs.cfg.Epoch,
		From: c.id, To: m.From, Query: m.Query, Committed: cs.committed, Refused: !ok})
}

// stepVersion serves the reads the tail's answer covers: those that
// arrived before the query was sent.
func (c *Core) stepVersion(cs *chainState, m *pb.Message) {
	if m.Query == 0 || m.Query >= cs.queryNext {
		return // never asked
	}
	if m.Query == cs.queryOut {
		cs.queryOut, cs.queryTicks = 0, 0
	}
	keep := cs.craqReads[:0]
	for _, r := range cs.craqReads {
		if r.query > m.Query {
			keep = append(keep, r)
			continue
		}
		if m.Refused {
			c.reject(r.token, cs, pb.Status_STATUS_UNAVAILABLE, "the tail cannot vouch for its committed version now")
			continue
		}
		v, found, ok := cs.valueAt(r.key, m.Committed)
		if !ok {
			c.reject(r.token, cs, pb.Status_STATUS_UNAVAILABLE, "the tail's committed version is not one this member can serve")
			continue
		}
		c.rd.Replies = append(c.rd.Replies, Reply{Token: r.token, Status: pb.Status_STATUS_OK, Epoch: cs.cfg.Epoch, Found: found, Value: v})
	}
	clear(cs.craqReads[len(keep):])
	cs.craqReads = keep
}

// Step handles a message from another chain node. Messages of another epoch,
// from a node that is not this node's neighbour, or arriving without a
// session are dropped without an error: they are the protocol's normal
// leftovers, and it recovers by retransmission. The error is for a message
// that could never be this node's (another addressee, no such chain): a
// misrouted link, which the Node logs.
func (c *Core) Step(m *pb.Message) error {
	cs := c.chain(m.Chain)
	switch {
	case m.To != c.id:
		return fmt.Errorf("chain: message to node %d reached node %d", m.To, c.id)
	case cs == nil:
		return fmt.Errorf("chain: message for chain %d (node has %d)", m.Chain, len(c.chains))
	case !c.session || m.Epoch != cs.cfg.Epoch:
		return nil
	}
	switch m.Type {
	case pb.MessageType_MSG_APPEND, pb.MessageType_MSG_SNAPSHOT:
		if m.From == cs.pred && cs.pred != 0 {
			c.stepFromPred(cs, m)
		}
	case pb.MessageType_MSG_ACK:
		switch {
		case m.From != cs.succ || cs.succ == 0:
		case m.Lagging:
			// A heartbeat from a successor whose disk holds its acks
			// back: it is alive, and behind through no fault of the
			// link, so neither counts towards suspecting it.
			cs.succSilent, cs.succBehind = 0, 0
		default:
			c.stepFromSucc(cs, m)
		}
	case pb.MessageType_MSG_VERSION_QUERY:
		c.answerVersion(cs, m)
	case pb.MessageType_MSG_VERSION:
		if m.From == cs.cfg.Tail().ID {
			c.stepVersion(cs, m)
		}
	}
	return nil
}

func (c *Core) stepFromPred(cs *chainState, m *pb.Message) {
	if m.Type == pb.MessageType_MSG_SNAPSHOT {
		s := m.Snapshot
		if s == nil || s.LastSeq < cs.lastSeq {
			return // stale or ahead-of-us predecessor state is never installed
		}
		cs.install(s)
		cs.snapshotted()
		c.rd.Persist = append(c.rd.Persist, Persist{Chain: cs.id, Snapshot: s})
	}
	for _, e := range m.Entries {
		if e.Seq <= cs.lastSeq {
			continue // a resend we already hold
		}
		if e.Seq != cs.lastSeq+1 && c.bugs.noResend {
			// SEEDED BUG (BugNoResend): trust that nothing before e is
			// missing and skip the gap, as if it were committed (the Sent
			// list stays contiguous: it is emptied). The next flush
			// snapshots, so the durable log never holds the gap.
			cs.lastSeq, cs.committed, cs.log, cs.logBytes = e.Seq-1, max(cs.committed, e.Seq-1), nil, 0
			cs.dirty, cs.unsure = map[string]*versions{}, cs.lastSeq
			cs.compactAsked = true
		}
		if e.Seq != cs.lastSeq+1 {
			break // a gap: the predecessor resends once our ack shows it
		}
		cs.apply(e)
		c.persistEntry(cs, e)
	}
	cs.needAck = true
	if !cs.synced && m.Synced && m.Received <= cs.lastSeq {
		cs.synced = true
	}
	// A tail reports its catch-up too: until it has, the master keeps a
	// predecessor in the chain (ReconcileExcluding), since the tail may
	// lack writes an older tail committed.
	if (cs.joiner || cs.isTail()) && cs.synced && !cs.syncReported {
		cs.syncReported = true
		c.rd.Synced = append(c.rd.Synced, ChainEpoch{Chain: cs.id, Epoch: cs.cfg.Epoch})
	}
	switch {
	case cs.isTail():
		cs.commit(c, cs.lastSeq)
	case !cs.joiner:
		cs.commit(c, m.Committed)
	}
	cs.needSend = cs.needSend || cs.succKnown
}

func (c *Core) stepFromSucc(cs *chainState, m *pb.Message) {
	if !cs.succKnown || m.Received != cs.succMatch {
		cs.stallTicks = 0
	}
	cs.succSilent = 0
	if !cs.succKnown || m.Received > cs.succMatch || m.Synced && !cs.succSynced {
		cs.succBehind = 0
	}
	cs.succSynced = m.Synced
	if !cs.succKnown {
		cs.succKnown = true
		cs.next = m.Received + 1
		if c.bugs.noResend {
			// SEEDED BUG (BugNoResend): no Sent-list resend to a new
			// successor; only what comes next.
			cs.next = max(cs.next, cs.lastSeq+1)
		}
		cs.needSend = true
	}
	if m.Received > cs.lastSeq {
		panic(fmt.Sprintf("chain %d epoch %d: successor %d holds seq %d beyond predecessor %d's %d",
			cs.id, cs.cfg.Epoch, m.From, m.Received, c.id, cs.lastSeq))
	}
	cs.succMatch = m.Received
	if cs.snapOut != 0 && m.Received >= cs.snapOut {
		cs.snapOut = 0 // installed
	}
	if cs.holding {
		cs.trim()
	}
	if !m.Synced && cs.synced && cs.snapOut == 0 {
		// The successor waits to learn our last sequence, and holds only
		// what it says: the answer starts there (an append sent after a
		// lost one would not sync it and would be acked again, back and
		// forth, until the stall timer). An unsynced node's answer cannot
		// sync it, so it waits: becoming synced sends to the successor.
		if !c.bugs.noResend {
			// SEEDED BUG (BugNoResend): what the successor lacks is not
			// sent again.
			cs.next = min(cs.next, m.Received+1)
		}
		cs.needSend = true
	}
	if !cs.succJoiner {
		cs.commit(c, m.Committed)
	}
}

// Tick is the Core's clock: acks double as heartbeats that let a new
// predecessor find its successor's position, and a stalled successor gets a
// resend.
func (c *Core) Tick() {
	if !c.session {
		return
	}
	c.now++
	for _, cs := range c.chains {
		if cs.cfg.Epoch == 0 {
			continue
		}
		c.tickCraq(cs)
		if cs.pred != 0 {
			cs.needAck = true
		}
		if cs.succKnown && cs.succMatch < cs.lastSeq {
			cs.stallTicks++
			// While a snapshot is unacknowledged within its retry time,
			// what follows it was sent after it and is held behind it on
			// the link: resending it every few ticks, as the copy of a
			// large state takes seconds, would send it over and over.
			snapWait := cs.snapOut != 0 && c.now-cs.snapAt < cs.snapRetry
			if cs.stallTicks >= retransmitTicks && !snapWait {
				cs.stallTicks = 0
				cs.next = cs.succMatch + 1
				cs.needSend = true
			}
		}
		if cs.member && cs.succ != 0 && !cs.succJoiner {
			cs.succSilent++
			if cs.succKnown && (cs.succMatch < cs.lastSeq || cs.synced && !cs.succSynced) {
				if !c.lagging {
					cs.succBehind++
				}
			} else {
				cs.succBehind = 0
			}
		}
	}
	c.updateSuspects()
}

// SetLagging tells the Core whether the node's own output is held back
// (its persister behind by more than a couple of ticks: a long save, a
// chain waiting for a snapshot's write): a successor that lacks entries
// this node has not sent yet is not to blame, so while it lags, being
// behind does not count towards suspecting the successor (silence still
// does: acks do not wait for this node). Under the 1 GB preload's disk
// load, nodes whose saves took seconds suspected their successors and the
// master took healthy nodes out.
func (c *Core) SetLagging(lagging bool) { c.lagging = lagging }

// tickCraq asks again when a version query went unanswered (a dropped
// message: flush sends a new one, which covers every waiting read) and
// refuses reads that waited too long.
func (c *Core) tickCraq(cs *chainState) {
	if cs.queryOut != 0 {
		cs.queryTicks++
		if cs.queryTicks >= retransmitTicks {
			cs.queryOut, cs.queryTicks = 0, 0
		}
	}
	n := 0
	for n < len(cs.craqReads) && c.now-cs.craqReads[n].born >= craqReadTicks {
		c.reject(cs.craqReads[n].token, cs, pb.Status_STATUS_UNAVAILABLE, "no version answer from the tail")
		n++
	}
	if n > 0 {
		cs.craqReads = slices.Delete(cs.craqReads, 0, n)
	}
}

// suspect reports whether this node suspects its successor in cs.
func (c *Core) suspect(cs *chainState) bool {
	return cs.cfg.Epoch != 0 && cs.member && cs.succ != 0 && !cs.succJoiner &&
		(cs.succSilent >= c.cfg.DetectTicks || cs.succBehind >= c.cfg.DetectTicks)
}

// updateSuspects recomputes the suspect set and puts it in the Ready when
// it changed. A suspicion lasts while its cause does: a successor heard
// from again, or a new configuration without it, withdraws it.
func (c *Core) updateSuspects() {
	var out []uint64
	for _, cs := range c.chains {
		if c.session && c.suspect(cs) && !slices.Contains(out, cs.succ) {
			out = append(out, cs.succ)
		}
	}
	slices.Sort(out)
	if slices.Equal(out, c.suspects) {
		return
	}
	c.suspects = out
	c.rd.Suspects, c.rd.SuspectsChanged = slices.Clone(out), true
}

// Suspects is the set of peers this node suspects now, sorted.
func (c *Core) Suspects() []uint64 { return slices.Clone(c.suspects) }

// flush turns pending acks and sends into messages.
func (c *Core) flush() {
	if !c.session {
		return
	}
	for _, cs := range c.chains {
		if cs.due(c.cfg.SnapshotEvery) {
			// After this Ready's entries: the snapshot covers them all.
			cs.snapshotted()
			c.rd.Persist = append(c.rd.Persist, Persist{Chain: cs.id, Snapshot: cs.snapshot(), Compact: !c.bugs.noResend})
		}
		if cs.needAck && cs.pred != 0 {
			c.rd.Messages = append(c.rd.Messages, &pb.Message{
				Type: pb.MessageType_MSG_ACK, Chain: uint32(cs.id), Epoch: cs.cfg.Epoch, From: c.id, To: cs.pred,
				Received: cs.lastSeq, Committed: cs.committed, Synced: cs.synced,
			})
		}
		cs.needAck = false
		if cs.needSend && cs.succKnown && cs.succ != 0 {
			c.sendToSucc(cs)
		}
		cs.needSend = false
		if len(cs.craqReads) > 0 && cs.queryOut == 0 {
			c.sendVersionQuery(cs)
		}
	}
}

// sendVersionQuery asks the tail for its committed sequence on behalf of
// every waiting read: they all arrived before this query leaves.
func (c *Core) sendVersionQuery(cs *chainState) {
	tail := cs.cfg.Tail().ID
	if tail == 0 || tail == c.id {
		c.failCraqReads(cs, "no tail to ask")
		return
	}
	cs.queryOut, cs.queryTicks = cs.queryNext, 0
	cs.queryNext++
	c.rd.Messages = append(c.rd.Messages, &pb.Message{Type: pb.MessageType_MSG_VERSION_QUERY, Chain: uint32(cs.id), Epoch: cs.cfg.Epoch,
		From: c.id, To: tail, Query: cs.queryOut})
}

func (c *Core) sendToSucc(cs *chainState) {
	msg := func(t pb.MessageType) *pb.Message {
		return &pb.Message{Type: t, Chain: uint32(cs.id), Epoch: cs.cfg.Epoch, From: c.id, To: cs.succ,
			Received: cs.lastSeq, Committed: cs.committed, Synced: cs.synced}
	}
	// Nothing the successor acknowledged is sent again. next can lag
	// behind its acks (set while a snapshot travelled, say), and the Sent
	// list, which follows the acks while holding, no longer starts there:
	// the whole state went again to a successor one append short (seen at
	// 300 MB: next at the snapshot's end, the successor 500 entries on).
	cs.next = max(cs.next, cs.succMatch+1)
	trimmed := func() bool { return cs.next <= cs.lastSeq && (len(cs.log) == 0 || cs.next < cs.log[0].Seq) }
	if trimmed() && cs.snapOut != 0 && c.now-cs.snapAt < cs.snapRetry {
		// A snapshot is on its way (see snapOut): send what follows it,
		// if the Sent list still holds that, or nothing yet.
		cs.next = cs.snapOut + 1
		if trimmed() {
			return
		}
	}
	if trimmed() {
		// The successor lacks entries already trimmed from the Sent list (a
		// joining node): it gets the whole state instead.
		first := uint64(0)
		if len(cs.log) > 0 {
			first = cs.log[0].Seq
		}
		cs.snapWhy = fmt.Sprintf("next %d, successor at %d, Sent list from %d (%d entries, %d bytes), committed %d, holding %v, last snapshot %d at tick %d (retry %d), tick %d",
			cs.next, cs.succMatch, first, len(cs.log), cs.logBytes, cs.committed, cs.holding, cs.snapOut, cs.snapAt, cs.snapRetry, c.now)
		m := msg(pb.MessageType_MSG_SNAPSHOT)
		m.Snapshot = cs.snapshot()
		cs.next = cs.lastSeq + 1
		cs.snapOut, cs.snapAt, cs.holding = cs.lastSeq, c.now, true
		cs.trim()
		cs.snapRetry = uint64(snapshotRetryTicks + proto.Size(m.Snapshot)/snapshotBytesPerTick)
		c.rd.Messages = append(c.rd.Messages, m)
		return
	}
	if cs.next > cs.lastSeq {
		// Nothing new: an empty append still tells the successor our last
		// sequence, which is how a new successor learns it is synced.
		c.rd.Messages = append(c.rd.Messages, msg(pb.MessageType_MSG_APPEND))
		return
	}
	for cs.next <= cs.lastSeq {
		start := int(cs.next - cs.log[0].Seq)
		end := min(start+maxBatch, len(cs.log))
		m := msg(pb.MessageType_MSG_APPEND)
		m.Entries = cs.log[start:end:end]
		c.rd.Messages = append(c.rd.Messages, m)
		cs.next = cs.log[end-1].Seq + 1
	}
}

// Compact asks for a snapshot of chain i at the next Ready, if it has
// entries since its last one: Storage wants the chain's old log records
// dead (Storage.Pinning).
func (c *Core) Compact(i int) {
	if i < 0 || i >= len(c.chains) {
		return
	}
	if cs := c.chains[i]; cs.sinceSnap > 0 {
		cs.compactAsked = true
	}
}

// HasReady reports whether Ready would return anything.
func (c *Core) HasReady() bool {
	c.flush()
	return !c.rd.empty()
}

// Ready returns the pending output. The caller must handle it and then call
// Advance before calling Ready again.
func (c *Core) Ready() Ready {
	c.flush()
	return c.rd
}

// Advance acknowledges that the last Ready was handled.
func (c *Core) Advance() { c.rd = Ready{} }

// Status is a read-only view of one chain at this node, for tests and the
// harness's role targeting.
type Status struct {
	Chain     int
	Epoch     uint64
	Member    bool
	Joiner    bool
	Head      bool
	Tail      bool
	Synced    bool
	LastSeq   uint64
	Committed uint64
	SentLen   int
	// SnapWhy says why the chain's last whole-state copy went to the
	// successor: where the successor stood and what the Sent list held.
	SnapWhy string
}

// Status reports every chain at this node.
func (c *Core) Status() []Status {
	out := make([]Status, len(c.chains))
	for i, cs := range c.chains {
		out[i] = Status{Chain: i, Epoch: cs.cfg.Epoch, Member: cs.member, Joiner: cs.joiner, Head: cs.isHead(), Tail: cs.isTail(),
			Synced: cs.synced, LastSeq: cs.lastSeq, Committed: cs.committed, SentLen: len(cs.log),
			SnapWhy: cs.snapWhy}
	}
	return out
}

// Digest summarises this node's copy of a chain: kv.Digest of its state, and
// how many keys it holds.
func (c *Core) Digest(chain int) (Status, string, int) {
	cs := c.chains[chain]
	return c.Status()[chain], kv.Digest(cs.data), len(cs.data)
}

// Data returns a copy of a chain's applied state at this node (tests).
func (c *Core) Data(chain int) map[string]string {
	out := make(map[string]string, len(c.chains[chain].data))
	for k, v := range c.chains[chain].data {
		out[k] = v
	}
	return out
}
