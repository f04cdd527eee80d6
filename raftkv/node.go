package raftkv

import (
	"context"
	"fmt"
	"io"
	"log"
	"sync"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/chainraft/chainraft/kv"
	pb "github.com/chainraft/chainraft/raftkv/raftkvpb"
)

const (
	requestQueue = 8192 // proposals or reads waiting for the loop
	recvQueue    = 8192 // inbound peer messages
	drainMax     = 512  // events folded into one Ready
)

// NodeConfig configures a Node.
type NodeConfig struct {
	ID      uint64
	DataDir string
	NoFsync bool
	// Peers are the initial members (self included) of a new cluster, or,
	// with Join, the members a joining node can reach before it learns the
	// membership from the log.
	Peers []Member
	// Addrs are local addresses for nodes that are not members yet: when
	// the log adds one of them, the node dials it here instead of at its
	// replicated address. A harness that routes each directed link through
	// its own proxy gives every node the proxies of the nodes it will add
	// later, since a replicated address is one address for all dialers.
	Addrs []Member
	Join  bool
	Lease bool
	// SnapshotEvery is the number of entries between snapshots (default
	// 10,000).
	SnapshotEvery uint64
	// TickInterval is raft's tick (default 100ms); ElectionTick (default 10)
	// and HeartbeatTick (default 1) are in ticks.
	TickInterval                time.Duration
	ElectionTick, HeartbeatTick int
	// Logger gets node and raft log lines; nil discards them.
	Logger *log.Logger
	// Bug plants a seeded bug (KnownBugs, see bugs.go), for the harness's
	// detection tests only; empty for a correct node.
	Bug string
	// Group is the raft group this node is a replica of (multi-raft: see
	// Host); 0 for a single-group store. Transport, when set, is the
	// process's transport shared by every group it hosts: the Host owns it
	// and routes its reports back with deliverReport. Nil: the node makes
	// and owns one of its own.
	Group     uint32
	Transport *Transport
	// Preferred is the member that should lead the group
	// (CoreConfig.Preferred); 0: any.
	Preferred uint64
}

// Node runs one Core: a single goroutine (run) owns the Core, the storage
// and the waiters; everything else talks to it through bounded channels.
type Node struct {
	cfg       NodeConfig
	bugs      bugs // seeded bugs, all false unless NodeConfig.Bug names one
	logger    *log.Logger
	core      *Core
	storage   *Storage
	transport *Transport
	ownsTrans bool // the transport is this node's alone: it stops it

	propc   chan proposal
	readc   chan readRequest
	adminc  chan adminRequest
	statusc chan statusRequest
	recvc   chan *raftpb.Message
	reportc chan report
	stopc   chan struct{}
	donec   chan struct{}
	stopped sync.Once
	err     error // why run ended; written before donec closes

	// snapDone brings a snapshot built and written off the loop back to
	// it; one is built at a time (Core.StartSnapshot), so one slot never
	// blocks the builder. snapping tracks the builder, which run waits
	// for before it closes the storage.
	snapDone chan snapResult
	snapping sync.WaitGroup

	waiters     map[kv.RequestID][]chan Reply
	readWaiters map[uint64]chan Reply
	confWaiters map[uint64]chan Reply
	nextRead    uint64
	nextConf    uint64

	// SEEDED BUG (BugWallLease): the lease's end and each read's start,
	// in wall-clock nanoseconds.
	wallLeaseUntil int64
	wallReadStart  map[uint64]int64
}

// slowReady is how long one Ready may take before the node logs it: half a
// heartbeat round trip's worth of the default 1 s request deadline.
const slowReady = 300 * time.Millisecond

// snapResult is a snapshot job's outcome: prepared on disk, or err.
type snapResult struct {
	job  *SnapshotJob
	err  error
	took time.Duration
}

type proposal struct {
	cmd   *pb.Command
	reply chan Reply
}

type statusRequest struct {
	digest bool
	reply  chan statusView
}

// statusView is what the loop hands a status request: the Core's view and,
// for a digest, a copy of the data's map (its strings are never changed in
// place), hashed by the caller off the loop: hashing a gigabyte took the
// loop long enough for a follower to call an election at the end of a run.
type statusView struct {
	st   Status
	data map[string]string
}

type readRequest struct {
	key   string
	reply chan Reply
}

type adminRequest struct {
	add    *Member
	remove uint64
	reply  chan Reply
}

// StartNode opens the node's storage, restores its Core and starts its loop.
func StartNode(cfg NodeConfig) (*Node, error) {
	n, err := newNode(cfg)
	if err != nil {
		return nil, err
	}
	go n.run()
	return n, nil
}

// newNode is StartNode without the loop, for tests that play the loop.
func newNode(cfg NodeConfig) (*Node, error) {
	if cfg.TickInterval == 0 {
		cfg.TickInterval = 100 * time.Millisecond
	}
	logger := cfg.Logger
	if logger == nil {
		logger = log.New(io.Discard, "", 0)
	}
	st, rec, err := OpenStorage(cfg.DataDir, cfg.NoFsync)
	if err != nil {
		return nil, err
	}
	var boot []Member
	if !cfg.Join {
		boot = cfg.Peers
	}
	core, err := NewCore(CoreConfig{
		ID:            cfg.ID,
		Bootstrap:     boot,
		ElectionTick:  cfg.ElectionTick,
		HeartbeatTick: cfg.HeartbeatTick,
		Lease:         cfg.Lease,
		SnapshotEvery: cfg.SnapshotEvery,
		Logger:        &raft.DefaultLogger{Logger: logger},
		Bug:           cfg.Bug,
		Preferred:     cfg.Preferred,
	}, rec)
	if err != nil {
		st.Close()
		return nil, err
	}
	n := &Node{
		cfg:         cfg,
		bugs:        core.bugs,
		logger:      logger,
		core:        core,
		storage:     st,
		propc:       make(chan proposal, requestQueue),
		readc:       make(chan readRequest, requestQueue),
		adminc:      make(chan adminRequest, 16),
		statusc:     make(chan statusRequest),
		recvc:       make(chan *raftpb.Message, recvQueue),
		reportc:     make(chan report, 1024),
		snapDone:    make(chan snapResult, 1),
		stopc:       make(chan struct{}),
		donec:       make(chan struct{}),
		waiters:     map[kv.RequestID][]chan Reply{},
		readWaiters: map[uint64]chan Reply{}, wallReadStart: map[uint64]int64{},
		confWaiters: map[uint64]chan Reply{},
	}
	n.transport = cfg.Transport
	if n.transport == nil {
		n.transport, n.ownsTrans = newTransport(cfg.ID, logger, n.deliverReport), true
	}
	core.TakeMembersChanged()
	n.transport.SetGroupPeers(cfg.Group, mergeMembers(cfg.Peers, core.Members(), cfg.Addrs))
	return n, nil
}

// deliverReport hands a transport report to the loop without blocking.
func (n *Node) deliverReport(r report) {
	select {
	case n.reportc <- r:
	default: // raft learns the same from the next failure
	}
}

// mergeMembers lists the peers the transport reaches: the addresses given
// locally (a) win over the replicated ones (b), so that a harness can route
// each node's peer traffic through its own proxies (to cut links) while the
// membership itself stays replicated state; members known only from the log
// (nodes added later) use their address in book if it has one, else their
// replicated address. Only a and the members are dialed: an entry of book
// for a node that never joins opens nothing.
func mergeMembers(a, b, book []Member) []Member {
	local := map[uint64]string{}
	for _, m := range book {
		local[m.ID] = m.Addr
	}
	seen := map[uint64]bool{}
	var out []Member
	for i, m := range append(append([]Member{}, a...), b...) {
		if seen[m.ID] {
			continue
		}
		seen[m.ID] = true
		if addr, ok := local[m.ID]; ok && i >= len(a) {
			m.Addr = addr
		}
		out = append(out, m)
	}
	return out
}

// Stop stops the loop and the transport and closes the storage. Pending
// requests get ErrStopped (indeterminate for those already proposed).
func (n *Node) Stop() error {
	n.stopped.Do(func() { close(n.stopc) })
	<-n.donec
	return n.err
}

// Done is closed when the node's loop has ended (Stop, or a storage error:
// see Err).
func (n *Node) Done() <-chan struct{} { return n.donec }

// Err says why the loop ended; valid after Done is closed.
func (n *Node) Err() error { return n.err }

// deliver hands a peer message to the loop, dropping it when the loop is
// behind: raft retransmits.
func (n *Node) deliver(m *raftpb.Message) {
	select {
	case n.recvc <- m:
	default:
	}
}

// deliverSnapshot hands an assembled chunked snapshot to the loop. Unlike
// deliver it waits for room, until ctx (the transfer's deadline) ends or
// the node stops: dropping it would throw away the whole transfer, and an
// error tells the sender, which reports the snapshot failed to raft.
func (n *Node) deliverSnapshot(ctx context.Context, m *raftpb.Message) error {
	select {
	case n.recvc <- m:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-n.donec:
		return ErrStopped
	}
}

// Write proposes a put, append or cas and waits for it to apply. Errors
// that do not wrap ErrUnknown mean the write was not proposed.
func (n *Node) Write(ctx context.Context, cmd *pb.Command) (*pb.Result, error) {
	reply := make(chan Reply, 1)
	if err := enqueue(n, n.propc, proposal{cmd: cmd, reply: reply}); err != nil {
		return nil, err
	}
	return n.wait(ctx, reply, true)
}

// Read performs a linearizable read (ReadIndex, or the lease).
func (n *Node) Read(ctx context.Context, key string) (*pb.Result, error) {
	reply := make(chan Reply, 1)
	if err := enqueue(n, n.readc, readRequest{key: key, reply: reply}); err != nil {
		return nil, err
	}
	return n.wait(ctx, reply, false)
}

// enqueue hands a request to the loop without blocking: a full queue is
// ErrOverloaded (definite: nothing was proposed), a stopped node ErrStopped.
func enqueue[T any](n *Node, q chan<- T, req T) error {
	select {
	case q <- req:
		return nil
	case <-n.donec:
		return ErrStopped
	default:
		return ErrOverloaded
	}
}

// AddNode adds a voter at addr; RemoveNode removes one. They return once
// the change is applied here.
func (n *Node) AddNode(ctx context.Context, id uint64, addr string) error {
	_, err := n.admin(ctx, adminRequest{add: &Member{ID: id, Addr: addr}})
	return err
}

// RemoveNode removes a voter; its id is never reused.
func (n *Node) RemoveNode(ctx context.Context, id uint64) error {
	_, err := n.admin(ctx, adminRequest{remove: id})
	return err
}

func (n *Node) admin(ctx context.Context, req adminRequest) (*pb.Result, error) {
	req.reply = make(chan Reply, 1)
	select {
	case n.adminc <- req:
	case <-n.donec:
		return nil, ErrStopped
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return n.wait(ctx, req.reply, true)
}

func (n *Node) wait(ctx context.Context, reply chan Reply, write bool) (*pb.Result, error) {
	select {
	case r := <-reply:
		return r.Result, r.Err
	case <-ctx.Done():
		if write {
			return nil, unknown(ctx.Err())
		}
		return nil, ctx.Err()
	case <-n.donec:
		if write {
			return nil, unknown(ErrStopped)
		}
		return nil, ErrStopped
	}
}

// Status returns the node's view of the cluster; its Digest only if
// digest is set (see Core.status).
func (n *Node) Status(ctx context.Context, digest bool) (Status, error) {
	c := make(chan statusView, 1)
	select {
	case n.statusc <- statusRequest{digest: digest, reply: c}:
	case <-ctx.Done():
		return Status{}, ctx.Err()
	case <-n.donec:
		return Status{}, ErrStopped
	}
	select {
	case v := <-c:
		if digest {
			v.st.Digest = kv.Digest(v.data)
		}
		return v.st, nil
	case <-ctx.Done():
		return Status{}, ctx.Err()
	}
}

// run is the node's only goroutine touching the Core. Each turn takes one
// event, folds in whatever else is already queued (so one Ready, one fsync
// and one round of messages serve many requests), then handles Ready in
// raft's order: persist, send, apply and reply, advance.
func (n *Node) run() {
	ticker := time.NewTicker(n.cfg.TickInterval)
	defer func() {
		ticker.Stop()
		n.failAll()
		if n.ownsTrans {
			n.transport.Stop()
		}
		n.snapping.Wait()
		if err := n.storage.Close(); err != nil && n.err == nil {
			n.err = err
		}
		close(n.donec)
	}()
	lastTick := time.Now()
	for {
		select {
		case <-ticker.C:
			if gap := time.Since(lastTick); gap > slowReady+n.cfg.TickInterval {
				n.logger.Printf("node %d: tick %v late", n.cfg.ID, (gap - n.cfg.TickInterval).Round(time.Millisecond))
			}
			lastTick = time.Now()
			n.core.Tick()
		case m := <-n.recvc:
			n.step(m)
		case p := <-n.propc:
			n.propose(p)
		case r := <-n.readc:
			n.read(r)
		case a := <-n.adminc:
			n.adminReq(a)
		case r := <-n.reportc:
			n.applyReport(r)
		case r := <-n.statusc:
			v := statusView{st: n.core.status(false)}
			if r.digest {
				v.data = n.core.dataCopy()
			}
			r.reply <- v
		case r := <-n.snapDone:
			if err := n.finishSnapshot(r); err != nil {
				n.err = err
				n.logger.Printf("node %d: stopping: %v", n.cfg.ID, err)
				return
			}
		case <-n.stopc:
			return
		}
		n.drain()
		for n.core.HasReady() {
			if err := n.handleReady(); err != nil {
				n.err = err
				n.logger.Printf("node %d: stopping: %v", n.cfg.ID, err)
				return
			}
		}
	}
}

func (n *Node) drain() {
	for i := 0; i < drainMax; i++ {
		select {
		case m := <-n.recvc:
			n.step(m)
		case p := <-n.propc:
			n.propose(p)
		case r := <-n.readc:
			n.read(r)
		case r := <-n.reportc:
			n.applyReport(r)
		default:
			return
		}
	}
}

func (n *Node) step(m *raftpb.Message) {
	if err := n.core.Step(m); err != nil && err != raft.ErrStepPeerNotFound {
		n.logger.Printf("node %d: step %v from %d: %v", n.cfg.ID, m.GetType(), m.GetFrom(), err)
	}
}

func (n *Node) propose(p proposal) {
	if err := n.core.Propose(p.cmd); err != nil {
		p.reply <- Reply{Err: err}
		return
	}
	if n.bugs.earlyAck {
		// SEEDED BUG (BugEarlyAck): acknowledge on proposal, with the result
		// against what is applied so far, before the entry is durable or
		// committed. Core still applies it and its reply finds no waiter.
		res := &pb.Result{}
		if p.cmd.GetOp() == pb.Op_OP_CAS {
			cur := n.core.Get(p.cmd.GetKey())
			res.Swapped = cur.GetFound() && cur.GetValue() == p.cmd.GetExpect()
		}
		p.reply <- Reply{Result: res}
		return
	}
	id := kv.RequestID{Client: p.cmd.GetClient(), Seq: p.cmd.GetSeq()}
	n.waiters[id] = append(n.waiters[id], p.reply)
}

func (n *Node) read(r readRequest) {
	if n.bugs.localRead {
		// SEEDED BUG (BugLocalRead): answer from the local state machine on
		// any node, with no ReadIndex round and no leadership check.
		r.reply <- Reply{Result: n.core.Get(r.key)}
		return
	}
	if n.bugs.wallLease && time.Now().UnixNano() < n.wallLeaseUntil {
		// SEEDED BUG (BugWallLease): a lease timed on the wall clock.
		r.reply <- Reply{Result: n.core.Get(r.key)}
		return
	}
	n.nextRead++
	if err := n.core.Read(n.nextRead, r.key); err != nil {
		r.reply <- Reply{Err: err}
		return
	}
	n.readWaiters[n.nextRead] = r.reply
	if n.bugs.wallLease {
		n.wallReadStart[n.nextRead] = time.Now().UnixNano()
	}
}

// wallLeaseGranted extends the lease of BugWallLease after read id's
// ReadIndex round was confirmed: until the read's start plus four fifths
// of the election timeout, within which no other leader can be elected.
func (n *Node) wallLeaseGranted(id uint64, ok bool) {
	start, had := n.wallReadStart[id]
	delete(n.wallReadStart, id)
	if !had || !ok {
		return
	}
	et := n.cfg.ElectionTick
	if et == 0 {
		et = 10
	}
	n.wallLeaseUntil = max(n.wallLeaseUntil, start+int64(et)*int64(n.cfg.TickInterval)*4/5)
}

func (n *Node) adminReq(a adminRequest) {
	n.nextConf++
	// Request ids of membership changes must differ across nodes and
	// restarts: the id rides in the replicated conf change.
	req := uint64(time.Now().UnixNano())&^0xffff | n.nextConf&0xffff
	var err error
	if a.add != nil {
		err = n.core.AddNode(req, *a.add)
	} else {
		err = n.core.RemoveNode(req, a.remove)
	}
	if err != nil {
		a.reply <- Reply{Err: err}
		return
	}
	n.confWaiters[req] = a.reply
}

func (n *Node) applyReport(r report) {
	if r.snapshot {
		n.core.ReportSnapshot(r.to, r.ok)
		return
	}
	n.core.ReportUnreachable(r.to)
}

func (n *Node) handleReady() error {
	rd := n.core.Ready()
	// The leader's appends and heartbeats may leave while its own disk
	// write of the same Ready is in progress (raft thesis §10.2.1; etcd raft
	// doc.go), provided the term and vote are already durable: followers
	// then fsync in parallel with the leader. Everything else — append
	// acknowledgements, votes — waits for the fsync.
	early := raft.IsEmptySnap(rd.Snapshot) && sameTermVote(rd.HardState, n.storage.hs)
	if early {
		for _, m := range rd.Messages {
			if t := m.GetType(); t == raftpb.MsgApp || t == raftpb.MsgHeartbeat {
				n.send(m)
			}
		}
	}
	began := time.Now()
	if err := n.storage.Save(rd.HardState, rd.Entries, rd.Snapshot, rd.MustSync); err != nil {
		return fmt.Errorf("persist: %w", err)
	}
	persisted := time.Now()
	for _, m := range rd.Messages {
		if t := m.GetType(); !early || (t != raftpb.MsgApp && t != raftpb.MsgHeartbeat) {
			n.send(m)
		}
	}
	for _, r := range n.core.Apply() {
		n.reply(r)
	}
	if took := time.Since(began); took > slowReady {
		// A loop this slow misses heartbeats and request deadlines: say
		// where the time went, so that a stall has a cause in the log.
		n.logger.Printf("node %d: slow ready: %v (persist %v of %d entries, snapshot %v; send and apply %v)",
			n.cfg.ID, took.Round(time.Millisecond), persisted.Sub(began).Round(time.Millisecond), len(rd.Entries),
			!raft.IsEmptySnap(rd.Snapshot), time.Since(persisted).Round(time.Millisecond))
	}
	n.core.Advance()
	if j := n.core.StartSnapshot(); j != nil {
		// The log is cut here, not rewritten when the snapshot is done:
		// see Storage.Rotate.
		if err := n.storage.Rotate(n.core.LogAfter(j)); err != nil {
			return fmt.Errorf("rotate log: %w", err)
		}
		n.snapping.Add(1)
		go n.buildSnapshot(j)
	}
	if n.core.TakeMembersChanged() {
		n.transport.SetGroupPeers(n.cfg.Group, mergeMembers(n.cfg.Peers, n.core.Members(), n.cfg.Addrs))
	}
	return nil
}

// buildSnapshot marshals a snapshot job and writes it beside the durable
// snapshot, off the loop (see Core.StartSnapshot), and hands the outcome
// back to the loop.
func (n *Node) buildSnapshot(j *SnapshotJob) {
	defer n.snapping.Done()
	began := time.Now()
	err := n.storage.PrepareJob(j)
	n.snapDone <- snapResult{job: j, err: err, took: time.Since(began)}
}

// finishSnapshot puts a prepared snapshot in place, unless one installed
// from the leader meanwhile is newer, and rewrites the log behind it.
func (n *Node) finishSnapshot(r snapResult) error {
	if r.err != nil {
		return fmt.Errorf("save snapshot: %w", r.err)
	}
	if n.core.SnapshotSuperseded(r.job) {
		n.core.FinishSnapshot(r.job)
		n.logger.Printf("node %d: snapshot at %d dropped: a newer one came from the leader", n.cfg.ID, r.job.Index())
		return n.storage.DiscardSnapshot()
	}
	began := time.Now()
	if err := n.storage.CommitSnapshot(); err != nil {
		return err
	}
	c := n.core.FinishSnapshot(r.job)
	if err := n.storage.DropOldLog(); err != nil {
		return err
	}
	n.logger.Printf("node %d: snapshot at %d (built and written off the loop in %v, put in place in %v), memory keeps %d entries",
		n.cfg.ID, r.job.Index(), r.took.Round(time.Millisecond), time.Since(began).Round(time.Millisecond), len(c.Entries))
	return nil
}

func (n *Node) send(m *raftpb.Message) {
	if m.GetType() == raftpb.MsgSnap && len(m.GetSnapshot().GetData()) == 0 {
		// raft's storage holds no snapshot data (SnapshotJob): the
		// transport reads it from disk, off the loop.
		if err := n.transport.SendSnapshot(n.cfg.Group, m, n.storage.snapshotSource); err != nil {
			n.core.ReportUnreachable(m.GetTo())
			n.core.ReportSnapshot(m.GetTo(), false)
		}
		return
	}
	if err := n.transport.SendGroup(n.cfg.Group, m); err != nil {
		n.core.ReportUnreachable(m.GetTo())
		if m.GetType() == raftpb.MsgSnap {
			n.core.ReportSnapshot(m.GetTo(), false)
		}
	}
}

// sameTermVote says whether hs (nil: unchanged) keeps the durable term and
// vote.
func sameTermVote(hs, durable *raftpb.HardState) bool {
	return hs == nil || (hs.GetTerm() == durable.GetTerm() && hs.GetVote() == durable.GetVote())
}

func (n *Node) reply(r Reply) {
	switch {
	case r.Read != 0:
		if n.bugs.wallLease {
			n.wallLeaseGranted(r.Read, r.Err == nil)
		}
		if c, ok := n.readWaiters[r.Read]; ok {
			delete(n.readWaiters, r.Read)
			c <- r
		}
	case r.Conf != 0:
		if c, ok := n.confWaiters[r.Conf]; ok {
			delete(n.confWaiters, r.Conf)
			c <- r
		}
	default:
		for _, c := range n.waiters[r.Req] {
			c <- r
		}
		delete(n.waiters, r.Req)
	}
}

// failAll answers every waiter when the loop ends: proposed writes and
// membership changes are indeterminate.
func (n *Node) failAll() {
	for id, cs := range n.waiters {
		for _, c := range cs {
			c <- Reply{Err: unknown(ErrStopped)}
		}
		delete(n.waiters, id)
	}
	for id, c := range n.readWaiters {
		c <- Reply{Err: ErrStopped}
		delete(n.readWaiters, id)
	}
	for id, c := range n.confWaiters {
		c <- Reply{Err: unknown(ErrStopped)}
		delete(n.confWaiters, id)
	}
}
