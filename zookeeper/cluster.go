package zookeeper

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/chainraft/chainraft/harness"
	"github.com/chainraft/chainraft/internal/zkserver"
	"github.com/chainraft/chainraft/kv"
	"github.com/chainraft/chainraft/nemesis"
)

// Root is the znode under which every key is a child.
const Root = "/chainraft-kv"

// SessionTimeout is the workload sessions' timeout. go-zookeeper gives up
// on a silent server after two thirds of it (and moves the session to the
// next server), so it bounds how long a request waits on a paused or cut
// server; the harness's request deadline is shorter still.
const SessionTimeout = 4 * time.Second

// Bounds of the harness's own calls.
const (
	rootWait    = 30 * time.Second // the root znode's creation at start
	observeWait = 2 * time.Second  // one four-letter word
)

// Cluster is a running ZooKeeper store: the ensemble (internal/zkserver),
// the server-to-server fronts when the network is wired, and the
// workload's sessions.
type Cluster struct {
	env   harness.Env
	ens   *zkserver.Ensemble
	links *links // nil unless proxied
	net   *nemesis.Network
	// dial[i] is what workload sessions dial for server i (1-based): its
	// client proxy when wired, else its client port.
	dial map[int]string

	mu         sync.Mutex
	sessions   map[*client]struct{}
	nextClient int
	down       map[int]bool // servers the harness killed (planned)

	targetOnce sync.Once
	target     *Target

	closeOnce sync.Once
}

var (
	_ harness.Cluster         = (*Cluster)(nil)
	_ harness.TargetCluster   = (*Cluster)(nil)
	_ harness.ReplicaComparer = (*Cluster)(nil)
	_ harness.CPUMeter        = (*Cluster)(nil)
	_ harness.HealthWatcher   = (*Cluster)(nil)
)

func startCluster(ctx context.Context, env harness.Env) (_ *Cluster, err error) {
	c := &Cluster{env: env, dial: map[int]string{}, sessions: map[*client]struct{}{}, down: map[int]bool{}}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	cfg := zkserver.Config{Dir: env.Dir, Servers: env.Nodes, ForceSync: !env.NoFsync, CPUs: env.NodeCPUs}
	if env.Network != nil && env.Nodes > 1 {
		c.net = env.Network
		c.links, err = newLinks(env.Network, env.Nodes)
		if err != nil {
			return nil, fmt.Errorf("zookeeper cluster: wiring server links: %w", err)
		}
		cfg.PeerAddrs = c.links.peerAddrs
	}
	fmt.Fprintf(env.Log, "zookeeper: starting %d server(s) under %s/zk (fsync %v)\n", env.Nodes, env.Dir, cfg.ForceSync)
	c.ens, err = zkserver.Start(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("zookeeper cluster: %w", err)
	}
	for i, a := range c.ens.Addrs() {
		c.dial[i+1] = a
		if c.net != nil {
			p, err := c.net.Add(nemesis.Link{From: nemesis.ClientEndpoint, To: nemesis.NodeEndpoint(i + 1)}, a)
			if err != nil {
				return nil, fmt.Errorf("zookeeper cluster: client proxy of server %d: %w", i+1, err)
			}
			c.dial[i+1] = p.Addr()
		}
	}
	if err := c.createRoot(ctx); err != nil {
		return nil, err
	}
	fmt.Fprintf(env.Log, "zookeeper: %d server(s) serving (%s reads, server links proxied %v)\n", env.Nodes, env.ReadMode, c.links != nil)
	return c, nil
}

// createRoot creates Root through a direct session (an election may still
// be settling: retried until rootWait).
func (c *Cluster) createRoot(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, rootWait)
	defer cancel()
	conn, err := c.session(c.ens.Addrs(), 0)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer conn.Close()
	for {
		_, err := callCtx(ctx, &wg, func() (string, error) { return conn.Create(Root, nil, 0, zk.WorldACL(zk.PermAll)) })
		if err == nil || errors.Is(err, zk.ErrNodeExists) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("zookeeper cluster: creating %s: %w", Root, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// session opens a session that tries servers in order from first on
// (ordered, not shuffled: sessions are dealt over the servers).
func (c *Cluster) session(addrs []string, first int) (*zk.Conn, error) {
	order := make([]string, 0, len(addrs))
	for k := range addrs {
		order = append(order, addrs[(first+k)%len(addrs)])
	}
	conn, _, err := zk.Connect(order, SessionTimeout, zk.WithHostProvider(&ordered{}), zk.WithLogger(quiet{}), zk.WithLogInfo(false))
	if err != nil {
		return nil, fmt.Errorf("zookeeper: connect %v: %w", order, err)
	}
	return conn, nil
}

// NewClient implements harness.Cluster: a client with a session of its
// own, whose first server is dealt round the ensemble.
func (c *Cluster) NewClient() (kv.KV, error) {
	c.mu.Lock()
	k := c.nextClient
	c.nextClient++
	c.mu.Unlock()
	addrs := make([]string, 0, len(c.dial))
	for i := 1; i <= len(c.dial); i++ {
		addrs = append(addrs, c.dial[i])
	}
	conn, err := c.session(addrs, k%len(addrs))
	if err != nil {
		return nil, err
	}
	cl := &client{c: c, conn: conn, sync: c.env.ReadMode == ReadModeSync, home: k%len(addrs) + 1}
	c.mu.Lock()
	c.sessions[cl] = struct{}{}
	c.mu.Unlock()
	return cl, nil
}

func (c *Cluster) forget(cl *client) {
	c.mu.Lock()
	delete(c.sessions, cl)
	c.mu.Unlock()
}

// Close implements harness.Cluster: the sessions, the ensemble (SIGKILL),
// the fronts. Idempotent.
func (c *Cluster) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.mu.Lock()
		var cls []*client
		for cl := range c.sessions {
			cls = append(cls, cl)
		}
		c.mu.Unlock()
		// Sessions first, all at once, while the servers can still answer
		// their close requests (go-zookeeper waits up to a second for
		// each), then the servers.
		var wg sync.WaitGroup
		for _, cl := range cls {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = cl.Close()
			}()
		}
		wg.Wait()
		if c.ens != nil {
			err = c.ens.Close()
		}
		if c.links != nil {
			c.links.Close()
		}
	})
	return err
}

// Ensemble is the running ensemble, for tests.
func (c *Cluster) Ensemble() *zkserver.Ensemble { return c.ens }

// up reports whether server id (1-based) runs and is not paused.
func (c *Cluster) up(id int) bool {
	p := c.ens.Process(id - 1)
	return p != nil && p.Running() && !p.Paused()
}

// Leader is the server that leads now (1-based).
func (c *Cluster) Leader() (int, error) {
	for id := 1; id <= c.ens.Size(); id++ {
		if !c.up(id) {
			continue
		}
		if m, err := c.ens.Mode(id - 1); err == nil && (m == "leader" || m == "standalone") {
			return id, nil
		}
	}
	return 0, zkserver.ErrNoLeader
}

// NodeCPU implements harness.CPUMeter: every server's JVM, every
// incarnation counted.
func (c *Cluster) NodeCPU() map[uint64]time.Duration {
	out := map[uint64]time.Duration{}
	for id := 1; id <= c.ens.Size(); id++ {
		out[uint64(id)] = c.ens.Process(id - 1).CPUTime()
	}
	return out
}

// Unplanned implements harness.HealthWatcher: a server the harness did not
// kill that is not running.
func (c *Cluster) Unplanned() error {
	for id := 1; id <= c.ens.Size(); id++ {
		p := c.ens.Process(id - 1)
		c.mu.Lock()
		planned := c.down[id]
		c.mu.Unlock()
		if planned || p.Running() {
			continue
		}
		select {
		case <-p.Exited():
			return fmt.Errorf("zookeeper server %d exited on its own (noticed at %s): %v (see %s)",
				id, time.Now().Format("15:04:05.000"), p.ExitErr(), c.ens.LogPath(id-1))
		default:
		}
	}
	return nil
}

func (c *Cluster) setDown(id int, down bool) {
	c.mu.Lock()
	c.down[id] = down
	c.mu.Unlock()
}

// Target implements harness.TargetCluster.
func (c *Cluster) Target(*nemesis.Network) nemesis.Target {
	c.targetOnce.Do(func() { c.target = &Target{c: c} })
	return c.target
}

// ordered is a zk.HostProvider that keeps the servers in the order given
// (go-zookeeper's default shuffles them): a session starts at its home
// server and moves on in turn only when that one fails.
type ordered struct {
	mu      sync.Mutex
	servers []string
	next    int
	tried   int
}

func (h *ordered) Init(servers []string) error {
	if len(servers) == 0 {
		return errors.New("zookeeper: no servers")
	}
	h.servers = servers
	return nil
}

func (h *ordered) Len() int { return len(h.servers) }

func (h *ordered) Next() (string, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.servers[h.next]
	h.next = (h.next + 1) % len(h.servers)
	retry := h.tried >= len(h.servers)
	if retry {
		h.tried = 0
	}
	h.tried++
	return s, retry
}

func (h *ordered) Connected() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.tried = 0
	// Stay on the server that took us: Next after a disconnect tries it
	// again first only if it was the last one tried.
	h.next = (h.next + len(h.servers) - 1) % len(h.servers)
}

type quiet struct{}

func (quiet) Printf(string, ...any) {}
