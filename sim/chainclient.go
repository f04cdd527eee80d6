package sim

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/chainraft/chainraft/chain"
	pb "github.com/chainraft/chainraft/chain/chainpb"
	"github.com/chainraft/chainraft/histories"
	"github.com/chainraft/chainraft/kv"
)

// chainRouter is chain.Router on the simulated clock: the clients' shared
// view of every chain's configuration, kept by a ZooKeeper session of its
// own (never cut: clients sit outside every partition) with a watch per
// chain, and re-read on a client's request (Refresh). A client waiting for
// a configuration change is woken by the next update.
type chainRouter struct {
	c       *chainCluster
	sess    *zkSession
	cfgs    []chain.Config
	watches []<-chan zk.Event
	// waiters are the clients waiting for a configuration change, each
	// at most once.
	waiters []*chainClient
	// headRead is the client half of chain.BugHeadRead (Router.PlantBug).
	headRead bool
}

func newChainRouter(c *chainCluster) *chainRouter {
	r := &chainRouter{c: c, cfgs: make([]chain.Config, c.place.Chains), watches: make([]<-chan zk.Event, c.place.Chains),
		headRead: c.bug == chain.BugHeadRead}
	for i := range r.cfgs {
		r.cfgs[i].Chain = i
	}
	r.sess = c.zk.connect(c.sessionTimeout)
	r.sess.notify = func() {
		w := c.r.w
		w.after(w.between(100*time.Microsecond, 2*time.Millisecond), r.poll)
	}
	r.poll()
	return r
}

// poll is Router.watch for every chain: a chain whose watch is not armed
// (or fired) is read again with a new watch; a read that fails is retried
// 100 ms later.
func (r *chainRouter) poll() {
	for len(r.sess.Events) > 0 {
		<-r.sess.Events
	}
	retry := false
	for i := range r.cfgs {
		if ch := r.watches[i]; ch != nil {
			select {
			case <-ch:
				r.watches[i] = nil
			default:
				continue
			}
		}
		path := chain.Paths{}.Chain(i)
		b, _, ch, err := r.sess.GetW(path)
		if errors.Is(err, zk.ErrNoNode) {
			var ok bool
			ok, _, ch, err = r.sess.ExistsW(path)
			if err == nil && ok {
				retry = true
			}
		} else if err == nil {
			if cfg, derr := chain.DecodeConfig(b); derr == nil {
				r.update(cfg)
			}
		}
		if err != nil {
			retry = true
			continue
		}
		r.watches[i] = ch
	}
	if retry {
		r.c.r.w.after(100*time.Millisecond, r.poll)
	}
}

// refresh is Router.Refresh: chain i is re-read directly, a moment later.
func (r *chainRouter) refresh(i int) {
	w := r.c.r.w
	w.after(w.between(200*time.Microsecond, 3*time.Millisecond), func() {
		if b, _, err := r.sess.Get(chain.Paths{}.Chain(i)); err == nil {
			if cfg, err := chain.DecodeConfig(b); err == nil {
				r.update(cfg)
			}
		}
	})
}

func (r *chainRouter) update(cfg chain.Config) {
	if cfg.Chain < 0 || cfg.Chain >= len(r.cfgs) || cfg.Epoch <= r.cfgs[cfg.Chain].Epoch {
		return
	}
	r.cfgs[cfg.Chain] = cfg
	ws := r.waiters
	r.waiters = nil
	for _, cl := range ws {
		cl.changed()
	}
}

// peek is chain i's configuration as ZooKeeper holds it now (for the
// fault injector's roles and the end checks, not for the clients).
func (r *chainRouter) peek(i int) chain.Config {
	n := r.c.zk.nodes[chain.Paths{}.Chain(i)]
	if n == nil {
		return chain.Config{Chain: i}
	}
	cfg, err := chain.DecodeConfig(n.data)
	if err != nil {
		return chain.Config{Chain: i}
	}
	return cfg
}

// chainClient is chain.Client on the simulated clock: writes to the key's
// chain head, reads to its tail (with CRAQ reads, its members in turn), by
// a configuration cached per client (kept for a random [configMaxAge/2,
// configMaxAge), re-read from the router after an error), retried with the same request id after a
// refresh until the deadline; the same rule for when a failed write is
// indeterminate (an attempt may have reached a head that accepted it).
type chainClient struct {
	c        *chainCluster
	clientID uint64
	seq      uint64
	cache    []chainCached
	reads    uint64
	lastNode uint64

	op       histories.Operation
	upd      *pb.Update
	key      string
	chainIdx int
	write    bool
	deadline int64
	maybe    bool
	last     error
	attempt  int
	waiting  bool
	// pausedAt numbers the wait in progress (0: none), waits counts them;
	// listening says the client is among the router's waiters.
	pausedAt  int
	waits     int
	listening bool
	done      func(histories.Operation, error)
}

type chainCached struct {
	cfg     chain.Config
	expires int64
	doubted bool
}

// Client timing, as chain/client.go has it.
const (
	chainAttemptTimeout = 2 * time.Second
	chainConfigMaxAge   = 5 * time.Second
	chainRetryWait      = 20 * time.Millisecond
)

func newChainClient(c *chainCluster, _ int) *chainClient {
	return &chainClient{c: c, clientID: c.r.w.rng.Uint64() | 1, cache: make([]chainCached, c.place.Chains)}
}

func (cl *chainClient) lastNodeName() string {
	if cl.lastNode == 0 {
		return ""
	}
	return strconv.FormatUint(cl.lastNode, 10)
}

// config is Client.config: the cached copy, re-read from the router when
// doubted, missing or old.
func (cl *chainClient) config(i int) chain.Config {
	w := cl.c.r.w
	e := &cl.cache[i]
	if e.doubted || e.cfg.Epoch == 0 || w.now >= e.expires {
		age := chainConfigMaxAge/2 + time.Duration(w.rng.Int64N(int64(chainConfigMaxAge/2)))
		*e = chainCached{cfg: cl.c.router.cfgs[i], expires: w.now + int64(age)}
	}
	return e.cfg
}

func (cl *chainClient) doubt(i int) {
	cl.cache[i].doubted = true
	cl.c.router.refresh(i)
}

func (cl *chainClient) do(op histories.Operation, deadline int64, done func(histories.Operation, error)) {
	cl.op, cl.deadline, cl.done = op, deadline, done
	cl.key = op.Key
	cl.chainIdx = chain.ChainOf(op.Key, cl.c.place.Chains)
	cl.write = op.Op != histories.Get
	cl.maybe, cl.last = false, nil
	if cl.write {
		cl.seq++
		cl.upd = &pb.Update{Key: op.Key, Value: op.Value, Expect: op.Expect, Client: cl.clientID, ClientSeq: cl.seq}
		switch op.Op {
		case histories.Put:
			cl.upd.Op = pb.Op_OP_PUT
		case histories.Append:
			cl.upd.Op = pb.Op_OP_APPEND
		case histories.CAS:
			cl.upd.Op = pb.Op_OP_CAS
		}
	}
	cl.next()
}

// next makes the next attempt, or ends the operation at its deadline.
func (cl *chainClient) next() {
	w := cl.c.r.w
	if w.now >= cl.deadline {
		cl.finish()
		return
	}
	cfg := cl.config(cl.chainIdx)
	if cfg.Epoch == 0 || len(cfg.Members) == 0 {
		cl.last = fmt.Errorf("%w: chain %d has no configuration yet", chain.ErrUnavailable, cl.chainIdx)
		cl.wait()
		return
	}
	target := cfg.Head()
	if !cl.write {
		target = cfg.Tail()
		switch {
		case cl.c.place.ReadAny:
			// Client.readMember: the members in turn from a place set by
			// the client id, so a retry goes to the next member.
			target = cfg.Members[(cl.clientID+cl.reads)%uint64(len(cfg.Members))]
			cl.reads++
		case cl.c.router.headRead:
			cl.reads++
			if cl.reads%2 == 1 {
				target = cfg.Head() // SEEDED BUG (BugHeadRead): every other read at the head
			}
		}
	}
	cl.attempt++
	cl.waiting = true
	a := cl.attempt
	node := cl.c.node(target.ID)
	wt := chainWaiter{cl: cl, attempt: a, read: !cl.write}
	var upd *pb.Update
	if cl.write {
		upd = cloneUpdate(cl.upd)
	}
	chainID, epoch, key := uint32(cl.chainIdx), cfg.Epoch, cl.key
	cl.c.r.net.send(clientEndpoint, int(target.ID), func() { node.request(wt, chainID, epoch, upd, key) }, nil)
	expiry := min(w.now+int64(chainAttemptTimeout), cl.deadline)
	w.at(expiry, func() {
		if cl.attempt == a && cl.waiting {
			cl.answer(a, target.ID, nil, errors.New("context deadline exceeded"))
		}
	})
}

func cloneUpdate(u *pb.Update) *pb.Update {
	return &pb.Update{Op: u.Op, Key: u.Key, Value: u.Value, Expect: u.Expect, Client: u.Client, ClientSeq: u.ClientSeq}
}

// wait is Client.wait: until a configuration changes or a short backoff
// passes, whichever is first.
func (cl *chainClient) wait() {
	w := cl.c.r.w
	cl.waits++
	a := cl.waits
	cl.pausedAt = a
	if !cl.listening {
		cl.listening = true
		cl.c.router.waiters = append(cl.c.router.waiters, cl)
	}
	w.at(min(w.now+int64(chainRetryWait), cl.deadline), func() { cl.resume(a) })
}

// changed: a configuration changed while the client may be waiting.
func (cl *chainClient) changed() {
	cl.listening = false
	if a := cl.pausedAt; a != 0 {
		cl.c.r.w.after(0, func() { cl.resume(a) })
	}
}

func (cl *chainClient) resume(a int) {
	if cl.pausedAt != a || cl.done == nil {
		return
	}
	cl.pausedAt = 0
	cl.next()
}

// answer ends attempt a: a node's response, or err when the call failed.
func (cl *chainClient) answer(a int, id uint64, resp *chainResp, err error) {
	if a != cl.attempt || !cl.waiting {
		return
	}
	cl.waiting = false
	kind := "read from"
	if cl.write {
		kind = "write to"
	}
	switch {
	case err != nil:
		if cl.write {
			cl.maybe = true
		}
		cl.last = fmt.Errorf("%s node %d: %w", kind, id, err)
	case resp.status == pb.Status_STATUS_OK:
		cl.lastNode = id
		op := cl.op
		switch op.Op {
		case histories.Get:
			op.Output, op.Found = resp.value, resp.found
		case histories.CAS:
			op.Swapped = resp.swapped
		}
		cl.complete(op, nil)
		return
	default:
		cl.lastNode = id
		cl.last = fmt.Errorf("node %d: %w", id, chainStatusErr(resp.status, resp.err))
		if resp.status == pb.Status_STATUS_UNKNOWN && cl.write {
			cl.maybe = true
		}
	}
	cl.doubt(cl.chainIdx)
	cl.wait()
}

// chainStatusErr is chain's statusErr: the error a status maps to.
func chainStatusErr(st pb.Status, msg string) error {
	switch st {
	case pb.Status_STATUS_WRONG_EPOCH:
		return fmt.Errorf("%w: %s", chain.ErrWrongEpoch, msg)
	case pb.Status_STATUS_NOT_HEAD:
		return fmt.Errorf("%w: %s", chain.ErrNotHead, msg)
	case pb.Status_STATUS_NOT_TAIL:
		return fmt.Errorf("%w: %s", chain.ErrNotTail, msg)
	case pb.Status_STATUS_UNAVAILABLE:
		return fmt.Errorf("%w: %s", chain.ErrUnavailable, msg)
	default:
		return fmt.Errorf("%w: %s", chain.ErrUnknown, msg)
	}
}

func (cl *chainClient) finish() {
	last := cl.last
	if last == nil {
		last = errors.New("context deadline exceeded")
	}
	switch {
	case !cl.write:
		cl.complete(cl.op, kv.Definite(fmt.Errorf("chain %d read %q: %w", cl.chainIdx, cl.key, last)))
	case !cl.maybe:
		cl.complete(cl.op, kv.Definite(last))
	default:
		cl.complete(cl.op, fmt.Errorf("chain %d write: %w (context deadline exceeded)", cl.chainIdx, last))
	}
}

func (cl *chainClient) complete(op histories.Operation, err error) {
	done := cl.done
	cl.done = nil
	cl.attempt++ // any attempt or wait still pending is void
	cl.pausedAt = 0
	if op.Node == "" {
		op.Node = cl.lastNodeName()
	}
	done(op, err)
}
