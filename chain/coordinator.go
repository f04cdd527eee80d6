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
func (p Paths) create(conn *zk.Conn) error {
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

// coordinator connects a Node to ZooKeeper: it registers the node, feeds it
// configurations and session state, reports joiner progress, keeps the
// node's lease fresh, and campaigns for master. RunCoordinator owns every
// goroutine it starts and waits for them before returning.
type coordinator struct {
	cfg   CoordinatorConfig
	paths Paths
	node  *Node
	conn  *zk.Conn
	sess  chan zk.State
	zlog  *zkLog

	mu       sync.Mutex
	synced   map[int]uint64
	stepped  map[int]uint64
	suspects []uint64
}

// RunCoordinator runs until ctx ends, then closes the session (deleting the
// node's ephemeral znodes) and returns.
func RunCoordinator(ctx context.Context, cfg CoordinatorConfig, node *Node) error {
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if err := CheckSessionTimeout(cfg.SessionTimeout); err != nil {
		return err
	}
	c := &coordinator{cfg: cfg, paths: Paths{Root: cfg.Root}, node: node, sess: make(chan zk.State, 64), synced: map[int]uint64{}, stepped: map[int]uint64{},
		zlog: &zkLog{got: make(chan struct{})}}
	conn, _, err := zk.Connect(cfg.ZK, cfg.SessionTimeout, zk.WithLogger(c.zlog), zk.WithLogInfo(true),
		zk.WithEventCallback(c.event))
	if err != nil {
		return fmt.Errorf("chain coordinator: connect %v: %w", cfg.ZK, err)
	}
	c.conn = conn
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		conn.Close() // fails any request still queued; ephemerals go with the session
		wg.Wait()
		node.SetSession(false)
	}()
	goFunc := func(f func()) {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}
	goFunc(func() { <-ctx.Done(); conn.Close() })

	if err := c.waitSession(ctx); err != nil {
		return err
	}
	// The grant is logged just after the session event: wait for it briefly,
	// so the first lease already uses it.
	select {
	case <-c.zlog.got:
		if g := c.zlog.granted(); g < cfg.SessionTimeout {
			cfg.Logf("coordinator: ZooKeeper granted a %v session of the %v asked; the lease follows the grant", g, cfg.SessionTimeout)
		}
	case <-time.After(time.Second):
		cfg.Logf("coordinator: session timeout grant not seen; the lease assumes the %v asked (at most %v)", cfg.SessionTimeout, MaxSessionTimeout)
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := c.paths.create(conn); err != nil {
		return fmt.Errorf("chain coordinator: %w", err)
	}
	if err := c.register(ctx); err != nil {
		return err
	}
	c.lease()
	c.readConfigs()
	node.SetSession(true)
	cfg.Logf("coordinator: registered %s as %s, session 0x%x", c.paths.Node(cfg.ID), cfg.Addr, conn.SessionID())

	goFunc(func() { c.leaseLoop(ctx) })
	for i := 0; i < cfg.Placement.Chains; i++ {
		goFunc(func() { c.watchConfig(ctx, i) })
	}
	goFunc(func() { c.campaign(ctx) })

	// reportDirty: a synced report not yet written (ZooKeeper was
	// unreachable); retried every second, since the Core reports once per
	// epoch and the master promotes the joiner only when it reads it.
	reportDirty := false
	report := func() {
		if _, err := conn.Set(c.paths.Node(cfg.ID), c.liveData(), -1); err != nil {
			reportDirty = true
			cfg.Logf("coordinator: report synced chains: %v", err)
			return
		}
		reportDirty = false
	}
	retry := time.NewTicker(time.Second)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-retry.C:
			if reportDirty {
				report()
			}
		case st := <-c.sess:
			if st != zk.StateHasSession {
				continue
			}
			// A session again (the same one after a disconnect, or a new one
			// after expiry): make sure we are registered, re-read every
			// configuration, and only then serve.
			if err := c.register(ctx); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				cfg.Logf("coordinator: re-register: %v", err)
				continue
			}
			c.lease()
			c.readConfigs()
			node.SetSession(true)
			cfg.Logf("coordinator: session 0x%x live again", conn.SessionID())
		case <-node.Reports():
			suspects, stepped := node.Report()
			c.mu.Lock()
			c.suspects, c.stepped = suspects, stepped
			c.mu.Unlock()
			cfg.Logf("coordinator: suspects %v, stepped down %v", suspects, stepped)
			report()
		case ce := <-node.Synced():
			c.mu.Lock()
			c.synced[ce.Chain] = ce.Epoch
			c.mu.Unlock()
			cfg.Logf("coordinator: caught up on chain %d at epoch %d", ce.Chain, ce.Epoch)
			report()
		}
	}
}

// event runs on go-zookeeper's goroutine: it must not block or call the
// connection. Losing the connection stops the node at once; regaining a
// session is handled by the coordinator loop.
func (c *coordinator) event(ev zk.Event) {
	if ev.Type != zk.EventSession {
		return
	}
	switch ev.State {
	case zk.StateDisconnected, zk.StateExpired, zk.StateConnecting, zk.StateAuthFailed:
		c.node.SetSession(false)
	}
	select {
	case c.sess <- ev.State:
	default:
	}
}

func (c *coordinator) waitSession(ctx context.Context) error {
	t := time.NewTimer(zkrecipes.ConnectTimeout)
	defer t.Stop()
	for {
		select {
		case st := <-c.sess:
			if st == zk.StateHasSession {
				return nil
			}
		case <-t.C:
			return fmt.Errorf("chain coordinator: %w with %v", zkrecipes.ErrNoSession, c.cfg.ZK)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (c *coordinator) liveData() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	ln := LiveNode{Addr: c.cfg.Addr, Synced: map[int]uint64{}, Stepped: map[int]uint64{}, Suspects: slices.Clone(c.suspects)}
	for k, v := range c.synced {
		ln.Synced[k] = v
	}
	for k, v := range c.stepped {
		ln.Stepped[k] = v
	}
	return ln.encode()
}

// register creates the node's ephemeral znode. If a previous incarnation's
// znode is still there (its session has not expired yet), it waits for it
// to go, so the master sees the old incarnation die and splices it out
// before the new one appears.
func (c *coordinator) register(ctx context.Context) error {
	path := c.paths.Node(c.cfg.ID)
	for ctx.Err() == nil {
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
			return nil
		default:
			ok, _, ch, err := c.conn.ExistsW(path)
			if err == nil && ok {
				c.cfg.Logf("coordinator: %s held by an older session 0x%x; waiting for it to expire", path, st.EphemeralOwner)
				select {
				case <-ch:
				case <-ctx.Done():
				}
			}
			continue
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
		}
	}
	return ctx.Err()
}

// lease proves the session is alive now: a request that started at t0 and
// succeeded means the server heard from us after t0, so the session cannot
// expire before t0 + timeout. The node serves until t0 + 2/3 of it.
func (c *coordinator) lease() {
	t0 := time.Now()
	if _, _, err := c.conn.Exists(c.paths.RootOf()); err == nil {
		c.node.ExtendLease(t0, c.sessionTimeout()*2/3)
	}
}

// sessionTimeout is the session's real timeout: the one asked for, or the
// server's grant if that is shorter.
func (c *coordinator) sessionTimeout() time.Duration {
	d := c.cfg.SessionTimeout
	if g := c.zlog.granted(); g > 0 && g < d {
		d = g
	}
	return d
}

func (c *coordinator) leaseLoop(ctx context.Context) {
	t := time.NewTicker(c.sessionTimeout() / 6)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			c.lease()
		case <-ctx.Done():
			return
		}
	}
}

func (c *coordinator) readConfigs() {
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

// watchConfig delivers chain i's configuration to the node whenever it
// changes: a one-shot watch, re-armed after each event with a fresh read.
func (c *coordinator) watchConfig(ctx context.Context, i int) {
	path := c.paths.Chain(i)
	for ctx.Err() == nil {
		b, _, ch, err := c.conn.GetW(path)
		if errors.Is(err, zk.ErrNoNode) {
			var ok bool
			ok, _, ch, err = c.conn.ExistsW(path)
			if err == nil && ok {
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
			select {
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
			}
			continue
		}
		select {
		case <-ch:
		case <-ctx.Done():
		}
	}
}

// campaign runs for master while the node lives; when it wins it runs the
// master until leadership is lost.
func (c *coordinator) campaign(ctx context.Context) {
	for ctx.Err() == nil {
		el := zkrecipes.NewElection(c.conn, c.paths.Master(), []byte(strconv.FormatUint(c.cfg.ID, 10)))
		if err := el.Campaign(ctx); err != nil {
			select {
			case <-time.After(200 * time.Millisecond):
			case <-ctx.Done():
			}
			continue
		}
		c.cfg.Logf("master: elected (%s)", el.Path())
		m := newMaster(c, el)
		m.run(ctx)
		if ctx.Err() != nil {
			// Shutting down: the session's close deletes the election
			// znode with every other ephemeral. Resigning here would retry
			// the delete on a connection already closed until zkrecipes'
			// release deadline, holding up the node's exit past the
			// harness's SIGTERM grace (every cluster close took 5 s).
			c.cfg.Logf("master: stepping down (node stopping)")
			return
		}
		c.cfg.Logf("master: stepping down")
		_ = el.Resign()
	}
}
