package chain

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"
	"google.golang.org/grpc"

	pb "github.com/chainraft/chainraft/chain/chainpb"
	"github.com/chainraft/chainraft/kv"
	"github.com/chainraft/chainraft/zkrecipes"
)

// configMaxAge is how long a Client trusts its cached configuration of a
// chain without an error to doubt it: each fetch keeps it for a random time
// in [configMaxAge/2, configMaxAge), so that clients do not re-read in step.
// Clients of chain replication cache the configuration and re-read it when a
// node rejects them or stops answering; a correct node that is no longer
// the tail (or lost its session) rejects, so the cache costs a correct store
// one failed attempt per reconfiguration. The periodic re-read bounds how
// long a client keeps using a node that wrongly keeps answering.
const configMaxAge = 5 * time.Second

// Read modes (ClientOptions.ReadMode, `--read-mode`).
const (
	// ReadModeTail reads at the tail of the key's chain: the paper's
	// chain replication, and the default.
	ReadModeTail = "tail"
	// ReadModeCRAQ spreads reads over every member of the key's chain,
	// which answers clean keys itself and asks the tail only which
	// version of a dirty key is committed (Core.ReadAny).
	ReadModeCRAQ = "craq"
)

// ReadModes lists the read modes, the default first.
func ReadModes() []string { return []string{ReadModeTail, ReadModeCRAQ} }

// CheckReadMode refuses a read mode that is not one of ReadModes (empty
// is the default).
func CheckReadMode(mode string) error {
	if mode == "" || slices.Contains(ReadModes(), mode) {
		return nil
	}
	return fmt.Errorf("chain: read mode %q (want %s or %s)", mode, ReadModeTail, ReadModeCRAQ)
}

// ClientOptions say where the store is and tune its clients; zero values
// take the defaults.
type ClientOptions struct {
	// ZK is the ZooKeeper ensemble (host:port each) the nodes register in.
	ZK []string
	// Root is where the store's znodes live (empty: RootPath).
	Root string
	// Chains is the store's number of chains (Placement.Chains).
	Chains int
	// SessionTimeout is the clients' ZooKeeper session timeout (default 10s).
	SessionTimeout time.Duration
	// RequestTimeout bounds one request, retries included, when the caller's
	// context has no deadline (default 5s).
	RequestTimeout time.Duration
	// AttemptTimeout bounds one try at one node (default 2s), so a request
	// stuck at a dead or partitioned node moves on.
	AttemptTimeout time.Duration
	// Bug plants the client half of a seeded bug (bugs.go: BugHeadRead)
	// in every client; other bugs live in the nodes only.
	Bug string
	// ReadMode is where clients read: ReadModeTail (empty) or
	// ReadModeCRAQ.
	ReadMode string
}

// Conns is shared by a process's clients: one ZooKeeper session that
// watches every chain's configuration, and one gRPC connection per node.
type Conns struct {
	opts   ClientOptions
	bugs   bugs // the client half of a seeded bug (ClientOptions.Bug)
	chains int
	paths  Paths

	// zkMu guards conn, which redial replaces when the session stops
	// answering; lastRead is when a ZooKeeper read last succeeded
	// (nanoseconds on the monotonic clock since start).
	zkMu     sync.Mutex
	conn     *zk.Conn
	events   <-chan zk.Event // conn's session events, read by keepZK alone
	start    time.Time
	lastRead atomic.Int64

	mu      sync.Mutex
	cfgs    []Config
	conns   map[string]*grpc.ClientConn
	changed chan struct{} // closed and replaced on every config change
	// refreshc asks the refresher goroutine to re-read a chain's config:
	// ZooKeeper calls have no deadline, so no request path makes one.
	refreshc chan int

	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	// addrs are local addresses of nodes that win over the configuration's
	// (SetAddrs): a harness's client→node proxies.
	addrs map[uint64]string
}

// SetAddrs makes the clients dial node id at addrs[id] instead of the
// address in the chain configurations, so that a harness can route clients
// through its own proxies.
func (r *Conns) SetAddrs(addrs map[uint64]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.addrs = make(map[uint64]string, len(addrs))
	for id, a := range addrs {
		r.addrs[id] = a
	}
}

// memberClient is the client of node m, at its local address if it has one.
func (r *Conns) memberClient(m Member) (pb.ChainServiceClient, error) {
	r.mu.Lock()
	addr, ok := r.addrs[m.ID]
	r.mu.Unlock()
	if !ok {
		addr = m.Addr
	}
	return r.client(addr)
}

// Dial connects to ZooKeeper and starts watching the chain configurations;
// connections to the nodes open lazily. ctx bounds the ZooKeeper connect.
func Dial(ctx context.Context, opts ClientOptions) (*Conns, error) {
	if err := CheckRoot(opts.Root); err != nil {
		return nil, err
	}
	if opts.Chains < 1 {
		return nil, fmt.Errorf("chain: dial: %d chains (want at least 1)", opts.Chains)
	}
	planted, err := parseBugs(opts.Bug)
	if err != nil {
		return nil, err
	}
	if err := CheckReadMode(opts.ReadMode); err != nil {
		return nil, err
	}
	if opts.SessionTimeout == 0 {
		opts.SessionTimeout = 10 * time.Second
	}
	if opts.RequestTimeout == 0 {
		opts.RequestTimeout = 5 * time.Second
	}
	if opts.AttemptTimeout == 0 {
		opts.AttemptTimeout = 2 * time.Second
	}
	conn, events, err := zkrecipes.ConnectOnce(ctx, opts.ZK, opts.SessionTimeout)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(context.Background())
	chains := opts.Chains
	r := &Conns{opts: opts, bugs: planted, chains: chains, conn: conn, events: events, start: time.Now(), paths: Paths{Root: opts.Root}, cfgs: make([]Config, chains),
		conns: map[string]*grpc.ClientConn{}, changed: make(chan struct{}), refreshc: make(chan int, 64), cancel: cancel}
	r.readOK()
	for i := 0; i < chains; i++ {
		r.cfgs[i].Chain = i
		r.wg.Add(1)
		go func() { defer r.wg.Done(); r.watch(wctx, i) }()
	}
	r.wg.Add(2)
	go func() { defer r.wg.Done(); r.refresher(wctx) }()
	go func() { defer r.wg.Done(); r.keepZK(wctx); r.zk().Close() }()
	return r, nil
}

func (r *Conns) zk() *zk.Conn {
	r.zkMu.Lock()
	defer r.zkMu.Unlock()
	return r.conn
}

func (r *Conns) readOK() { r.lastRead.Store(int64(time.Since(r.start))) }

// zkStale is how long a Conns goes without one successful ZooKeeper read
// before it replaces its connection. Every configuration is re-read each
// configRecheck, so a healthy session reads several times in that span.
const zkStale = 3 * configRecheck

// keepZK replaces the ZooKeeper connection when its link drops, and when
// reads stop succeeding. The connection never reconnects by itself
// (zkrecipes.ConnectOnce: go-zookeeper's reconnect races on its watches),
// and this reader needs no session of its own, only the configurations.
// A session can also stay wedged long after its server is back:
// go-zookeeper waits up to ten receive timeouts (about 66 s for a 10 s
// session) for the answer to its handshake, and every read queues behind
// it. The harness's clients would route by a configuration epochs old all
// that while, which the nodes refuse ("wrong epoch"). A fresh connection,
// and closing the old one, fails the queued reads so the watchers retry
// on it.
func (r *Conns) keepZK(ctx context.Context) {
	t := time.NewTicker(configRecheck)
	defer t.Stop()
	events := r.events
	dropped := false // the current connection lost its link for good
	for {
		select {
		case <-t.C:
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if ev.State != zk.StateDisconnected && ev.State != zk.StateExpired {
				continue
			}
			dropped = true
		case <-ctx.Done():
			return
		}
		if !dropped && time.Duration(int64(time.Since(r.start))-r.lastRead.Load()) < zkStale {
			continue
		}
		dctx, cancel := context.WithTimeout(ctx, zkStale)
		conn, evs, err := zkrecipes.ConnectOnce(dctx, r.opts.ZK, r.opts.SessionTimeout)
		cancel()
		if err != nil {
			continue // ZooKeeper is down: the next tick tries again
		}
		r.zkMu.Lock()
		old := r.conn
		r.conn = conn
		r.zkMu.Unlock()
		events, dropped = evs, false
		r.readOK()
		old.Close()
	}
}

func (r *Conns) watch(ctx context.Context, i int) {
	path := r.paths.Chain(i)
	for ctx.Err() == nil {
		conn := r.zk()
		b, _, ch, err := conn.GetW(path)
		if errors.Is(err, zk.ErrNoNode) {
			var ok bool
			ok, _, ch, err = conn.ExistsW(path)
			if err == nil && ok {
				continue
			}
		} else if err == nil {
			if cfg, derr := DecodeConfig(b); derr == nil {
				r.update(cfg)
			}
		}
		if err == nil {
			r.readOK()
		}
		if err != nil {
			select {
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
			}
			continue
		}
		// The watch is backed by a plain read every configRecheck: a watch
		// can be lost across a reconnect (go-zookeeper/zk#83: re-setting
		// a connection's watches fails silently), and a client on a lost
		// watch would keep a stale configuration — WaitServing would
		// see a chain that never becomes whole.
		t := time.NewTimer(configRecheck)
	wait:
		for {
			select {
			case <-ch:
				break wait
			case <-t.C:
				r.Refresh(i)
				t.Reset(configRecheck)
			case <-ctx.Done():
				break wait
			}
		}
		t.Stop()
	}
}

// configRecheck is how often a Conns reads each configuration besides its
// watch (see watch).
const configRecheck = 2 * time.Second

func (r *Conns) update(cfg Config) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cfg.Chain < 0 || cfg.Chain >= len(r.cfgs) || cfg.Epoch <= r.cfgs[cfg.Chain].Epoch {
		return
	}
	r.cfgs[cfg.Chain] = cfg
	close(r.changed)
	r.changed = make(chan struct{})
}

// Refresh asks for chain i's configuration to be re-read directly (after an
// epoch error: the watch may lag). It does not wait.
func (r *Conns) Refresh(i int) {
	select {
	case r.refreshc <- i:
	default:
	}
}

func (r *Conns) refresher(ctx context.Context) {
	for {
		select {
		case i := <-r.refreshc:
			b, _, err := r.zk().Get(r.paths.Chain(i))
			if err != nil && !errors.Is(err, zk.ErrNoNode) {
				continue
			}
			r.readOK()
			if err != nil {
				continue
			}
			if cfg, err := DecodeConfig(b); err == nil {
				r.update(cfg)
			}
		case <-ctx.Done():
			return
		}
	}
}

// Config returns the cached configuration of chain i and a channel closed
// when any configuration changes.
func (r *Conns) Config(i int) (Config, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cfgs[i], r.changed
}

func (r *Conns) client(addr string) (pb.ChainServiceClient, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.conns[addr]; ok {
		return pb.NewChainServiceClient(c), nil
	}
	c, err := grpc.NewClient(addr, dialOptions()...)
	if err != nil {
		return nil, err
	}
	r.conns[addr] = c
	return pb.NewChainServiceClient(c), nil
}

// Digest asks the node at addr for its copy of a chain (end-of-run replica
// comparison). ctx bounds the call.
func (r *Conns) Digest(ctx context.Context, addr string, chain int) (*pb.DigestResponse, error) {
	cl, err := r.client(addr)
	if err != nil {
		return nil, err
	}
	return cl.Digest(ctx, &pb.DigestRequest{Chain: uint32(chain)})
}

// Counts asks the node at addr for its transport's counters only (peer
// messages, snapshots sent and received): the node answers without
// hashing a chain (DigestRequest.counts_only). ctx bounds the call.
func (r *Conns) Counts(ctx context.Context, addr string) (*pb.DigestResponse, error) {
	cl, err := r.client(addr)
	if err != nil {
		return nil, err
	}
	return cl.Digest(ctx, &pb.DigestRequest{CountsOnly: true})
}

// Close stops the watchers and closes every connection.
func (r *Conns) Close() error {
	r.once.Do(func() {
		r.cancel()
		r.wg.Wait()
		r.mu.Lock()
		for _, c := range r.conns {
			c.Close()
		}
		r.mu.Unlock()
	})
	return nil
}

// Client is one workload client: a kv.KV with its own request ids. Writes go
// to the key's chain head, reads to its tail (in CRAQ mode to its members in
// turn); a rejected request is retried with the same id after a
// configuration refresh until the deadline.
type Client struct {
	conns    *Conns
	seq      *kv.Sequencer
	lastNode uint64

	// mu guards cache and reads: a Client is meant for one goroutine, but
	// a cache must not be corrupted if it is shared.
	mu sync.Mutex
	// cache is this client's own view of each chain's configuration,
	// copied from Conns when it is missing, doubted (an error) or old.
	cache []cachedConfig
	// reads counts Gets: the client half of BugHeadRead, and the turn of
	// CRAQ reads over a chain's members.
	reads uint64
}

// cachedConfig is one chain's configuration as a Client last fetched it.
type cachedConfig struct {
	cfg     Config
	expires time.Time
	doubted bool
}

// config is the configuration the client routes chain's requests by: its
// cached copy, re-read from Conns when doubted or expired; and Conns'
// channel closed on any configuration change.
func (c *Client) config(chain int) (Config, <-chan struct{}) {
	latest, changed := c.conns.Config(chain)
	c.mu.Lock()
	defer c.mu.Unlock()
	e := &c.cache[chain]
	now := time.Now()
	if e.doubted || e.cfg.Epoch == 0 || !now.Before(e.expires) {
		age := configMaxAge/2 + rand.N(configMaxAge/2)
		*e = cachedConfig{cfg: latest, expires: now.Add(age)}
	}
	return e.cfg, changed
}

// doubt marks the cached configuration of chain as suspect after a failed
// attempt: the next attempt re-reads it from Conns, which is asked to
// re-read ZooKeeper (its watch may lag).
func (c *Client) doubt(chain int) {
	c.mu.Lock()
	c.cache[chain].doubted = true
	c.mu.Unlock()
	c.conns.Refresh(chain)
}

// LastNode is the node that answered the last request, for the history.
func (c *Client) LastNode() string {
	if c.lastNode == 0 {
		return ""
	}
	return strconv.FormatUint(c.lastNode, 10)
}

// NewClient returns a KV client with its own client id.
func (r *Conns) NewClient() *Client {
	return &Client{conns: r, seq: kv.NewSequencer(), cache: make([]cachedConfig, r.chains)}
}

var _ kv.KV = (*Client)(nil)

func statusErr(st pb.Status, msg string) error {
	switch st {
	case pb.Status_STATUS_WRONG_EPOCH:
		return fmt.Errorf("%w: %s", ErrWrongEpoch, msg)
	case pb.Status_STATUS_NOT_HEAD:
		return fmt.Errorf("%w: %s", ErrNotHead, msg)
	case pb.Status_STATUS_NOT_TAIL:
		return fmt.Errorf("%w: %s", ErrNotTail, msg)
	case pb.Status_STATUS_UNAVAILABLE:
		return fmt.Errorf("%w: %s", ErrUnavailable, msg)
	default:
		return fmt.Errorf("%w: %s", ErrUnknown, msg)
	}
}

// wait pauses before a retry: until a configuration changes or a short
// backoff passes.
func (c *Client) wait(ctx context.Context, changed <-chan struct{}) {
	t := time.NewTimer(20 * time.Millisecond)
	defer t.Stop()
	select {
	case <-changed:
	case <-t.C:
	case <-ctx.Done():
	}
}

func (c *Client) deadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.conns.opts.RequestTimeout)
}

func (c *Client) write(ctx context.Context, u *pb.Update) (bool, error) {
	ctx, cancel := c.deadline(ctx)
	defer cancel()
	id := c.seq.Next()
	u.Client, u.ClientSeq = id.Client, id.Seq
	chain := ChainOf(u.Key, c.conns.chains)
	// maybe records whether any attempt may have reached a head that
	// accepted it: then a final failure is indeterminate.
	maybe := false
	var last error
	for ctx.Err() == nil {
		cfg, changed := c.config(chain)
		if cfg.Epoch == 0 || len(cfg.Members) == 0 {
			last = fmt.Errorf("%w: chain %d has no configuration yet", ErrUnavailable, chain)
			c.wait(ctx, changed)
			continue
		}
		head := cfg.Head()
		cl, err := c.conns.memberClient(head)
		if err != nil {
			last = err
			c.doubt(chain)
			c.wait(ctx, changed)
			continue
		}
		actx, acancel := context.WithTimeout(ctx, c.conns.opts.AttemptTimeout)
		resp, err := cl.Write(actx, &pb.WriteRequest{Chain: uint32(chain), Epoch: cfg.Epoch, Update: u})
		acancel()
		if err != nil {
			// The request may have reached the head and been forwarded.
			maybe = true
			last = fmt.Errorf("write to node %d: %w", head.ID, err)
			c.doubt(chain)
			c.wait(ctx, changed)
			continue
		}
		c.lastNode = head.ID
		if resp.Status == pb.Status_STATUS_OK {
			return resp.Swapped, nil
		}
		last = fmt.Errorf("node %d: %w", head.ID, statusErr(resp.Status, resp.Error))
		if resp.Status == pb.Status_STATUS_UNKNOWN {
			maybe = true
		}
		c.doubt(chain)
		c.wait(ctx, changed)
	}
	if last == nil {
		last = ctx.Err()
	}
	if !maybe {
		return false, kv.Definite(last)
	}
	return false, fmt.Errorf("chain %d write %v: %w (%w)", chain, id, last, ctx.Err())
}

// Get implements kv.KV: a read at the key's chain tail, or in CRAQ mode at
// one of its members. A read has no effect, so every failure is definite.
func (c *Client) Get(ctx context.Context, key string) (string, bool, error) {
	ctx, cancel := c.deadline(ctx)
	defer cancel()
	chain := ChainOf(key, c.conns.chains)
	var last error
	for ctx.Err() == nil {
		cfg, changed := c.config(chain)
		if cfg.Epoch == 0 || len(cfg.Members) == 0 {
			last = fmt.Errorf("%w: chain %d has no configuration yet", ErrUnavailable, chain)
			c.wait(ctx, changed)
			continue
		}
		tail := cfg.Tail()
		craq := c.conns.opts.ReadMode == ReadModeCRAQ
		switch {
		case craq:
			tail = c.readMember(cfg)
		case c.conns.bugs.headRead && c.nextReadAtHead():
			tail = cfg.Head() // SEEDED BUG (BugHeadRead): every other read at the head
		}
		cl, err := c.conns.memberClient(tail)
		if err != nil {
			last = err
			c.doubt(chain)
			c.wait(ctx, changed)
			continue
		}
		actx, acancel := context.WithTimeout(ctx, c.conns.opts.AttemptTimeout)
		resp, err := cl.Read(actx, &pb.ReadRequest{Chain: uint32(chain), Epoch: cfg.Epoch, Key: key, Craq: craq})
		acancel()
		if err != nil {
			last = fmt.Errorf("read from node %d: %w", tail.ID, err)
			c.doubt(chain)
			c.wait(ctx, changed)
			continue
		}
		c.lastNode = tail.ID
		if resp.Status == pb.Status_STATUS_OK {
			return resp.Value, resp.Found, nil
		}
		last = fmt.Errorf("node %d: %w", tail.ID, statusErr(resp.Status, resp.Error))
		c.doubt(chain)
		c.wait(ctx, changed)
	}
	if last == nil {
		last = ctx.Err()
	}
	return "", false, kv.Definite(fmt.Errorf("chain %d read %q: %w", chain, key, last))
}

// readMember picks the member a CRAQ read goes to: the members in turn,
// starting at a place set by the client id, so that a process's clients
// spread their reads over the whole chain from the first read, and a retry
// goes to the next member rather than the one that just refused.
func (c *Client) readMember(cfg Config) Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := (c.seq.Client() + c.reads) % uint64(len(cfg.Members))
	c.reads++
	return cfg.Members[i]
}

// nextReadAtHead is the client half of BugHeadRead: a client that spreads
// its reads over both ends of the chain to halve the tail's load sends
// every other read to the head.
func (c *Client) nextReadAtHead() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reads++
	return c.reads%2 == 1
}

// Put implements kv.KV.
func (c *Client) Put(ctx context.Context, key, value string) error {
	_, err := c.write(ctx, &pb.Update{Op: pb.Op_OP_PUT, Key: key, Value: value})
	return err
}

// Append implements kv.KV.
func (c *Client) Append(ctx context.Context, key, value string) error {
	_, err := c.write(ctx, &pb.Update{Op: pb.Op_OP_APPEND, Key: key, Value: value})
	return err
}

// CAS implements kv.KV.
func (c *Client) CAS(ctx context.Context, key, expect, value string) (bool, error) {
	return c.write(ctx, &pb.Update{Op: pb.Op_OP_CAS, Key: key, Expect: expect, Value: value})
}
