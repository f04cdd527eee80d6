package chain

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/chainraft/chainraft/zkrecipes"
)

// Where the chain store keeps its configuration in ZooKeeper, under a root
// (RootPath by default; the harness gives every run its own,
// /chainraft/<run id>, so that runs against one external ensemble never see
// each other's chains):
//
//	<root>/nodes/<id>     ephemeral, JSON LiveNode {"addr":..., "synced":{"<chain>":epoch}, "stepped":{..}, "suspects":[..]}
//	<root>/chains/<i>     persistent, JSON Config {"chain":i,"epoch":E,"members":[{"id":..,"addr":..}],"joining":{..},"deposed":[..]}
//	<root>/master/_c_<guid>-n_<seq>   ephemeral-sequential election znodes
const (
	RootPath   = "/chainraft"
	NodesPath  = RootPath + "/nodes"
	ChainsPath = RootPath + "/chains"
	MasterPath = RootPath + "/master"
)

// ChainPath is chain i's configuration znode under RootPath.
func ChainPath(i int) string { return Paths{}.Chain(i) }

// NodePath is node id's registration znode under RootPath.
func NodePath(id uint64) string { return Paths{}.Node(id) }

// Paths are the store's znodes under one root.
type Paths struct {
	// Root is an absolute znode path; empty means RootPath.
	Root string
}

// CheckRoot refuses a root ZooKeeper would not take as a path.
func CheckRoot(root string) error {
	if root == "" {
		return nil
	}
	if !strings.HasPrefix(root, "/") || strings.HasSuffix(root, "/") || strings.Contains(root, "//") {
		return fmt.Errorf("chain: ZooKeeper root %q must be an absolute path without a trailing slash", root)
	}
	return nil
}

// RootOf is root, or RootPath when empty.
func (p Paths) RootOf() string {
	if p.Root == "" {
		return RootPath
	}
	return p.Root
}

// Nodes is the parent of the node registrations.
func (p Paths) Nodes() string { return p.RootOf() + "/nodes" }

// Chains is the parent of the chain configurations.
func (p Paths) Chains() string { return p.RootOf() + "/chains" }

// Master is the master election's directory.
func (p Paths) Master() string { return p.RootOf() + "/master" }

// Chain is chain i's configuration znode.
func (p Paths) Chain(i int) string { return p.Chains() + "/" + strconv.Itoa(i) }

// Node is node id's registration znode.
func (p Paths) Node(id uint64) string { return p.Nodes() + "/" + strconv.FormatUint(id, 10) }

// create makes the root (and its parents) and the store's directories.
func (p Paths) create(conn ZKConn) error {
	var dirs []string
	root := p.RootOf()
	for i := 1; i < len(root); i++ {
		if root[i] == '/' {
			dirs = append(dirs, root[:i])
		}
	}
	dirs = append(dirs, root, p.Nodes(), p.Chains(), p.Master())
	for _, d := range dirs {
		if _, err := conn.Create(d, nil, zk.FlagPersistent, zk.WorldACL(zk.PermAll)); err != nil && !errors.Is(err, zk.ErrNodeExists) {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	return nil
}

// CoordinatorConfig is what a node's coordinator needs.
type CoordinatorConfig struct {
	ZK []string
	// Root is where the store's znodes live (empty: RootPath).
	Root           string
	SessionTimeout time.Duration
	ID             uint64
	Addr           string
	Placement      Placement
	Logf           func(format string, args ...any)
	// OnWatch, if set, is told of every ZooKeeper watch the coordinator
	// arms; its driver steps the coordinator when one fires.
	OnWatch func(<-chan zk.Event)
}

// MaxSessionTimeout is the longest session timeout a node may ask for:
// ZooKeeper's default maxSessionTimeout, 20 × the default tickTime of 2 s
// (internal/zkserver allows 120 × 500 ms = 60 s). A server grants at most its
// maximum, silently; a node whose lease assumed the longer requested timeout
// would keep serving after its shorter real session expired, so longer
// requests are refused up front. Shorter ones are safe: a server that
// raises a request to its minimum only makes the lease conservative.
const MaxSessionTimeout = 40 * time.Second

// MinSessionTimeout is the shortest: below it the lease loop (every sixth
// of the timeout) would spin.
const MinSessionTimeout = 100 * time.Millisecond

// ErrSessionTimeout is wrapped by CheckSessionTimeout.
var ErrSessionTimeout = errors.New("chain: session timeout out of range")

// CheckSessionTimeout rejects a session timeout ZooKeeper may not grant as
// asked (see MaxSessionTimeout).
func CheckSessionTimeout(d time.Duration) error {
	if d < MinSessionTimeout || d > MaxSessionTimeout {
		return fmt.Errorf("%w: %v is outside [%v, %v]: ZooKeeper caps a session at its maxSessionTimeout "+
			"(default 20 × tickTime = 40 s) without telling the client, and the node's lease must not outlive its session",
			ErrSessionTimeout, d, MinSessionTimeout, MaxSessionTimeout)
	}
	return nil
}

// zkLog receives go-zookeeper's log lines and keeps one fact from them: the
// session timeout the server granted, which the library reports nowhere
// else (a server grants at most its maxSessionTimeout, whatever was asked).
// Everything else is dropped, as before.
type zkLog struct {
	grantedMs atomic.Int64
	got       chan struct{} // closed at the first grant
	once      sync.Once
}

// zkAuthenticatedFormat is go-zookeeper's (v1.0.4) log line after a session
// is established; its second argument is the negotiated timeout in ms.
const zkAuthenticatedFormat = "authenticated: id=%d, timeout=%d"

func (l *zkLog) Printf(format string, args ...any) {
	if format != zkAuthenticatedFormat || len(args) != 2 {
		return
	}
	ms, ok := args[1].(int32)
	if !ok || ms <= 0 {
		return
	}
	l.grantedMs.Store(int64(ms))
	l.once.Do(func() { close(l.got) })
}

// granted is the negotiated session timeout, 0 while unknown.
func (l *zkLog) granted() time.Duration { return time.Duration(l.grantedMs.Load()) * time.Millisecond }

// CoordNode is what a coordinator drives: a Node, or the deterministic
// simulator's model of one.
type CoordNode interface {
	// SetSession says whether the node may serve with a live session.
	SetSession(ok bool)
	// SetConfig hands over a chain's configuration as read.
	SetConfig(Config)
	// ExtendLease: a ZooKeeper request that started at started succeeded,
	// so the session lives until at least started + the session timeout;
	// the node may serve until started + d.
	ExtendLease(started time.Time, d time.Duration)
}

// Coordinator connects a node to ZooKeeper: it registers the node, feeds it
// configurations and session state, reports joiner progress and suspects,
// keeps the node's lease fresh, and campaigns for master, running the
// master when it wins.
//
// It is one state machine with no goroutine, timer or clock of its own, so
// that the same code runs in a node process (RunCoordinator, which owns the
// ZooKeeper connection and the goroutines) and in the deterministic
// simulator. Its driver calls Session on every session event, Report and
// Synced on the node's news, and Step whenever a watch it was told of
// (CoordinatorConfig.OnWatch) fires, an event came, or the time Step last
// returned arrives. Step issues the ZooKeeper requests due (each may block
// on a real connection, as any request does) and returns. Time comes from
// the caller: now, passed to Step, must be taken before the requests Step
// makes, since the lease counts from it.
type Coordinator struct {
	cfg   CoordinatorConfig
	paths Paths
	conn  ZKConn
	node  CoordNode
	// granted is the server's session timeout when it is shorter than the
	// one asked for (SetGranted).
	granted time.Duration

	// live: the connection has a session (the last session event said
	// so); nothing is sent without one.
	live     bool
	dirsMade bool
	// registered: the node's znode is this session's; until then the node
	// does not serve. oldOwner is the watch on a znode still held by an
	// earlier incarnation's session.
	registered bool
	oldOwner   <-chan zk.Event
	retryAt    time.Time // register or dirs retry
	leaseAt    time.Time // next lease request
	// cfgW is each chain's configuration watch (nil: read it now);
	// cfgRetry when a failed read is retried.
	cfgW     []<-chan zk.Event
	cfgRetry time.Time

	synced      map[int]uint64
	stepped     map[int]uint64
	suspects    []uint64
	reportDirty bool
	reportAt    time.Time

	cand       *zkrecipes.Candidacy
	candWatch  <-chan zk.Event
	campaignAt time.Time
	master     *master
}

// NewCoordinator is a coordinator for node on conn, a connection whose
// session the driver reports through Session. Nothing is sent before the
// first Step.
func NewCoordinator(cfg CoordinatorConfig, conn ZKConn, node CoordNode) *Coordinator {
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	return &Coordinator{cfg: cfg, paths: Paths{Root: cfg.Root}, conn: conn, node: node,
		cfgW: make([]<-chan zk.Event, cfg.Placement.Chains), synced: map[int]uint64{}, stepped: map[int]uint64{}}
}

// SetGranted records the session timeout the server granted; a grant
// shorter than the one asked for shortens the lease.
func (c *Coordinator) SetGranted(d time.Duration) { c.granted = d }

// IsMaster reports whether this coordinator runs the master now.
func (c *Coordinator) IsMaster() bool { return c.master != nil }

// Session takes a session event. Losing the session stops the node from
// serving at once; a session again (the same one after a disconnect, or a
// new one after an expiry) makes the next Step re-register, re-read every
// configuration and only then let the node serve.
func (c *Coordinator) Session(st zk.State) {
	switch st {
	case zk.StateHasSession:
		c.live, c.registered = true, false
		c.retryAt, c.leaseAt, c.cfgRetry, c.campaignAt, c.reportAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}
		// The configuration watches are set afresh: go-zookeeper re-sets
		// a connection's watches after a reconnect but drops them
		// silently when that fails (go-zookeeper/zk#83), and a node
		// waiting on a lost watch would miss every later configuration.
		clear(c.cfgW)
	case zk.StateDisconnected, zk.StateExpired, zk.StateConnecting, zk.StateAuthFailed:
		c.node.SetSession(false)
		c.live = false
	}
}

// Report takes the node's news for the master: the peers it suspects, and
// per chain the latest epoch it adopted while named deposed.
func (c *Coordinator) Report(suspects []uint64, stepped map[int]uint64) {
	c.suspects, c.stepped = suspects, stepped
	c.cfg.Logf("coordinator: suspects %v, stepped down %v", suspects, stepped)
	c.reportDirty, c.reportAt = true, time.Time{}
}

// Synced takes the node's news that it caught up as a joiner.
func (c *Coordinator) Synced(ce ChainEpoch) {
	c.synced[ce.Chain] = ce.Epoch
	c.cfg.Logf("coordinator: caught up on chain %d at epoch %d", ce.Chain, ce.Epoch)
	c.reportDirty, c.reportAt = true, time.Time{}
}

// Step does what is due at now and returns when it next needs a step if
// nothing else happens first (zero: only an event will call for one).
func (c *Coordinator) Step(now time.Time) time.Time {
	var wake time.Time
	at := func(t time.Time) {
		if wake.IsZero() || t.Before(wake) {
			wake = t
		}
	}
	if !c.live {
		return wake
	}
	if now.Before(c.retryAt) {
		at(c.retryAt)
		return wake
	}
	if !c.dirsMade {
		if err := c.paths.create(c.conn); err != nil {
			c.cfg.Logf("coordinator: %v", err)
			c.retryAt = now.Add(100 * time.Millisecond)
			at(c.retryAt)
			return wake
		}
		c.dirsMade = true
	}
	if !c.registered {
		if !c.register(now) {
			if c.oldOwner == nil {
				at(c.retryAt)
			}
			return wake
		}
		c.registered = true
		c.lease(now)
		c.readConfigs()
		c.node.SetSession(true)
		c.cfg.Logf("coordinator: registered %s as %s, session 0x%x", c.paths.Node(c.cfg.ID), c.cfg.Addr, c.conn.SessionID())
	}
	if !now.Before(c.leaseAt) {
		c.lease(now)
	}
	at(c.leaseAt)
	if !now.Before(c.cfgRetry) {
		c.watchConfigs(now)
	}
	if !c.cfgRetry.IsZero() {
		at(c.cfgRetry)
	}
	if c.reportDirty {
		if !now.Before(c.reportAt) {
			c.report(now)
		}
		if c.reportDirty {
			at(c.reportAt)
		}
	}
	if w := c.campaign(now); !w.IsZero() {
		at(w)
	}
	return wake
}

func (c *Coordinator) watch(ch <-chan zk.Event) {
	if c.cfg.OnWatch != nil && ch != nil {
		c.cfg.OnWatch(ch)
	}
}

func (c *Coordinator) liveData() []byte {
	ln := LiveNode{Addr: c.cfg.Addr, Synced: map[int]uint64{}, Stepped: map[int]uint64{}, Suspects: slices.Clone(c.suspects)}
	for k, v := range c.synced {
		ln.Synced[k] = v
	}
	for k, v := range c.stepped {
		ln.Stepped[k] = v
	}
	return ln.encode()
}

// register makes sure the node's ephemeral znode is this session's. If a
// previous incarnation's znode is still there (its session has not expired
// yet), it waits for it to go, so the master sees the old incarnation die
// and splices it out before the new one appears. It reports whether the
// node is registered; if not, the next step is due when oldOwner fires or
// at retryAt.
func (c *Coordinator) register(now time.Time) bool {
	if c.oldOwner != nil {
		select {
		case <-c.oldOwner:
			c.oldOwner = nil
		default:
			return false
		}
	}
	path := c.paths.Node(c.cfg.ID)
	for range 4 {
		_, st, err := c.conn.Get(path)
		switch {
		case errors.Is(err, zk.ErrNoNode):
			_, err := c.conn.Create(path, c.liveData(), zk.FlagEphemeral, zk.WorldACL(zk.PermAll))
			if err == nil || errors.Is(err, zk.ErrNodeExists) {
				continue // check ownership on the next turn
			}
			c.cfg.Logf("coordinator: create %s: %v", path, err)
		case err != nil:
			c.cfg.Logf("coordinator: get %s: %v", path, err)
		case st.EphemeralOwner == c.conn.SessionID():
			return true
		default:
			ok, _, ch, err := c.conn.ExistsW(path)
			if err == nil && ok {
				c.cfg.Logf("coordinator: %s held by an older session 0x%x; waiting for it to expire", path, st.EphemeralOwner)
				c.oldOwner = ch
				c.watch(ch)
				return false
			}
			if err != nil {
				c.cfg.Logf("coordinator: watch %s: %v", path, err)
				break
			}
			continue
		}
		break
	}
	c.retryAt = now.Add(100 * time.Millisecond)
	return false
}

// lease proves the session is alive now: a request that started at now and
// succeeded means the server heard from us after now, so the session cannot
// expire before now + timeout. The node serves until now + 2/3 of it. It
// runs every sixth of the timeout.
func (c *Coordinator) lease(now time.Time) {
	c.leaseAt = now.Add(c.sessionTimeout() / 6)
	if _, _, err := c.conn.Exists(c.paths.RootOf()); err == nil {
		c.node.ExtendLease(now, c.sessionTimeout()*2/3)
	}
}

// sessionTimeout is the session's real timeout: the one asked for, or the
// server's grant if that is shorter.
func (c *Coordinator) sessionTimeout() time.Duration {
	d := c.cfg.SessionTimeout
	if g := c.granted; g > 0 && g < d {
		d = g
	}
	return d
}

// readConfigs hands the node every chain's configuration as it is now, so
// a node back from a lost session serves under nothing older (the watches
// may still be armed from before).
func (c *Coordinator) readConfigs() {
	for i := 0; i < c.cfg.Placement.Chains; i++ {
		b, _, err := c.conn.Get(c.paths.Chain(i))
		if err != nil {
			continue
		}
		if cfg, err := DecodeConfig(b); err == nil && cfg.Chain == i {
			c.node.SetConfig(cfg)
		}
	}
}

// watchConfigs delivers each chain's configuration to the node whenever it
// changes: a one-shot watch, re-armed after each event with a fresh read.
func (c *Coordinator) watchConfigs(now time.Time) {
	c.cfgRetry = time.Time{}
	for i := range c.cfgW {
		if ch := c.cfgW[i]; ch != nil {
			select {
			case <-ch:
				c.cfgW[i] = nil
			default:
				continue
			}
		}
		path := c.paths.Chain(i)
		b, _, ch, err := c.conn.GetW(path)
		if errors.Is(err, zk.ErrNoNode) {
			var ok bool
			ok, _, ch, err = c.conn.ExistsW(path)
			if err == nil && ok {
				// Created meanwhile (the master wrote the chain's first
				// configuration between the two calls): read it with a
				// fresh watch on the next step. Keeping the exists watch
				// instead would wait for the configuration's next change,
				// which may never come — the node would sit out a whole
				// chain that runs without it.
				c.cfgRetry = now
				continue
			}
		} else if err == nil {
			if cfg, derr := DecodeConfig(b); derr != nil || cfg.Chain != i {
				c.cfg.Logf("coordinator: %s: bad config (%v): %s", path, derr, b)
			} else {
				c.node.SetConfig(cfg)
			}
		}
		if err != nil {
			c.cfg.Logf("coordinator: watch %s: %v", path, err)
			c.cfgRetry = now.Add(100 * time.Millisecond)
			continue
		}
		c.cfgW[i] = ch
		c.watch(ch)
	}
}

// report publishes the node's news for the master in its znode; a failed
// write is retried every second, since the node reports a catch-up once
// per epoch and the master promotes the joiner only when it reads it.
func (c *Coordinator) report(now time.Time) {
	if _, err := c.conn.Set(c.paths.Node(c.cfg.ID), c.liveData(), -1); err != nil {
		c.cfg.Logf("coordinator: report to the master: %v", err)
		c.reportAt = now.Add(time.Second)
		return
	}
	c.reportDirty = false
}

// campaign runs for master while the node lives, and steps the master
// while it leads. It returns when it next needs a step (zero: when a watch
// fires).
func (c *Coordinator) campaign(now time.Time) time.Time {
	if now.Before(c.campaignAt) {
		return c.campaignAt
	}
	if c.cand == nil {
		c.cand = zkrecipes.NewCandidacy(c.conn, c.paths.Master(), []byte(strconv.FormatUint(c.cfg.ID, 10)))
		c.candWatch = nil
	}
	leading, err := c.cand.Step()
	if ch := c.cand.Watch(); ch != nil && ch != c.candWatch {
		c.candWatch = ch
		c.watch(ch)
	}
	if err != nil || !leading {
		if c.master != nil {
			c.cfg.Logf("master: stepping down")
			c.master = nil
		}
		if err != nil {
			if errors.Is(err, zkrecipes.ErrSessionLost) {
				_ = c.cand.Resign()
				c.cand = nil
			}
			c.campaignAt = now.Add(200 * time.Millisecond)
			return c.campaignAt
		}
		if c.cand.Watch() == nil {
			// A predecessor kept vanishing: look again shortly.
			c.campaignAt = now.Add(200 * time.Millisecond)
			return c.campaignAt
		}
		return time.Time{}
	}
	if c.master == nil {
		c.cfg.Logf("master: elected (%s)", c.cand.Path())
		c.master = newMaster(c.conn, c.paths, c.cfg.ID, c.cfg.Placement, c.cand.Path(), c.cfg.Logf)
		c.master.onWatch = c.cfg.OnWatch
	}
	return c.master.step(now)
}

// RunCoordinator connects to ZooKeeper and drives a Coordinator for node
// until ctx ends, then closes the session (deleting the node's ephemeral
// znodes) and returns. It owns every goroutine it starts (one per armed
// watch, waiting for it to fire) and waits for them before returning.
func RunCoordinator(ctx context.Context, cfg CoordinatorConfig, node *Node) error {
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if err := CheckSessionTimeout(cfg.SessionTimeout); err != nil {
		return err
	}
	sess := make(chan zk.State, 64)
	zlog := &zkLog{got: make(chan struct{})}
	// The callback runs on go-zookeeper's goroutine: it must not block or
	// call the connection. Losing the connection stops the node at once;
	// the loop handles the rest.
	onEvent := func(ev zk.Event) {
		if ev.Type != zk.EventSession {
			return
		}
		switch ev.State {
		case zk.StateDisconnected, zk.StateExpired, zk.StateConnecting, zk.StateAuthFailed:
			node.SetSession(false)
		}
		select {
		case sess <- ev.State:
		default:
		}
	}
	conn, _, err := zk.Connect(cfg.ZK, cfg.SessionTimeout, zk.WithLogger(zlog), zk.WithLogInfo(true), zk.WithEventCallback(onEvent))
	if err != nil {
		return fmt.Errorf("chain coordinator: connect %v: %w", cfg.ZK, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	stopc := make(chan struct{})
	kickc := make(chan struct{}, 1)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		conn.Close() // fails any request still queued; ephemerals go with the session
		close(stopc)
		wg.Wait()
		node.SetSession(false)
	}()
	wg.Add(1)
	go func() { defer wg.Done(); <-ctx.Done(); conn.Close() }()
	// A fired watch kicks the loop; the goroutine waiting for it ends when
	// it fires (every watch does, at the latest with EventNotWatching when
	// the connection closes) or at stop.
	cfg.OnWatch = func(ch <-chan zk.Event) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-ch:
			case <-stopc:
				return
			}
			select {
			case kickc <- struct{}{}:
			default:
			}
		}()
	}

	if err := waitSession(ctx, sess, cfg.ZK); err != nil {
		return err
	}
	// The grant is logged just after the session event: wait for it briefly,
	// so the first lease already uses it.
	select {
	case <-zlog.got:
		if g := zlog.granted(); g < cfg.SessionTimeout {
			cfg.Logf("coordinator: ZooKeeper granted a %v session of the %v asked; the lease follows the grant", g, cfg.SessionTimeout)
		}
	case <-time.After(time.Second):
		cfg.Logf("coordinator: session timeout grant not seen; the lease assumes the %v asked (at most %v)", cfg.SessionTimeout, MaxSessionTimeout)
	case <-ctx.Done():
		return ctx.Err()
	}
	c := NewCoordinator(cfg, conn, node)
	c.Session(zk.StateHasSession)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		c.SetGranted(zlog.granted())
		wake := c.Step(time.Now())
		if ctx.Err() != nil {
			return nil
		}
		timer.Stop()
		var timerc <-chan time.Time
		if !wake.IsZero() {
			timer.Reset(max(time.Until(wake), 0))
			timerc = timer.C
		}
		select {
		case <-ctx.Done():
			return nil
		case <-timerc:
		case <-kickc:
		case st := <-sess:
			c.Session(st)
			if st == zk.StateHasSession {
				cfg.Logf("coordinator: session 0x%x live", conn.SessionID())
			}
		case <-node.Reports():
			c.Report(node.Report())
		case ce := <-node.Synced():
			c.Synced(ce)
		}
	}
}

func waitSession(ctx context.Context, sess <-chan zk.State, addrs []string) error {
	t := time.NewTimer(zkrecipes.ConnectTimeout)
	defer t.Stop()
	for {
		select {
		case st := <-sess:
			if st == zk.StateHasSession {
				return nil
			}
		case <-t.C:
			return fmt.Errorf("chain coordinator: %w with %v", zkrecipes.ErrNoSession, addrs)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
