package chain

import (
	"context"
	"fmt"
	"io"
	"log"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	pb "github.com/chainraft/chainraft/chain/chainpb"
	"google.golang.org/protobuf/proto"
)

const (
	requestQueue = 4096 // client requests waiting for the loop
	recvQueue    = 8192 // inbound peer messages
	drainMax     = 1024 // events folded into one Ready
)

// NodeConfig configures a Node.
type NodeConfig struct {
	ID      uint64
	DataDir string
	NoFsync bool
	Chains  int
	// PeerAddrs are local addresses of other nodes that win over the
	// addresses in the configuration: a harness routes each directed link
	// through its own proxy, and the configuration holds one address per
	// node for every dialer.
	PeerAddrs map[uint64]string
	// TickInterval is the Core's clock period: acks/heartbeats and resend
	// checks (default 50ms).
	TickInterval time.Duration
	// DetectTimeout is how long a successor may stay silent, or behind
	// without progress, before this node suspects it and tells the master
	// (0: 20 ticks, one second).
	DetectTimeout time.Duration
	// Logger gets the node's log lines; nil discards them.
	Logger *log.Logger
	// Bug plants a seeded bug (KnownBugs, see bugs.go), for the harness's
	// detection tests only; empty for a correct node.
	Bug string
	// ReadAny: see CoreConfig.ReadAny (Placement.ReadAny).
	ReadAny bool
}

type waiterChan struct {
	c     chan Reply
	read  bool
	chain uint32
}

// batchOut is one Ready's output with reply channels resolved by the loop.
type batchOut struct {
	persist  []Persist
	messages []*pb.Message
	replies  []delivery
	synced   []ChainEpoch
	// parts counts this batch's per-chain parts the persister has not
	// finished (persister only).
	parts int
	at    int64 // when the loop handed it over, ns since Node.start
}

type delivery struct {
	c     chan Reply
	r     Reply
	chain uint32
}

type request struct {
	write  bool
	chain  uint32
	epoch  uint64
	update *pb.Update
	key    string
	craq   bool       // a read any member may answer (Core.ReadAny)
	replyc chan Reply // buffered 1: the loop never blocks on a caller
}

// Node owns a Core and runs it: one goroutine (run) is the only one that
// touches the Core; gRPC handlers, the transport and the coordinator talk to
// it through bounded channels.
type Node struct {
	cfg       NodeConfig
	bugs      bugs // seeded bugs, all false unless NodeConfig.Bug names one
	logger    *log.Logger
	core      *Core
	storage   *Storage
	transport *Transport

	recvc    chan *pb.Message
	reqc     chan request
	cfgc     chan Config
	sesskc   chan struct{} // kick: session state changed
	statusc  chan chan []Status
	inspectc chan func(*Core) // runs a read-only function on the loop
	syncedc  chan ChainEpoch  // to the coordinator; dropped when full (re-reported next epoch change)

	// What the coordinator publishes for the master, set by the loop:
	// the peers suspected now, and per chain the latest epoch adopted
	// while named deposed. Level-triggered: the loop overwrites and kicks
	// reportc (capacity 1), the coordinator reads the latest, so a slow
	// coordinator skips states but never loses the last one.
	repMu       sync.Mutex
	repSuspects []uint64
	repStepped  map[int]uint64
	reportc     chan struct{}

	// session is whether the node serves with a live ZooKeeper session:
	// cleared at once by SetSession(false), set only by the loop once it has
	// applied every configuration queued before SetSession(true) (so a node
	// back from an expiry never serves under a configuration older than the
	// ones the coordinator re-read). sessMu orders the two writers;
	// sessWant is the coordinator's latest word.
	session  atomic.Bool
	sessMu   sync.Mutex
	sessWant bool
	// leaseUntil is the monotonic deadline (ns since start) until which the
	// coordinator vouches that the ZooKeeper session is alive; requests are
	// refused after it, so a node paused past its session never serves.
	leaseUntil atomic.Int64
	start      time.Time

	waiters map[uint64]waiterChan
	token   uint64

	// persistc carries handled-in-order output to the persister goroutine,
	// which persists, then sends, then replies: the Ready contract, off the
	// loop, so the loop keeps stepping (and serving reads) during an fsync.
	persistc   chan *batchOut
	persistErr chan error
	// compactc carries Storage.Pinning from the persister to the loop;
	// a full channel drops the news (the next Save repeats it).
	compactc chan []int
	// pendingSaves counts batches with something to persist that the
	// persister has not made durable yet. When it is zero and a Ready
	// persists nothing, everything this node applied is on disk, so a
	// Durable read reply need not queue behind the persister.
	pendingSaves atomic.Int64
	// lagSince is when the oldest output the persister has not released
	// was handed to it (ns since start; 0: none). See lagging.
	lagSince atomic.Int64
	// hb holds, per chain where this node has a predecessor, a heartbeat
	// for it (the latest ack's addressing, marked lagging), which
	// heartbeats sends while the node lags.
	hbMu sync.Mutex
	hb   map[uint32]*pb.Message

	stopc   chan struct{}
	donec   chan struct{}
	stopped sync.Once
	err     error // why run ended; written before donec closes
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
		cfg.TickInterval = 50 * time.Millisecond
	}
	logger := cfg.Logger
	if logger == nil {
		logger = log.New(io.Discard, "", 0)
	}
	st, rec, err := OpenStorage(cfg.DataDir, cfg.Chains, cfg.NoFsync)
	if err != nil {
		return nil, err
	}
	var detect int
	if cfg.DetectTimeout > 0 {
		detect = int(cfg.DetectTimeout / cfg.TickInterval)
	}
	core, err := NewCore(CoreConfig{ID: cfg.ID, Chains: cfg.Chains, DetectTicks: detect, Bug: cfg.Bug, ReadAny: cfg.ReadAny}, rec)
	if err != nil {
		st.Close()
		return nil, err
	}
	n := &Node{
		cfg: cfg, bugs: core.bugs, logger: logger, core: core, storage: st, transport: newTransport(logger),
		recvc: make(chan *pb.Message, recvQueue), reqc: make(chan request, requestQueue), cfgc: make(chan Config, 256),
		sesskc: make(chan struct{}, 1), statusc: make(chan chan []Status), inspectc: make(chan func(*Core)), syncedc: make(chan ChainEpoch, 64),
		start: time.Now(), waiters: map[uint64]waiterChan{}, repStepped: map[int]uint64{}, reportc: make(chan struct{}, 1),
		hb: map[uint32]*pb.Message{}, persistc: make(chan *batchOut, 256), persistErr: make(chan error, 1), compactc: make(chan []int, 1), stopc: make(chan struct{}), donec: make(chan struct{}),
	}
	return n, nil
}

// run drives the Core until Stop or a storage error (then Err says why).
func (n *Node) run() {
	persisterDone := make(chan struct{})
	go func() { defer close(persisterDone); n.persister() }()
	hbStop, hbDone := make(chan struct{}), make(chan struct{})
	go func() { defer close(hbDone); n.heartbeats(hbStop) }()
	defer func() { close(hbStop); <-hbDone }()
	ticker := time.NewTicker(n.cfg.TickInterval)
	defer func() {
		ticker.Stop()
		n.failAll()
		close(n.persistc)
		<-persisterDone
		n.transport.Stop()
		if err := n.storage.Close(); err != nil && n.err == nil {
			n.err = err
		}
		close(n.donec)
	}()
	for {
		select {
		case <-n.stopc:
			return
		case err := <-n.persistErr:
			n.err = err
			n.logger.Printf("node %d: stopping: %v", n.cfg.ID, err)
			return
		case <-ticker.C:
			n.core.SetLagging(n.lagging())
			n.core.Tick()
		case m := <-n.recvc:
			n.step(m)
		case r := <-n.reqc:
			n.request(r)
		case c := <-n.cfgc:
			n.setConfig(c)
		case <-n.sesskc:
			n.applySession()
		case sc := <-n.statusc:
			sc <- n.core.Status()
		case f := <-n.inspectc:
			f(n.core)
		case chs := <-n.compactc:
			for _, ch := range chs {
				n.core.Compact(ch)
			}
		}
		n.drain()
		if n.core.HasReady() {
			if err := n.handleReady(); err != nil {
				n.err = err
				n.logger.Printf("node %d: stopping: %v", n.cfg.ID, err)
				return
			}
		}
	}
}

// drain folds what else is waiting into this turn, so one Ready (one
// fsync) covers many requests and messages: group commit.
func (n *Node) drain() {
	for i := 0; i < drainMax; i++ {
		select {
		case m := <-n.recvc:
			n.step(m)
		case r := <-n.reqc:
			n.request(r)
		default:
			return
		}
	}
}

func (n *Node) step(m *pb.Message) {
	if err := n.core.Step(m); err != nil {
		n.logger.Printf("node %d: step %v from %d: %v", n.cfg.ID, m.Type, m.From, err)
	}
}

func (n *Node) setConfig(c Config) {
	for _, m := range c.Members {
		if m.ID != n.cfg.ID {
			n.transport.SetPeer(m.ID, n.peerAddr(m))
		}
	}
	if c.Joining != nil && c.Joining.ID != n.cfg.ID {
		n.transport.SetPeer(c.Joining.ID, n.peerAddr(*c.Joining))
	}
	n.core.SetConfig(c)
}

// peerAddr is where this node dials m: its local address if it has one
// (NodeConfig.PeerAddrs), else the configuration's.
func (n *Node) peerAddr(m Member) string {
	if a, ok := n.cfg.PeerAddrs[m.ID]; ok {
		return a
	}
	return m.Addr
}

func (n *Node) request(r request) {
	if r.write && !n.serving() {
		// Checked again here, on the loop, right before Propose: do()'s check
		// may be long past (the request queued, the process paused), and a
		// head whose lease ran out may already have been spliced out. Nothing
		// was proposed, so the refusal is definite.
		r.replyc <- Reply{Status: pb.Status_STATUS_UNAVAILABLE, Err: errNotServing}
		return
	}
	n.token++
	n.waiters[n.token] = waiterChan{c: r.replyc, read: !r.write, chain: r.chain}
	if r.write {
		n.core.Propose(n.token, r.chain, r.epoch, r.update)
	} else if r.craq {
		n.core.ReadAny(n.token, r.chain, r.epoch, r.key)
	} else {
		n.core.Read(n.token, r.chain, r.epoch, r.key)
	}
}

const errNotServing = "node has no live ZooKeeper session or its lease ran out"

// handleReady passes the Ready to the persister, which follows the Ready
// contract: persist (fsync), then send, then reply. What does not depend on
// this node's pending writes goes out at once, so it does not queue behind an
// fsync:
//   - read replies: until the tail has persisted and acknowledged an entry,
//     its predecessor keeps it, durable, in its Sent list, and becomes the
//     tail with it if this one dies;
//   - write replies not marked Durable: they report a commit, which the tail
//     made durable before acknowledging, or a refusal;
//   - acks from a node that is not the chain's tail: their committed part
//     comes from the tail, and their received part only positions resends;
//   - version queries and answers (CRAQ reads): an answer vouches, like a
//     read at the tail, only for what the tail's predecessor holds durably.
//
// Appends, snapshots, a tail's acks (the commit point) and replies marked
// Durable (a chain of one: its writes, and its reads while something it
// applied is not on disk yet) wait for the fsync.
//
// A read reply is served only if the lease still holds now, after the Core
// read the state: the read then happened while the session was certainly
// alive, so the master cannot have replaced this tail yet. The check in
// do() alone is not enough: a read queued before a pause (SIGSTOP) would be
// answered from stale state on resume, before the coordinator learns the
// session expired. A version answer is a read at the tail on another
// member's behalf, and is dropped under the same rule (the asker refuses
// its reads when no answer comes).
func (n *Node) handleReady() error {
	rd := n.core.Ready()
	if rd.SuspectsChanged || len(rd.Deposed) > 0 {
		n.repMu.Lock()
		if rd.SuspectsChanged {
			n.repSuspects = rd.Suspects
		}
		for _, d := range rd.Deposed {
			n.repStepped[d.Chain] = max(n.repStepped[d.Chain], d.Epoch)
		}
		n.repMu.Unlock()
		select {
		case n.reportc <- struct{}{}:
		default:
		}
	}
	out := &batchOut{persist: rd.Persist, synced: rd.Synced}
	serving := n.serving()
	var status []Status
	for _, m := range rd.Messages {
		if m.Type == pb.MessageType_MSG_ACK {
			// A tail's ack waits for the fsync, and while a long save
			// fills the persister's queue, the loop waits too, so no ack
			// goes out: heartbeats tells the predecessor why.
			n.hbMu.Lock()
			n.hb[m.Chain] = &pb.Message{Type: pb.MessageType_MSG_ACK, Chain: m.Chain, Epoch: m.Epoch, From: m.From, To: m.To, Lagging: true}
			n.hbMu.Unlock()
		}
		if m.Type == pb.MessageType_MSG_SNAPSHOT {
			// Each whole-state copy is worth a line: at hundreds of
			// megabytes, one too many is seconds of a link and a disk.
			if status == nil {
				status = n.core.Status()
			}
			st := status[m.Chain]
			n.logger.Printf("node %d: chain %d epoch %d: whole state to node %d at seq %d (%s)",
				n.cfg.ID, m.Chain, m.Epoch, m.To, m.Snapshot.GetLastSeq(), st.SnapWhy)
		}
		switch {
		case m.Type == pb.MessageType_MSG_ACK && !n.core.IsTail(m.Chain), m.Type == pb.MessageType_MSG_VERSION_QUERY:
			n.transport.Send(m)
		case m.Type == pb.MessageType_MSG_VERSION:
			if serving || m.Refused {
				n.transport.Send(m)
			}
		default:
			out.messages = append(out.messages, m)
		}
	}
	allDurable := len(rd.Persist) == 0 && n.pendingSaves.Load() == 0
	for _, r := range rd.Replies {
		w, ok := n.waiters[r.Token]
		if !ok {
			continue
		}
		delete(n.waiters, r.Token)
		// SEEDED BUG (BugStaleTail): reads are served without the lease.
		if w.read && r.Status == pb.Status_STATUS_OK && !serving && !n.bugs.staleTail {
			r = Reply{Token: r.Token, Status: pb.Status_STATUS_UNAVAILABLE, Epoch: r.Epoch, Err: errNotServing}
		}
		if !r.Durable || (w.read && allDurable) {
			w.c <- r
		} else {
			out.replies = append(out.replies, delivery{c: w.c, r: r, chain: w.chain})
		}
	}
	n.core.Advance()
	if len(out.persist) == 0 && len(out.messages) == 0 && len(out.replies) == 0 && len(out.synced) == 0 {
		return nil
	}
	if len(out.persist) > 0 {
		n.pendingSaves.Add(1)
	}
	out.at = int64(time.Since(n.start))
	select {
	case n.persistc <- out:
		return nil
	case err := <-n.persistErr:
		return err
	}
}

// persister owns Storage writes. It merges whatever output is queued into
// one Save of entries (one fdatasync for every chain), then sends and
// replies in order. Snapshots are written apart, by a goroutine each
// (Storage.BeginSnapshot), and hold up only their own chain: writing and
// fsyncing a chain's whole state takes seconds at hundreds of megabytes,
// and when every chain's appends and tail acks at the node waited for it,
// the node's neighbours saw no progress for longer than the data-path
// detector's second and the master took nodes out. Per chain the Ready
// contract holds as before: a chain's output after a snapshot that
// replaces its history (installed, or a wipe) waits until the snapshot is
// durable; a compaction continues the chain's history on disk, so the
// chain's entries go on being written while it is (see SnapshotWrite).
func (n *Node) persister() {
	p := &persistPipe{n: n, queued: make([][]*chainPart, n.cfg.Chains), writing: make([]*SnapshotWrite, n.cfg.Chains),
		done: make(chan snapDone, n.cfg.Chains), one: make(chan struct{}, 1)}
	defer p.wait()
	open := true
	for open {
		var batch []*batchOut
		var finished []snapDone
		select {
		case out, ok := <-n.persistc:
			if !ok {
				return
			}
			batch = append(batch, out)
		case d := <-p.done:
			finished = append(finished, d)
		}
	more:
		for len(batch) < 64 {
			select {
			case o, ok := <-n.persistc:
				if !ok {
					open = false
					break more
				}
				batch = append(batch, o)
			case d := <-p.done:
				finished = append(finished, d)
			default:
				break more
			}
		}
		r := &persistRound{}
		for _, d := range finished {
			if !p.finish(d, r) {
				return
			}
		}
		for _, o := range batch {
			p.split(o, r)
		}
		if !p.run(r) {
			return
		}
	}
}

// persistPipe is the persister's state: per chain, the parts held behind a
// snapshot being written and the write in progress.
type persistPipe struct {
	n       *Node
	queued  [][]*chainPart
	writing []*SnapshotWrite // at most one per chain
	done    chan snapDone
	running int
	// one lets one compaction write run at a time: at 1 GB, three chains'
	// compactions of 270 MB each, marshalled and written at once on every
	// node, starved the nodes (two-core machine) until ZooKeeper expired
	// their sessions. Installed snapshots do not wait for it: each holds
	// its chain back until it is written, and a joiner taking three
	// chains' states one after another missed the heal's bound.
	one chan struct{}
}

// chainPart is one chain's share of a batchOut, in the batch's order:
// persist first, then the messages, replies and synced reports that depend
// on it.
type chainPart struct {
	batch    *batchOut
	persist  []Persist
	messages []*pb.Message
	replies  []delivery
	synced   []ChainEpoch
}

type snapDone struct {
	w       *SnapshotWrite
	err     error
	elapsed time.Duration
}

// persistRound is one Save and what follows it.
type persistRound struct {
	entries  []Persist
	launch   []*SnapshotWrite
	messages []*pb.Message
	replies  []delivery
	synced   []ChainEpoch
	finished []*batchOut // batches whose every part is done
}

// split cuts o into its chains' parts and takes each that is not held
// behind a snapshot.
func (p *persistPipe) split(o *batchOut, r *persistRound) {
	parts := map[int]*chainPart{}
	var order []int
	part := func(ch int) *chainPart {
		cp := parts[ch]
		if cp == nil {
			cp = &chainPart{batch: o}
			parts[ch] = cp
			order = append(order, ch)
		}
		return cp
	}
	for _, ps := range o.persist {
		cp := part(ps.Chain)
		cp.persist = append(cp.persist, ps)
	}
	for _, m := range o.messages {
		cp := part(int(m.Chain))
		cp.messages = append(cp.messages, m)
	}
	for _, d := range o.replies {
		cp := part(int(d.chain))
		cp.replies = append(cp.replies, d)
	}
	for _, s := range o.synced {
		cp := part(s.Chain)
		cp.synced = append(cp.synced, s)
	}
	o.parts = len(order)
	if o.parts == 0 {
		r.finished = append(r.finished, o)
		return
	}
	for _, ch := range order {
		p.queued[ch] = append(p.queued[ch], parts[ch])
		p.drainChain(ch, r)
	}
}

// drainChain takes chain ch's queued parts in order until one must wait
// for the chain's snapshot write.
func (p *persistPipe) drainChain(ch int, r *persistRound) {
	for len(p.queued[ch]) > 0 {
		cp := p.queued[ch][0]
		if !p.take(ch, cp, r) {
			return
		}
		p.queued[ch][0] = nil
		p.queued[ch] = p.queued[ch][1:]
	}
}

// take puts cp's entries in the round's Save and its output after it, or,
// reaching a snapshot that replaces the chain's history, starts its write
// (unless another write of the chain is in progress) and keeps the rest of
// cp queued: false.
func (p *persistPipe) take(ch int, cp *chainPart, r *persistRound) bool {
	if w := p.writing[ch]; w != nil && !w.Compact {
		return false // the chain's output waits for the snapshot it follows
	}
	for len(cp.persist) > 0 {
		ps := cp.persist[0]
		switch {
		case ps.Snapshot == nil && !ps.Wipe:
			r.entries = append(r.entries, ps)
		case p.writing[ch] != nil && ps.Compact && !ps.Wipe:
			// A write of the chain is in progress; this compaction is
			// dropped (Pinning asks again if the log still needs it).
		case p.writing[ch] != nil:
			return false
		default:
			w := p.n.storage.BeginSnapshot(ps)
			p.writing[ch] = w
			r.launch = append(r.launch, w)
			if !w.Compact {
				cp.persist = cp.persist[1:]
				return false
			}
		}
		cp.persist = cp.persist[1:]
	}
	r.messages = append(r.messages, cp.messages...)
	r.replies = append(r.replies, cp.replies...)
	r.synced = append(r.synced, cp.synced...)
	if cp.batch.parts--; cp.batch.parts == 0 {
		r.finished = append(r.finished, cp.batch)
	}
	return true
}

// finish records a snapshot written and takes what waited for it. False
// when the write failed: the node stops.
func (p *persistPipe) finish(d snapDone, r *persistRound) bool {
	p.running--
	if d.err != nil {
		p.fail(d.err)
		return false
	}
	ch := d.w.Chain
	p.n.storage.EndSnapshot(d.w)
	p.writing[ch] = nil
	if d.elapsed >= slowSave {
		p.n.logger.Printf("node %d: snapshot of chain %d (seq %d, compaction %v): %d bytes written in %v",
			p.n.cfg.ID, ch, d.w.snap.LastSeq, d.w.Compact, d.w.Bytes, d.elapsed.Round(time.Millisecond))
	}
	p.drainChain(ch, r)
	return true
}

// run saves the round's entries, starts its snapshot writes, then sends
// and replies. False when Save failed: the node stops.
func (p *persistPipe) run(r *persistRound) bool {
	n := p.n
	oldest := p.oldestQueued()
	for _, o := range r.finished {
		if oldest == 0 || o.at < oldest {
			oldest = o.at
		}
	}
	n.lagSince.Store(oldest)
	began := time.Now()
	if err := n.storage.Save(r.entries); err != nil {
		p.fail(err)
		return false
	}
	if d := time.Since(began); d >= slowSave {
		n.logSlowSave(r.entries, d)
	}
	for _, w := range r.launch {
		p.running++
		go func() {
			if w.Compact {
				p.one <- struct{}{}
			}
			began := time.Now()
			err := w.Write()
			if w.Compact {
				<-p.one
			}
			p.done <- snapDone{w: w, err: err, elapsed: time.Since(began)}
		}()
	}
	for _, o := range r.finished {
		if len(o.persist) > 0 {
			n.pendingSaves.Add(-1)
		}
	}
	if chs := n.storage.Pinning(); len(chs) > 0 {
		select {
		case n.compactc <- chs:
		default:
		}
	}
	for _, m := range r.messages {
		n.transport.Send(m)
	}
	for _, d := range r.replies {
		d.c <- d.r
	}
	for _, s := range r.synced {
		select {
		case n.syncedc <- s:
		default:
		}
	}
	n.lagSince.Store(p.oldestQueued())
	return true
}

// oldestQueued is when the oldest batch with a part held behind a
// snapshot write was handed over (0: none).
func (p *persistPipe) oldestQueued() int64 {
	var oldest int64
	for _, q := range p.queued {
		if len(q) > 0 && (oldest == 0 || q[0].batch.at < oldest) {
			oldest = q[0].batch.at
		}
	}
	return oldest
}

func (p *persistPipe) fail(err error) {
	p.n.persistErr <- fmt.Errorf("node %d: %w", p.n.cfg.ID, err)
	for range p.n.persistc {
	}
}

// wait lets the snapshot writes in progress end before the Storage closes.
func (p *persistPipe) wait() {
	for ; p.running > 0; p.running-- {
		<-p.done
	}
}

// heartbeats sends, every tick while the node lags, a heartbeat marked
// lagging to its predecessor in each chain. It runs apart from the loop:
// a long save fills the persister's queue, and then the loop itself
// waits, so no ack goes out, not even a middle's, which need not wait for
// the fsync.
// It ends when stop is closed (by run, as it ends).
func (n *Node) heartbeats(stop <-chan struct{}) {
	t := time.NewTicker(n.cfg.TickInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if !n.lagging() {
			continue
		}
		n.hbMu.Lock()
		for _, m := range n.hb {
			n.transport.Send(proto.Clone(m).(*pb.Message))
		}
		n.hbMu.Unlock()
	}
}

// lagExcuse bounds how long a node's own persister lag excuses its
// successors (Core.SetLagging): a disk that stays stuck longer is a fault
// the master should see, through the links of the node it stalls.
const lagExcuse = 10 * time.Second

// copyExcuse bounds how long a whole-state copy in progress, either way,
// excuses the node (lagging): at 1 GB a 330 MB copy took 2 to 9 s on this
// project's two-core machine, and the nodes doing it stalled for a second
// or more (their tail acks late, their ZooKeeper pings too), which the
// detector took for broken links, and each removal cost another copy.
const copyExcuse = 20 * time.Second

// lagging reports whether this node's persister has held output back for
// more than two ticks (and less than lagExcuse), or it has been copying a
// chain's whole state (for less than copyExcuse): its appends may not
// have gone out, so a successor behind it is not to blame, and its
// predecessors get heartbeats.
func (n *Node) lagging() bool {
	if n.transport.Copying(copyExcuse) {
		return true
	}
	since := n.lagSince.Load()
	if since == 0 {
		return false
	}
	lag := time.Since(n.start) - time.Duration(since)
	return lag > 2*n.cfg.TickInterval && lag < lagExcuse
}

// slowSave is how long a Save may take before the node logs it: the
// data-path detector suspects a successor after 1 s without progress, and
// every chain's appends and tail acks at this node wait for the Save.
const slowSave = 200 * time.Millisecond

func (n *Node) logSlowSave(ps []Persist, d time.Duration) {
	entries := 0
	for _, p := range ps {
		entries += len(p.Entries)
	}
	n.logger.Printf("node %d: save of %d entries took %v", n.cfg.ID, entries, d.Round(time.Millisecond))
}

func (n *Node) failAll() {
	for tok, w := range n.waiters {
		w.c <- Reply{Token: tok, Status: pb.Status_STATUS_UNKNOWN, Err: ErrStopped.Error()}
		delete(n.waiters, tok)
	}
}

// deliverSnapshot hands an assembled chunked snapshot to the loop. Unlike
// a batch's messages, which are dropped when the queue is full, it waits
// for room until ctx (the transfer's deadline) ends or the node stops:
// dropping it would throw away the whole transfer.
func (n *Node) deliverSnapshot(ctx context.Context, m *pb.Message) error {
	select {
	case n.recvc <- m:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-n.donec:
		return ErrStopped
	}
}

// Stop stops the loop, the persister and the transport, and closes the
// storage. Pending requests get ErrStopped (their outcome unknown). It
// returns what Err returns.
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

// SetConfig hands a configuration read from ZooKeeper to the loop.
func (n *Node) SetConfig(c Config) {
	select {
	case n.cfgc <- c:
	case <-n.stopc:
	}
}

// SetSession records whether the ZooKeeper session is live. Losing it takes
// effect for new requests at once (they check the flag) and in the Core on
// the loop's next turn. Regaining it takes effect on the loop, after the
// configurations the coordinator handed over before it (applySession).
func (n *Node) SetSession(ok bool) {
	n.sessMu.Lock()
	n.sessWant = ok
	if !ok {
		n.session.Store(false)
	}
	n.sessMu.Unlock()
	select {
	case n.sesskc <- struct{}{}:
	default:
	}
}

// applySession runs on the loop: configurations queued before the session
// change apply first, then the flag and the Core follow the coordinator.
// The wish is read before draining: every SetConfig that preceded it is
// then already queued. If the wish changed meanwhile, its own kick is
// pending and the next turn applies it.
func (n *Node) applySession() {
	n.sessMu.Lock()
	ok := n.sessWant
	n.sessMu.Unlock()
	for drained := false; !drained; {
		select {
		case c := <-n.cfgc:
			n.setConfig(c)
		default:
			drained = true
		}
	}
	n.sessMu.Lock()
	if n.sessWant == ok {
		n.session.Store(ok)
	}
	n.sessMu.Unlock()
	n.core.SetSession(ok)
}

// ExtendLease is called by the coordinator after a ZooKeeper request that
// started at started succeeded: the session cannot expire before started +
// the session timeout, so the node may serve until a safe fraction of it.
func (n *Node) ExtendLease(started time.Time, d time.Duration) {
	until := int64(started.Sub(n.start) + d)
	for {
		cur := n.leaseUntil.Load()
		if until <= cur || n.leaseUntil.CompareAndSwap(cur, until) {
			return
		}
	}
}

func (n *Node) serving() bool {
	return n.session.Load() && int64(time.Since(n.start)) < n.leaseUntil.Load()
}

// Reports is kicked when the node's report for the master changed
// (Report).
func (n *Node) Reports() <-chan struct{} { return n.reportc }

// Report is what the node tells the master now: the peers it suspects on
// the data path, and per chain the latest epoch it adopted while named
// deposed.
func (n *Node) Report() (suspects []uint64, stepped map[int]uint64) {
	n.repMu.Lock()
	defer n.repMu.Unlock()
	stepped = make(map[int]uint64, len(n.repStepped))
	for k, v := range n.repStepped {
		stepped[k] = v
	}
	return slices.Clone(n.repSuspects), stepped
}

// Synced delivers the chains where this node caught up as a joiner.
func (n *Node) Synced() <-chan ChainEpoch { return n.syncedc }

// Status asks the loop for every chain's status.
func (n *Node) Status(ctx context.Context) ([]Status, error) {
	sc := make(chan []Status, 1)
	select {
	case n.statusc <- sc:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-n.donec:
		return nil, ErrStopped
	}
	select {
	case s := <-sc:
		return s, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (n *Node) do(ctx context.Context, r request) Reply {
	// SEEDED BUG (BugStaleTail): reads bypass the session and lease check.
	if !n.serving() && (r.write || !n.bugs.staleTail) {
		return Reply{Status: pb.Status_STATUS_UNAVAILABLE, Err: "node has no live ZooKeeper session"}
	}
	r.replyc = make(chan Reply, 1)
	select {
	case n.reqc <- r:
	case <-ctx.Done():
		return Reply{Status: pb.Status_STATUS_UNAVAILABLE, Err: "node busy: " + ctx.Err().Error()}
	case <-n.donec:
		return Reply{Status: pb.Status_STATUS_UNAVAILABLE, Err: ErrStopped.Error()}
	}
	select {
	case rep := <-r.replyc:
		return rep
	case <-ctx.Done():
		return Reply{Status: pb.Status_STATUS_UNKNOWN, Err: ctx.Err().Error()}
	case <-n.donec:
		return Reply{Status: pb.Status_STATUS_UNKNOWN, Err: ErrStopped.Error()}
	}
}
