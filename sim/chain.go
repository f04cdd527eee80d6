package sim

import (
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/go-zookeeper/zk"
	"google.golang.org/protobuf/proto"

	"github.com/chainraft/chainraft/chain"
	pb "github.com/chainraft/chainraft/chain/chainpb"
	"github.com/chainraft/chainraft/nemesis"
)

// chainCluster is the chain store in the simulated world: real chain.Cores,
// each driven the way chain.Node drives one, and each node's real
// chain.Coordinator (with the master it runs when elected) on a session of
// the simulated ZooKeeper (zk.go). What Node and RunCoordinator do with
// goroutines, channels and timers happens here as events on the one
// simulated clock.
type chainCluster struct {
	r     *run
	zk    *zkServer
	nodes []*chainNode // by id-1
	place chain.Placement
	// bug is the seeded bug: the Core's (chain.KnownBugs), planted in
	// every node; head-read's client half is planted in the router.
	bug            string
	noFsync        bool
	tick           time.Duration
	sessionTimeout time.Duration
	detectTimeout  time.Duration
	snapEvery      int
	router         *chainRouter
}

// chainNode is one node process: its Core and coordinator (nil while
// down), its disk, its ZooKeeper connection, and the requests waiting on
// it, as chain.Node and RunCoordinator hold them.
type chainNode struct {
	c     *chainCluster
	id    uint64
	addr  string
	core  *chain.Core
	coord *chain.Coordinator
	sess  *zkSession
	disk  *chainDisk
	inc   int // incarnation: events of an earlier one are void

	paused bool
	held   []func()
	// kickDue: a ZooKeeper event came while paused; the library notices
	// it after the process resumes.
	kickDue bool
	rate    float64
	// zkCuts counts zk-partition faults in force on this node.
	zkCuts   int
	tornNext bool
	refused  error

	// session and leaseUntil are Node.session and Node.leaseUntil: the
	// coordinator's word that the session lives, and until when (sim ns).
	session    bool
	leaseUntil int64
	token      uint64
	waiters    map[uint64]chainWaiter
	// stepAt is when the coordinator's next step is scheduled (0: none).
	stepAt int64
	// repStepped is Node.repStepped: per chain, the latest epoch adopted
	// while named deposed.
	repStepped map[int]uint64
}

// chainWaiter is a client attempt waiting for the node's answer.
type chainWaiter struct {
	cl      *chainClient
	attempt int
	read    bool
}

// chainResp is a node's answer to a client attempt (the gRPC response).
type chainResp struct {
	status  pb.Status
	swapped bool
	found   bool
	value   string
	err     string
}

func newChainCluster(r *run) (*chainCluster, error) {
	bug, err := chain.ParseBug(r.opts.Bug)
	if err != nil {
		return nil, err
	}
	w := r.w
	n := r.nodes
	c := &chainCluster{
		r: r, zk: newZKServer(w), bug: bug, noFsync: r.opts.NoFsync,
		tick:           50 * time.Millisecond,
		sessionTimeout: []time.Duration{2 * time.Second, 4 * time.Second}[w.rng.IntN(2)],
		place: chain.Placement{Chains: 1 + w.rng.IntN(3), Replicas: min(3, n), Nodes: n,
			ReadAny: r.opts.ReadMode == chain.ReadModeCRAQ},
	}
	c.detectTimeout = c.sessionTimeout / 2
	// Snapshots every few dozen entries in some seeds, so that compaction
	// and a successor caught up by snapshot are exercised; the default
	// (10,000) in the rest.
	// (Taken from the seed itself, not the world's source, so that adding
	// it changed no other draw: regression seeds replay as they failed.)
	if h := uint64(r.opts.Seed) * 0x9e3779b97f4a7c15; h>>63 == 1 {
		c.snapEvery = 20 + int(h>>20%80)
	}
	if err := c.place.Validate(); err != nil {
		return nil, err
	}
	// Chain replication runs over TCP streams: in order per link, never
	// duplicated (a lost message is a reset connection; the Core resends).
	r.net.p.fifo = true
	for i := 1; i <= n; i++ {
		c.nodes = append(c.nodes, &chainNode{c: c, id: uint64(i), addr: "n" + strconv.Itoa(i),
			disk: newChainDisk(c.place.Chains, c.noFsync), rate: 1})
	}
	c.router = newChainRouter(c)
	for _, nd := range c.nodes {
		nd.start()
	}
	r.logf("chain: %d chains of %d replicas, session timeout %v", c.place.Chains, c.place.Replicas, c.sessionTimeout)
	return c, nil
}

func (c *chainCluster) node(id uint64) *chainNode {
	if id == 0 || id > uint64(len(c.nodes)) {
		return nil
	}
	return c.nodes[id-1]
}

func (n *chainNode) now() time.Time { return time.Unix(0, n.c.r.w.now) }

// start opens the disk and builds the Core from it, as chain.Run does, then
// opens a ZooKeeper session and starts the coordinator on it.
func (n *chainNode) start() {
	rec, err := n.disk.open()
	if err != nil {
		n.refused = err
		return
	}
	core, err := chain.NewCore(chain.CoreConfig{ID: n.id, Chains: n.c.place.Chains, SnapshotEvery: n.c.snapEvery,
		DetectTicks: int(n.c.detectTimeout / n.c.tick), Bug: n.c.bug, ReadAny: n.c.place.ReadAny}, rec)
	if err != nil {
		n.refused = err
		return
	}
	n.refused = nil
	n.core = core
	n.inc++
	n.paused, n.held, n.kickDue = false, nil, false
	n.session, n.leaseUntil = false, 0
	n.waiters = map[uint64]chainWaiter{}
	n.stepAt = 0
	inc := n.inc
	n.sess = n.c.zk.connect(n.c.sessionTimeout)
	n.sess.notify = func() { n.zkNotify(inc) }
	if n.zkCuts > 0 {
		n.sess.setCut(true)
	}
	n.coord = chain.NewCoordinator(chain.CoordinatorConfig{
		SessionTimeout: n.c.sessionTimeout, ID: n.id, Addr: n.addr, Placement: n.c.place,
		Logf: func(format string, args ...any) { n.c.r.logf("n%d: "+format, append([]any{n.id}, args...)...) },
	}, n.sess, n)
	n.scheduleTick(n.c.r.w.between(0, n.tickEvery()))
	// The session event connect queued (before notify was set) reaches
	// the coordinator at the first kick.
	n.zkNotify(inc)
}

func (n *chainNode) tickEvery() time.Duration { return time.Duration(float64(n.c.tick) * n.rate) }

func (n *chainNode) scheduleTick(d time.Duration) {
	inc := n.inc
	n.c.r.w.after(d, func() {
		if n.inc != inc || n.core == nil {
			return
		}
		if !n.paused {
			n.core.Tick()
			n.flush()
		}
		n.scheduleTick(n.tickEvery())
	})
}

// run delivers something to the node: now, or when it resumes if paused;
// not at all if it is down or another incarnation.
func (n *chainNode) run(inc int, fn func()) bool {
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

// zkNotify: the ZooKeeper library has news for the coordinator (a session
// event, a fired watch). It reaches the loop a moment later; a stopped
// process notices only after it resumes (resume).
func (n *chainNode) zkNotify(inc int) {
	if n.inc != inc || n.core == nil {
		return
	}
	if n.paused {
		n.kickDue = true
		return
	}
	w := n.c.r.w
	w.after(w.between(100*time.Microsecond, 2*time.Millisecond), func() { n.kick(inc) })
}

// kick is RunCoordinator's loop waking: session events first (the event
// callback's SetSession(false) included), then a step.
func (n *chainNode) kick(inc int) {
	if n.inc != inc || n.core == nil {
		return
	}
	if n.paused {
		n.kickDue = true
		return
	}
	for len(n.sess.Events) > 0 {
		ev := <-n.sess.Events
		switch ev.State {
		case zk.StateDisconnected, zk.StateExpired:
			n.SetSession(false)
		}
		n.coord.Session(ev.State)
	}
	n.coordStep()
}

// coordStep steps the coordinator and schedules its next step.
func (n *chainNode) coordStep() {
	if n.core == nil || n.paused {
		return
	}
	wake := n.coord.Step(n.now())
	n.flush()
	if n.core == nil || wake.IsZero() {
		return
	}
	at := max(wake.UnixNano(), n.c.r.w.now+int64(time.Millisecond))
	if n.stepAt != 0 && n.stepAt <= at && n.stepAt > n.c.r.w.now {
		return // an earlier step is already scheduled
	}
	n.stepAt = at
	inc := n.inc
	n.c.r.w.at(at, func() {
		if n.inc != inc || n.stepAt != at {
			return
		}
		n.stepAt = 0
		if n.paused {
			n.kickDue = true
			return
		}
		n.coordStep()
	})
}

// SetSession implements chain.CoordNode, as Node.SetSession: losing the
// session stops serving at once; the Core follows.
func (n *chainNode) SetSession(ok bool) {
	if n.core == nil {
		return
	}
	n.session = ok
	n.core.SetSession(ok)
}

// SetConfig implements chain.CoordNode.
func (n *chainNode) SetConfig(cfg chain.Config) {
	if n.core != nil {
		n.core.SetConfig(cfg)
	}
}

// ExtendLease implements chain.CoordNode, as Node.ExtendLease.
func (n *chainNode) ExtendLease(started time.Time, d time.Duration) {
	n.leaseUntil = max(n.leaseUntil, started.UnixNano()+int64(d))
}

// serving is Node.serving: a live session and a lease still running on
// this node's clock.
func (n *chainNode) serving() bool { return n.session && n.c.r.w.now < n.leaseUntil }

// flush handles every Ready.
func (n *chainNode) flush() {
	for n.core != nil && n.core.HasReady() {
		n.handleReady()
	}
}

// handleReady is Node.handleReady with its persister inline: reports to
// the coordinator, what need not wait for the fsync (acks from a node that
// is not the tail, replies not marked Durable), the Save, then the rest
// (messages, durable replies, joiner catch-ups), as the persister sends
// them after the fsync.
func (n *chainNode) handleReady() {
	core := n.core
	rd := core.Ready()
	report := rd.SuspectsChanged || len(rd.Deposed) > 0
	var late []*pb.Message
	serving := n.serving()
	for _, m := range rd.Messages {
		switch {
		case m.Type == pb.MessageType_MSG_ACK && !core.IsTail(m.Chain), m.Type == pb.MessageType_MSG_VERSION_QUERY:
			n.send(m)
		case m.Type == pb.MessageType_MSG_VERSION:
			// The tail vouches for its committed sequence only while its
			// lease holds, as it answers a read.
			if serving || m.Refused {
				n.send(m)
			}
		default:
			late = append(late, m)
		}
	}
	// The Core lists the replies of one commit in map order; the real
	// Node hands each to its own waiting handler, so their order means
	// nothing, and sorting them keeps the world's draws in a fixed order.
	slices.SortStableFunc(rd.Replies, func(a, b chain.Reply) int { return cmpU64(a.Token, b.Token) })
	var lateReplies []chain.Reply
	for _, r := range rd.Replies {
		w, ok := n.waiters[r.Token]
		if !ok {
			continue
		}
		// SEEDED BUG (BugStaleTail): reads are served without the lease.
		if w.read && r.Status == pb.Status_STATUS_OK && !serving && n.c.bug != chain.BugStaleTail {
			r = chain.Reply{Token: r.Token, Status: pb.Status_STATUS_UNAVAILABLE, Epoch: r.Epoch, Err: "node has no live ZooKeeper session or its lease ran out"}
		}
		if !r.Durable || (w.read && len(rd.Persist) == 0) {
			delete(n.waiters, r.Token)
			n.reply(w, r)
		} else {
			lateReplies = append(lateReplies, r)
		}
	}
	core.Advance()
	if report {
		n.coord.Report(core.Suspects(), n.stepped(rd.Deposed))
	}
	if n.tornNext && len(rd.Persist) > 0 {
		// The torn-write fault: the power fails inside this Save, after
		// some of its snapshot replacements, or after the log's write but
		// before its fsync.
		n.tornNext = false
		w := n.c.r.w
		k := w.rng.IntN(replaces(rd.Persist) + 2)
		t := &tear{replaces: min(k, replaces(rd.Persist)), logWritten: k > replaces(rd.Persist)}
		n.disk.save(rd.Persist, t)
		n.crash(crashPower)
		return
	}
	n.disk.save(rd.Persist, nil)
	for _, m := range late {
		n.send(m)
	}
	for _, r := range lateReplies {
		if w, ok := n.waiters[r.Token]; ok {
			delete(n.waiters, r.Token)
			n.reply(w, r)
		}
	}
	for _, s := range rd.Synced {
		n.coord.Synced(s)
	}
	if report || len(rd.Synced) > 0 {
		n.scheduleStep()
	}
}

// stepped folds a Ready's Deposed into the node's report (Node.repStepped).
func (n *chainNode) stepped(ds []chain.ChainEpoch) map[int]uint64 {
	if n.repStepped == nil {
		n.repStepped = map[int]uint64{}
	}
	for _, d := range ds {
		n.repStepped[d.Chain] = max(n.repStepped[d.Chain], d.Epoch)
	}
	out := make(map[int]uint64, len(n.repStepped))
	for k, v := range n.repStepped {
		out[k] = v
	}
	return out
}

// scheduleStep wakes the coordinator's loop soon (the Reports and Synced
// channels it selects on).
func (n *chainNode) scheduleStep() {
	inc := n.inc
	n.c.r.w.after(100*time.Microsecond, func() {
		if n.inc == inc && n.core != nil {
			if n.paused {
				n.kickDue = true
				return
			}
			n.coordStep()
		}
	})
}

// send puts a copy of m on the network (the Core's messages may share
// entries with its state). A peer that is down drops it, as a failed
// stream does; the Core resends.
func (n *chainNode) send(m *pb.Message) {
	cp := proto.Clone(m).(*pb.Message)
	peer := n.c.node(cp.To)
	if peer == nil {
		return
	}
	n.c.r.net.send(int(n.id), int(cp.To), func() {
		peer.run(peer.inc, func() {
			if err := peer.core.Step(cp); err != nil {
				n.c.r.logf("n%d: step %v from %d: %v", peer.id, cp.Type, cp.From, err)
			}
		})
	}, nil)
}

// request is a client's attempt arriving at the node: Node.do, then
// Node.request on the loop, with the seeded bug that lives there.
func (n *chainNode) request(wt chainWaiter, chainID uint32, epoch uint64, u *pb.Update, key string) {
	if n.core == nil {
		n.respond(wt, nil, fmt.Errorf("node %d: connection refused", n.id))
		return
	}
	n.run(n.inc, func() {
		// SEEDED BUG (BugStaleTail): reads bypass the session and lease check.
		if !n.serving() && (!wt.read || n.c.bug != chain.BugStaleTail) {
			n.respond(wt, &chainResp{status: pb.Status_STATUS_UNAVAILABLE, err: "node has no live ZooKeeper session"}, nil)
			return
		}
		n.token++
		n.waiters[n.token] = wt
		switch {
		case wt.read && n.c.place.ReadAny:
			n.core.ReadAny(n.token, chainID, epoch, key)
		case wt.read:
			n.core.Read(n.token, chainID, epoch, key)
		default:
			n.core.Propose(n.token, chainID, epoch, u)
		}
	})
}

func (n *chainNode) reply(w chainWaiter, r chain.Reply) {
	n.respond(w, &chainResp{status: r.Status, swapped: r.Swapped, found: r.Found, value: r.Value, err: r.Err}, nil)
}

func (n *chainNode) respond(w chainWaiter, resp *chainResp, err error) {
	id := n.id
	n.c.r.net.send(int(n.id), clientEndpoint, func() { w.cl.answer(w.attempt, id, resp, err) }, nil)
}

// crash stops the process: the Core, the coordinator and the ZooKeeper
// connection go (the session lives on at the server until it expires), and
// the clients' connections reset.
func (n *chainNode) crash(mode crashMode) {
	if n.core == nil {
		return
	}
	var toks []uint64
	for t := range n.waiters {
		toks = append(toks, t)
	}
	slices.Sort(toks)
	for _, t := range toks {
		n.respond(n.waiters[t], nil, fmt.Errorf("node %d: connection reset", n.id))
	}
	n.core, n.coord = nil, nil
	n.inc++
	n.paused, n.held, n.kickDue = false, nil, false
	n.waiters = nil
	n.tornNext = false
	n.session = false
	n.repStepped = nil
	n.sess.notify = nil
	n.sess.setCut(true)
	n.sess.Close()
	if mode == crashPower {
		w := n.c.r.w
		n.disk.powerLoss(func(k int) int { return w.rng.IntN(k + 1) })
	}
}

func (n *chainNode) restart() {
	if n.core == nil {
		n.start()
	}
}

// pause stops the process: nothing runs, and the ZooKeeper server stops
// hearing it (its session may expire meanwhile).
func (n *chainNode) pause() {
	if n.core != nil && !n.paused {
		n.paused = true
		n.sess.setSilent(true)
	}
}

// resume lets the process run again: what arrived while it was stopped
// first, in order; the ZooKeeper library notices what happened to its
// session a moment later.
func (n *chainNode) resume() {
	if n.core == nil || !n.paused {
		return
	}
	n.paused = false
	n.sess.setSilent(false)
	held := n.held
	n.held = nil
	for _, fn := range held {
		if n.core == nil || n.paused {
			return
		}
		fn()
		n.flush()
	}
	if n.kickDue {
		n.kickDue = false
		n.zkNotify(n.inc)
	}
	n.coordStep()
}

// The cluster as the rest of the simulator sees it.

func (c *chainCluster) ids() []int {
	out := make([]int, len(c.nodes))
	for i := range c.nodes {
		out[i] = i + 1
	}
	return out
}

func (c *chainCluster) roles() []string {
	return []string{nemesis.RoleHead, nemesis.RoleMiddle, nemesis.RoleTail, nemesis.RoleMaster}
}

// resolve names the nodes holding a role now: head, middle or tail of any
// chain by its configuration in ZooKeeper, or the master.
func (c *chainCluster) resolve(role string) []int {
	if role == nemesis.RoleMaster {
		for _, n := range c.nodes {
			if n.coord != nil && n.coord.IsMaster() {
				return []int{int(n.id)}
			}
		}
		return nil
	}
	var out []int
	for i := range c.place.Chains {
		cfg := c.router.peek(i)
		ms := cfg.Members
		for k, m := range ms {
			switch {
			case role == nemesis.RoleHead && k == 0,
				role == nemesis.RoleTail && k == len(ms)-1,
				role == nemesis.RoleMiddle && k > 0 && k < len(ms)-1:
				if !slices.Contains(out, int(m.ID)) {
					out = append(out, int(m.ID))
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

func (c *chainCluster) up(id int) bool {
	n := c.node(uint64(id))
	return n != nil && n.core != nil
}

func (c *chainCluster) crash(id int, mode crashMode) { c.node(uint64(id)).crash(mode) }

func (c *chainCluster) tornWrite(id int, arm bool) {
	if n := c.node(uint64(id)); n.core != nil || !arm {
		n.tornNext = arm
	}
}
func (c *chainCluster) restart(id int)              { c.node(uint64(id)).restart() }
func (c *chainCluster) pause(id int)                { c.node(uint64(id)).pause() }
func (c *chainCluster) resume(id int)               { c.node(uint64(id)).resume() }
func (c *chainCluster) skew(id int, rate float64)   { c.node(uint64(id)).rate = rate }
func (c *chainCluster) writeback(id int)            { c.node(uint64(id)).disk.writeback() }
func (c *chainCluster) newClient(i int) storeClient { return newChainClient(c, i) }

// kinds: the nemesis's zk-partition, which only a store on ZooKeeper has.
func (c *chainCluster) kinds() []kindWeight { return []kindWeight{{nemesis.KindZKPartition, 3}} }

// settleTime: a node the master took out for suspicion is held out of the
// chains for up to 30 s (chain's holdMax) after it was last suspected, and
// suspicions come until the last restarted node is back; the chains are
// whole only after that.
func (c *chainCluster) settleTime() time.Duration { return 40 * time.Second }

// zkCut cuts a node from ZooKeeper (the nemesis's zk-partition), or heals
// one such cut.
func (c *chainCluster) zkCut(id int, cut bool) {
	n := c.node(uint64(id))
	if cut {
		n.zkCuts++
	} else if n.zkCuts > 0 {
		n.zkCuts--
	}
	if n.sess != nil && n.core != nil {
		n.sess.setCut(n.zkCuts > 0)
	}
}

func (c *chainCluster) refusals() []string {
	var out []string
	for _, n := range c.nodes {
		if n.refused != nil {
			out = append(out, fmt.Sprintf("node %d refuses to start: %v", n.id, n.refused))
		}
	}
	return out
}

// converged reports whether every chain's configuration in ZooKeeper is
// whole (its preferred members, nobody joining or deposed) and every member
// is up at that epoch, has committed all it holds, and holds the same data.
func (c *chainCluster) converged() (bool, string) {
	for _, n := range c.nodes {
		if n.core == nil {
			if n.refused != nil {
				return false, fmt.Sprintf("node %d refuses to start: %v", n.id, n.refused)
			}
			return false, fmt.Sprintf("node %d is down", n.id)
		}
	}
	summary := ""
	for i := range c.place.Chains {
		cfg := c.router.peek(i)
		if len(cfg.Members) != c.place.Replicas || cfg.Joining != nil || len(cfg.Deposed) > 0 {
			return false, fmt.Sprintf("chain %d epoch %d is not whole: members %v joining %v deposed %v", i, cfg.Epoch, cfg.Members, cfg.Joining, cfg.Deposed)
		}
		var first string
		var firstID uint64
		var seq uint64
		for _, m := range cfg.Members {
			st, d, _ := c.node(m.ID).core.Digest(i)
			switch {
			case st.Epoch != cfg.Epoch:
				return false, fmt.Sprintf("chain %d: node %d at epoch %d of %d", i, m.ID, st.Epoch, cfg.Epoch)
			case st.Committed != st.LastSeq:
				return false, fmt.Sprintf("chain %d: node %d committed %d of %d", i, m.ID, st.Committed, st.LastSeq)
			case first == "":
				first, firstID, seq = d, m.ID, st.LastSeq
			case st.LastSeq != seq:
				return false, fmt.Sprintf("chain %d: node %d at seq %d, node %d at %d", i, firstID, seq, m.ID, st.LastSeq)
			case d != first:
				return false, fmt.Sprintf("chain %d: nodes %d and %d hold different data at seq %d (digest %.12s vs %.12s)", i, firstID, m.ID, seq, first, d)
			}
		}
		summary += fmt.Sprintf(" chain %d epoch %d seq %d digest %.12s;", i, cfg.Epoch, seq, first)
	}
	return true, fmt.Sprintf("%d chains agree:%s", c.place.Chains, summary)
}
