package sim

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/chainraft/chainraft/kv"
	"github.com/chainraft/chainraft/raftkv"
	"github.com/chainraft/chainraft/raftkv/raftdriver"
	pb "github.com/chainraft/chainraft/raftkv/raftkvpb"
)

// raftCluster is the raft store in the simulated world: real raftkv.Cores,
// each driven the way raftkv.Node drives one, over the simulated network and
// disks. What Node does with goroutines and channels (the ticker, the peer
// streams, the gRPC handlers waiting on reply channels) happens here as
// events on the one simulated clock.
type raftCluster struct {
	r       *run
	nodes   []*raftNode // by id-1
	members []raftkv.Member
	cfg     raftkv.CoreConfig
	// localRead and earlyAck are the seeded bugs that live in raftkv.Node
	// (bugs.go); the Core plants no-dedup itself from cfg.Bug.
	localRead, earlyAck bool
	tick                time.Duration
	// leaderGuess is raftkv.Conns.leader: the clients' shared guess.
	leaderGuess uint64
}

// raftNode is one node: its Core (nil while down), its disk, and the
// requests waiting on it, as raftkv.Node holds them.
type raftNode struct {
	c      *raftCluster
	id     uint64
	core   *raftkv.Core
	disk   *raftDisk
	inc    int  // incarnation: events of an earlier one are void
	paused bool // SIGSTOP: nothing runs, deliveries wait
	held   []func()
	// rate scales this node's clock (skew): its tick interval is
	// c.tick*rate.
	rate float64
	// tornNext arms a crash inside the next Ready (the torn-write fault).
	tornNext bool
	refused  error // why the node would not start, if it would not

	waiters     map[kv.RequestID][]reqRef
	readWaiters map[uint64]reqRef
	nextRead    uint64
}

// reqRef is a client attempt waiting for a node's answer.
type reqRef struct {
	cl      *raftClient
	attempt int
}

func newRaftCluster(r *run) (*raftCluster, error) {
	noFsync := r.opts.NoFsync
	bug := r.opts.Bug
	if bug == raftdriver.BugNoFsync {
		// The driver's bug: raftkv's --no-fsync, not a raftkv bug.
		noFsync, bug = true, ""
	}
	name, err := raftkv.ParseBug(bug)
	if err != nil {
		return nil, err
	}
	if name == raftkv.BugWallLease {
		// Simulated nodes share the world's one clock, which never steps.
		return nil, fmt.Errorf("sim: %s needs clock faults, which the simulator does not make: run it on hosts (chainraft run --bug %s --hosts netns:3)", name, name)
	}
	c := &raftCluster{
		r: r, tick: 100 * time.Millisecond,
		localRead: name == raftkv.BugLocalRead,
		earlyAck:  name == raftkv.BugEarlyAck,
		cfg: raftkv.CoreConfig{
			ElectionTick: 10, HeartbeatTick: 1, Bug: name, Lease: r.opts.ReadMode == "lease",
		},
	}
	// Snapshots every few dozen entries in some seeds, so that compaction,
	// MsgSnap and the crashes around a snapshot's rotation and its commit are
	// exercised; the default (10,000) in the rest.
	if r.w.chance(0.5) {
		c.cfg.SnapshotEvery = uint64(20 + r.w.rng.IntN(80))
		c.cfg.SnapshotKeep = uint64(r.w.rng.IntN(int(c.cfg.SnapshotEvery)))
		if c.cfg.SnapshotKeep == 0 {
			c.cfg.SnapshotKeep = 1
		}
	}
	for i := 1; i <= r.nodes; i++ {
		c.members = append(c.members, raftkv.Member{ID: uint64(i), Addr: "n" + strconv.Itoa(i)})
	}
	for _, m := range c.members {
		n := &raftNode{c: c, id: m.ID, disk: &raftDisk{noFsync: noFsync}, rate: 1}
		c.nodes = append(c.nodes, n)
	}
	for _, n := range c.nodes {
		if err := n.start(); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (c *raftCluster) node(id uint64) *raftNode {
	if id == 0 || id > uint64(len(c.nodes)) {
		return nil
	}
	return c.nodes[id-1]
}

// start opens the disk and builds a Core from it, as StartNode does; the
// initial members are always passed, and bootstrap only a node with no
// state.
func (n *raftNode) start() error {
	rec, err := n.disk.open()
	if err != nil {
		n.refused = err
		return nil
	}
	cfg := n.c.cfg
	cfg.ID, cfg.Bootstrap = n.id, n.c.members
	core, err := raftkv.NewCore(cfg, rec)
	if err != nil {
		n.refused = err
		return nil
	}
	n.refused = nil
	n.core = core
	n.inc++
	n.paused = false
	n.held = nil
	n.waiters = map[kv.RequestID][]reqRef{}
	n.readWaiters = map[uint64]reqRef{}
	core.TakeMembersChanged()
	// A process's ticker starts at an arbitrary phase.
	n.scheduleTick(n.c.r.w.between(0, n.tickEvery()))
	n.flush()
	return nil
}

func (n *raftNode) tickEvery() time.Duration { return time.Duration(float64(n.c.tick) * n.rate) }

func (n *raftNode) scheduleTick(d time.Duration) {
	inc := n.inc
	n.c.r.w.after(d, func() {
		if n.inc != inc || n.core == nil {
			return
		}
		// A stopped process's ticker does not run; time.Ticker keeps at
		// most one tick for when it resumes.
		if !n.paused {
			n.core.Tick()
			n.flush()
		}
		n.scheduleTick(n.tickEvery())
	})
}

// run delivers something to the node: now, or when it resumes if paused;
// not at all if it is down.
func (n *raftNode) run(inc int, fn func()) bool {
	if n.core == nil || n.inc != inc {
		return false
	}
	if n.paused {
		n.held = append(n.held, fn)
		return true
	}
	fn()
	n.flush()
	return true
}

// flush handles every Ready, in raftkv.Node.handleReady's order.
func (n *raftNode) flush() {
	for n.core != nil && n.core.HasReady() {
		n.handleReady()
	}
}

func (n *raftNode) handleReady() {
	c := n.core
	rd := c.Ready()
	early := raft.IsEmptySnap(rd.Snapshot) && sameTermVote(rd.HardState, n.disk.hs)
	if early {
		for _, m := range rd.Messages {
			if t := m.GetType(); t == raftpb.MsgApp || t == raftpb.MsgHeartbeat {
				n.send(m)
			}
		}
	}
	if n.tornNext {
		// The torn-write fault: power fails while this Ready's write is in
		// flight, at one of three points of raftkv.Storage.Save: before
		// anything reached the disk; after the durable first step (a new
		// term or vote in the vote file, or a leader's snapshot file) but
		// before the log was touched; or after the log write but before its
		// fsync, so that the power loss keeps a random prefix of it.
		n.tornNext = false
		snap := !raft.IsEmptySnap(rd.Snapshot)
		switch n.c.r.w.rng.IntN(3) {
		case 0:
		case 1:
			if snap {
				n.disk.saveSnapshot(rd.Snapshot)
			} else {
				n.disk.saveVote(rd.HardState)
			}
		default:
			if snap {
				n.disk.persist(rd.HardState, rd.Entries, rd.Snapshot, rd.MustSync)
			} else {
				n.disk.save(rd.HardState, rd.Entries, false)
			}
		}
		n.crash(crashPower)
		return
	}
	n.disk.persist(rd.HardState, rd.Entries, rd.Snapshot, rd.MustSync)
	for _, m := range rd.Messages {
		if t := m.GetType(); !early || (t != raftpb.MsgApp && t != raftpb.MsgHeartbeat) {
			n.send(m)
		}
	}
	for _, r := range c.Apply() {
		n.reply(r)
	}
	c.Advance()
	if n.disk.noFsync {
		if cp := c.MaybeSnapshot(); cp != nil {
			n.disk.saveSnapshot(cp.Snapshot)
			n.disk.rewrite(cp.HardState, cp.Entries)
		}
	} else if j := c.StartSnapshot(); j != nil {
		n.snapshotLater(j)
	}
	c.TakeMembersChanged()
}

// snapshotLater is raftkv.Node's snapshot off the loop: the log rotated
// now, the snapshot built and written some time later while the node goes
// on, then put in place (or dropped, if one from the leader overtook it)
// and the sealed log removed. A crash in between loses the job, as a
// process's goroutine is lost. (With fsync off the simulator snapshots in
// one go, as before: its disk model of an unsynced rotation would be a
// second one of the rewrite's.)
func (n *raftNode) snapshotLater(j *raftkv.SnapshotJob) {
	n.disk.rotate(n.core.LogAfter(j))
	inc := n.inc
	n.c.r.w.after(n.c.r.w.between(0, 20*n.c.tick), func() {
		n.run(inc, func() {
			snap := j.Build()
			if n.core.SnapshotSuperseded(j) {
				n.core.FinishSnapshot(j)
				return
			}
			n.disk.saveSnapshot(snap)
			n.core.FinishSnapshot(j)
			n.disk.dropSealed()
		})
	})
}

func sameTermVote(hs, durable *raftpb.HardState) bool {
	return hs == nil || (hs.GetTerm() == durable.GetTerm() && hs.GetVote() == durable.GetVote())
}

// send puts a copy of m on the network (raft's messages point into its
// state). A peer that is down refuses the connection: raft hears it is
// unreachable, as from the real transport. A snapshot's fate is reported
// back, as the transport reports it once the stream ends.
func (n *raftNode) send(m *raftpb.Message) {
	cp := proto.Clone(m).(*raftpb.Message)
	if cp.GetType() == raftpb.MsgSnap && len(cp.GetSnapshot().GetData()) == 0 {
		// raft's storage holds no snapshot data: like the real transport,
		// attach the snapshot file's, the one raft named or a newer one.
		if d := n.disk.snap; d.GetMetadata().GetIndex() >= cp.GetSnapshot().GetMetadata().GetIndex() {
			cp.Snapshot = proto.Clone(d).(*raftpb.Snapshot)
		}
	}
	from, to := int(n.id), int(cp.GetTo())
	inc := n.inc
	peer := n.c.node(cp.GetTo())
	if peer == nil {
		return
	}
	snap := cp.GetType() == raftpb.MsgSnap
	report := func(ok bool) {
		// The report travels back to the sender's loop.
		n.c.r.w.after(n.c.r.net.delay(to, from), func() {
			n.run(inc, func() {
				if !ok {
					n.core.ReportUnreachable(uint64(to))
				}
				if snap {
					n.core.ReportSnapshot(uint64(to), ok)
				}
			})
		})
	}
	n.c.r.net.send(from, to, func() {
		if peer.core == nil {
			report(false)
			return
		}
		peer.run(peer.inc, func() {
			if err := peer.core.Step(cp); err != nil && !errors.Is(err, raft.ErrStepPeerNotFound) {
				n.c.r.logf("n%d: step %v from %d: %v", peer.id, cp.GetType(), cp.GetFrom(), err)
			}
		})
		if snap {
			report(true)
		}
	}, func() {
		if snap {
			report(false)
		}
	})
}

// request is a client's attempt arriving at the node: raftkv's kvServer.Do
// and Node.Write / Node.Read, with the seeded bugs that live there.
func (n *raftNode) request(ref reqRef, cmd *pb.Command) {
	if n.core == nil {
		// Connection refused: the client's call fails at once.
		n.respond(ref, nil, fmt.Errorf("node %d: connection refused", n.id))
		return
	}
	n.run(n.inc, func() {
		if cmd.GetOp() == pb.Op_OP_GET {
			if n.c.localRead {
				// SEEDED BUG (raftkv.BugLocalRead), as in Node.read.
				n.respond(ref, &pb.Response{NodeId: n.id, Result: n.core.Get(cmd.GetKey())}, nil)
				return
			}
			n.nextRead++
			if err := n.core.Read(n.nextRead, cmd.GetKey()); err != nil {
				n.respond(ref, errorResponse(n.id, err), nil)
				return
			}
			n.readWaiters[n.nextRead] = ref
			return
		}
		if err := n.core.Propose(cmd); err != nil {
			n.respond(ref, errorResponse(n.id, err), nil)
			return
		}
		if n.c.earlyAck {
			// SEEDED BUG (raftkv.BugEarlyAck), as in Node.propose.
			res := &pb.Result{}
			if cmd.GetOp() == pb.Op_OP_CAS {
				cur := n.core.Get(cmd.GetKey())
				res.Swapped = cur.GetFound() && cur.GetValue() == cmd.GetExpect()
			}
			n.respond(ref, &pb.Response{NodeId: n.id, Result: res}, nil)
			return
		}
		id := kv.RequestID{Client: cmd.GetClient(), Seq: cmd.GetSeq()}
		n.waiters[id] = append(n.waiters[id], ref)
	})
}

// reply routes a Core reply to the attempts waiting for it (Node.reply).
func (n *raftNode) reply(r raftkv.Reply) {
	resp := &pb.Response{NodeId: n.id, Result: r.Result}
	if r.Err != nil {
		resp = errorResponse(n.id, r.Err)
	}
	switch {
	case r.Read != 0:
		if ref, ok := n.readWaiters[r.Read]; ok {
			delete(n.readWaiters, r.Read)
			n.respond(ref, resp, nil)
		}
	case r.Conf != 0:
	default:
		for _, ref := range n.waiters[r.Req] {
			n.respond(ref, resp, nil)
		}
		delete(n.waiters, r.Req)
	}
}

// respond sends an answer (or a transport error) back to a client attempt.
func (n *raftNode) respond(ref reqRef, resp *pb.Response, err error) {
	n.c.r.net.send(int(n.id), clientEndpoint, func() { ref.cl.answer(ref.attempt, n.id, resp, err) }, nil)
}

// errorResponse is raftkv's errorCode: the wire code a node error maps to.
// Anything wrapping ErrUnknown is indeterminate whatever else it wraps.
func errorResponse(id uint64, err error) *pb.Response {
	r := &pb.Response{NodeId: id, Error: err.Error()}
	var nl *raftkv.NotLeaderError
	switch {
	case errors.Is(err, raftkv.ErrUnknown):
		r.Code = pb.Code_CODE_UNKNOWN
	case errors.As(err, &nl):
		r.Code, r.LeaderId, r.LeaderAddr = pb.Code_CODE_NOT_LEADER, nl.Leader, nl.Addr
	case errors.Is(err, raftkv.ErrProposalDropped):
		r.Code = pb.Code_CODE_DROPPED
	case errors.Is(err, raftkv.ErrOverloaded), errors.Is(err, raftkv.ErrReadLost), errors.Is(err, raftkv.ErrLeadershipLost), errors.Is(err, raftkv.ErrStopped):
		r.Code = pb.Code_CODE_OVERLOADED
	case errors.Is(err, raftkv.ErrRejected):
		r.Code = pb.Code_CODE_REJECTED
	case errors.Is(err, raftkv.ErrBadRequest):
		r.Code = pb.Code_CODE_BAD_REQUEST
	default:
		r.Code = pb.Code_CODE_UNKNOWN
	}
	return r
}

// crashMode is how a node goes down.
type crashMode int

const (
	crashKill  crashMode = iota // SIGKILL: the page cache survives
	crashPower                  // power loss: only what was synced survives, plus a torn tail
)

// crash stops the node. Its clients' connections reset, so their attempts
// fail at once, as with a killed process.
func (n *raftNode) crash(mode crashMode) {
	if n.core == nil {
		return
	}
	refs := n.pendingRefs()
	n.core = nil
	n.inc++
	n.paused = false
	n.held = nil
	n.waiters, n.readWaiters = nil, nil
	n.tornNext = false
	if mode == crashPower {
		w := n.c.r.w
		n.disk.powerLoss(func(k int) int { return w.rng.IntN(k + 1) })
	}
	for _, ref := range refs {
		n.respond(ref, nil, fmt.Errorf("node %d: connection reset", n.id))
	}
}

// pendingRefs lists the waiting attempts in a fixed order (maps are not).
func (n *raftNode) pendingRefs() []reqRef {
	var refs []reqRef
	ids := make([]kv.RequestID, 0, len(n.waiters))
	for id := range n.waiters {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b kv.RequestID) int {
		if a.Client != b.Client {
			return cmpU64(a.Client, b.Client)
		}
		return cmpU64(a.Seq, b.Seq)
	})
	for _, id := range ids {
		refs = append(refs, n.waiters[id]...)
	}
	reads := make([]uint64, 0, len(n.readWaiters))
	for id := range n.readWaiters {
		reads = append(reads, id)
	}
	slices.Sort(reads)
	for _, id := range reads {
		refs = append(refs, n.readWaiters[id])
	}
	return refs
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (n *raftNode) restart() {
	if n.core != nil {
		return
	}
	if err := n.start(); err != nil {
		n.refused = err
	}
}

func (n *raftNode) pause() {
	if n.core != nil {
		n.paused = true
	}
}

// resume lets the node run again: first what its ticker kept, then what
// arrived while it was stopped, in order.
func (n *raftNode) resume() {
	if n.core == nil || !n.paused {
		return
	}
	n.paused = false
	held := n.held
	n.held = nil
	for _, fn := range held {
		if n.core == nil || n.paused {
			break
		}
		fn()
		n.flush()
	}
}

// The cluster as the rest of the simulator sees it.

func (c *raftCluster) ids() []int {
	out := make([]int, len(c.nodes))
	for i := range c.nodes {
		out[i] = i + 1
	}
	return out
}

func (c *raftCluster) roles() []string { return []string{"leader", "follower"} }

// resolve names the live nodes holding role now: the leader of the highest
// term among live nodes that think they lead, or the others.
func (c *raftCluster) resolve(role string) []int {
	var lead uint64
	var term uint64
	for _, n := range c.nodes {
		if n.core == nil {
			continue
		}
		st := n.core.Status()
		if st.Role == raft.StateLeader.String() && st.Term >= term {
			lead, term = n.id, st.Term
		}
	}
	var out []int
	for _, n := range c.nodes {
		switch {
		case role == "leader" && n.id == lead:
			out = append(out, int(n.id))
		case role == "follower" && n.id != lead && n.core != nil:
			out = append(out, int(n.id))
		}
	}
	return out
}

func (c *raftCluster) up(id int) bool {
	n := c.node(uint64(id))
	return n != nil && n.core != nil
}

func (c *raftCluster) crash(id int, mode crashMode) { c.node(uint64(id)).crash(mode) }

// tornWrite arms (or, with arm false, disarms) a crash inside the node's
// next Ready.
func (c *raftCluster) tornWrite(id int, arm bool) {
	if n := c.node(uint64(id)); n.core != nil || !arm {
		n.tornNext = arm
	}
}
func (c *raftCluster) restart(id int)              { c.node(uint64(id)).restart() }
func (c *raftCluster) pause(id int)                { c.node(uint64(id)).pause() }
func (c *raftCluster) resume(id int)               { c.node(uint64(id)).resume() }
func (c *raftCluster) skew(id int, rate float64)   { c.node(uint64(id)).rate = rate }
func (c *raftCluster) writeback(id int)            { c.node(uint64(id)).disk.writeback() }
func (c *raftCluster) newClient(i int) storeClient { return newRaftClient(c, i) }
func (c *raftCluster) kinds() []kindWeight         { return nil }
func (c *raftCluster) settleTime() time.Duration   { return 5 * time.Second }
func (c *raftCluster) zkCut(int, bool)             {}

// refusals names the nodes that would not start, and why.
func (c *raftCluster) refusals() []string {
	var out []string
	for _, n := range c.nodes {
		if n.refused != nil {
			out = append(out, fmt.Sprintf("node %d refuses to start: %v", n.id, n.refused))
		}
	}
	return out
}

// converged reports whether every node is up and has applied the same
// entries to the same data: the replicas agree once the cluster is quiet.
func (c *raftCluster) converged() (bool, string) {
	var first raftkv.Status
	for i, n := range c.nodes {
		if n.core == nil {
			if n.refused != nil {
				return false, fmt.Sprintf("node %d refuses to start: %v", n.id, n.refused)
			}
			return false, fmt.Sprintf("node %d is down", n.id)
		}
		st := n.core.Status()
		if st.Applied != st.Commit {
			return false, fmt.Sprintf("node %d applied %d of %d committed", n.id, st.Applied, st.Commit)
		}
		if i == 0 {
			first = st
			continue
		}
		if st.Applied != first.Applied {
			return false, fmt.Sprintf("node %d applied %d, node %d %d", first.ID, first.Applied, n.id, st.Applied)
		}
		if st.Digest != first.Digest {
			return false, fmt.Sprintf("node %d and node %d applied %d entries and hold different data (digest %.12s vs %.12s)",
				first.ID, n.id, st.Applied, first.Digest, st.Digest)
		}
	}
	return true, fmt.Sprintf("%d replicas at applied %d, digest %.12s", len(c.nodes), first.Applied, first.Digest)
}
