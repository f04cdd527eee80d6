package chaindriver

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chainraft/chainraft/chain"
	"github.com/chainraft/chainraft/harness"
	"github.com/chainraft/chainraft/harness/proccluster"
	"github.com/chainraft/chainraft/internal/proc"
	"github.com/chainraft/chainraft/internal/zkserver"
	"github.com/chainraft/chainraft/kv"
	"github.com/chainraft/chainraft/nemesis"
	"github.com/chainraft/chainraft/zkrecipes"
)

// Cluster is a running chain store: a ZooKeeper ensemble (the harness's
// unless Driver.ZK named one), the node processes, and client connections
// (chain.Conns) whose ZooKeeper session watches every chain's configuration. The chains' head,
// middle and tail and the master are read from ZooKeeper when asked, never
// cached here: a fault must hit whoever holds the role then.
type Cluster struct {
	env       harness.Env
	placement chain.Placement
	zk        *zkserver.Ensemble // nil when Driver.ZK is used
	// hostZK is the ZooKeeper on a host of its own under --hosts.
	hostZK  *hostZK
	zkAddrs []string
	// root is the run's znode root (runRoot): removed at Close when the
	// ensemble is external.
	root  string
	pc    *proccluster.Cluster
	conns *chain.Conns
	// clients serves the workload's clients: conns itself, or, in CRAQ
	// read mode or with the head-read bug, a second set whose clients read
	// that way or carry the bug's client half (the readiness probe and the
	// checks read through conns, at the tails).
	clients *chain.Conns

	closeOnce sync.Once
	closeErr  error
	closed    atomic.Bool

	// zkKilled marks servers the nemesis killed and has not restarted;
	// deadSeen is when Unplanned first saw each failure. Guarded by zkMu.
	zkMu     sync.Mutex
	zkKilled map[int]bool
	deadSeen map[string]time.Time
}

var (
	_ harness.Cluster         = (*Cluster)(nil)
	_ harness.TargetCluster   = (*Cluster)(nil)
	_ harness.ReplicaComparer = (*Cluster)(nil)
	_ harness.WholeWaiter     = (*Cluster)(nil)
	_ harness.CPUMeter        = (*Cluster)(nil)
	_ harness.MessageCounter  = (*Cluster)(nil)
	_ harness.HealthWatcher   = (*Cluster)(nil)
)

// messageReadTimeout bounds one node's answer to a message count: a node
// that cannot answer in that time is left out rather than holding up the
// run's end.
const messageReadTimeout = 2 * time.Second

// serving is the readiness probe: every chain has its full membership (no
// joiner) and answers a read at its tail. Nodes must be up and registered,
// the master elected and every chain built, which no single node knows.
func (c *Cluster) serving(ctx context.Context) error {
	cl := c.conns.NewClient()
	for ch := 0; ch < c.placement.Chains; ch++ {
		cfg, _ := c.conns.Config(ch)
		if len(cfg.Members) != c.placement.Replicas || cfg.Joining != nil {
			return fmt.Errorf("chain %d not whole (config %+v)", ch, cfg)
		}
		if _, _, err := cl.Get(ctx, keyForChain(ch, c.placement.Chains)); err != nil {
			return fmt.Errorf("chain %d: read at the tail: %w", ch, err)
		}
	}
	return nil
}

// WaitServing implements harness.WholeWaiter: it waits until every chain
// has its full membership and answers a read at its tail.
func (c *Cluster) WaitServing(ctx context.Context) error {
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		err := c.serving(pctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("chain cluster: not serving: %w (%v)", err, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// keyForChain finds a key that hashes to chain ch.
func keyForChain(ch, chains int) string {
	for i := 0; ; i++ {
		k := "probe-" + strconv.Itoa(i)
		if chain.ChainOf(k, chains) == ch {
			return k
		}
	}
}

// NewClient implements harness.Cluster.
func (c *Cluster) NewClient() (kv.KV, error) {
	return c.clients.NewClient(), nil
}

// Nodes lists the node ids, in order.
func (c *Cluster) Nodes() []uint64 {
	var out []uint64
	for _, id := range c.pc.IDs() {
		out = append(out, uint64(id))
	}
	return out
}

// Process is node id's process, or nil.
func (c *Cluster) Process(id uint64) *proc.Process { return c.pc.Process(int(id)) }

// Kill SIGKILLs node id.
func (c *Cluster) Kill(id uint64) error { return c.pc.Kill(int(id)) }

// Restart starts node id again with the same address and data directory.
func (c *Cluster) Restart(id uint64) error { return c.pc.Restart(int(id)) }

// Pause SIGSTOPs node id: it keeps its sockets and its ZooKeeper session
// until the session times out, as in a long GC pause.
func (c *Cluster) Pause(id uint64) error { return c.pc.Pause(int(id)) }

// Resume SIGCONTs node id.
func (c *Cluster) Resume(id uint64) error { return c.pc.Resume(int(id)) }

// Chains is the number of chains.
func (c *Cluster) Chains() int { return c.placement.Chains }

// Placement is the cluster's shape.
func (c *Cluster) Placement() chain.Placement { return c.placement }

// Config returns chain ch's configuration, re-read from ZooKeeper.
func (c *Cluster) Config(ch int) chain.Config {
	c.conns.Refresh(ch)
	cfg, _ := c.conns.Config(ch)
	return cfg
}

// Head is chain ch's head node id (0 if none).
func (c *Cluster) Head(ch int) uint64 { return c.Config(ch).Head().ID }

// Tail is chain ch's tail node id (0 if none).
func (c *Cluster) Tail(ch int) uint64 { return c.Config(ch).Tail().ID }

// Middle is one of chain ch's middle nodes (0 if the chain has none).
func (c *Cluster) Middle(ch int) uint64 {
	cfg := c.Config(ch)
	if len(cfg.Members) < 3 {
		return 0
	}
	return cfg.Members[1].ID
}

// Rotated reports whether every chain has its preferred members in their
// preferred order (chain i: nodes i+1, i+2, ...), as the master restores
// them after failures.
func (c *Cluster) Rotated() bool {
	for i := 0; i < c.placement.Chains; i++ {
		cfg := c.Config(i)
		want := c.placement.Members(i)
		if cfg.Joining != nil || len(cfg.Members) != len(want) {
			return false
		}
		for j, m := range cfg.Members {
			if m.ID != want[j] {
				return false
			}
		}
	}
	return true
}

// Master is the node currently elected master, read with a session of its
// own (chain.Conns has no leader-election call).
func (c *Cluster) Master() (uint64, error) {
	conn, _, err := zkrecipes.Connect(c.zkAddrs, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	_, data, err := zkrecipes.Leader(conn, chain.Paths{Root: c.root}.Master())
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(string(data), 10, 64)
}

// Ensemble is the ZooKeeper ensemble the harness started (nil when
// external).
func (c *Cluster) Ensemble() *zkserver.Ensemble { return c.zk }

// ZKConnect is the ZooKeeper connect string (direct, not proxied).
func (c *Cluster) ZKConnect() string { return strings.Join(c.zkAddrs, ",") }

// Target implements harness.TargetCluster. The network is the one the
// cluster was wired through at start (net is that same one, or nil).
func (c *Cluster) Target(net *nemesis.Network) nemesis.Target {
	t := &Target{Target: proccluster.Target{C: c.pc}, c: c}
	if c.zk != nil {
		t.ZKT = &zkTarget{Target: &zkserver.Target{E: c.zk}, c: c}
	}
	return t
}

// CompareReplicas implements harness.ReplicaComparer: once quiescent,
// every member of every chain holds the same state (same last sequence,
// same digest of keys and values), in the current epoch.
func (c *Cluster) CompareReplicas(ctx context.Context) (string, error) {
	for {
		detail, err := c.compareOnce(ctx)
		if err == nil {
			return detail, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("chain replicas do not agree: %w", err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// digest is one node's copy of a chain, as compared.
type digest struct {
	Epoch, LastSeq uint64
	Digest         string
	Keys           int64
}

func (c *Cluster) compareOnce(ctx context.Context) (string, error) {
	var parts []string
	for ch := 0; ch < c.placement.Chains; ch++ {
		cfg := c.Config(ch)
		if len(cfg.Members) == 0 {
			return "", fmt.Errorf("chain %d has no configuration", ch)
		}
		var first *digest
		var ids []string
		for _, m := range cfg.Members {
			// m.Addr is the node's own address: the comparison is the
			// observer's and bypasses the proxies.
			dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			d, err := c.conns.Digest(dctx, m.Addr, ch)
			cancel()
			if err != nil {
				return "", fmt.Errorf("chain %d node %d: %w", ch, m.ID, err)
			}
			got := digest{Epoch: d.Epoch, LastSeq: d.LastSeq, Digest: d.Digest, Keys: d.Keys}
			switch {
			case d.Epoch != cfg.Epoch || !d.Member:
				return "", fmt.Errorf("chain %d node %d at epoch %d (member %v), config epoch %d", ch, m.ID, d.Epoch, d.Member, cfg.Epoch)
			case d.Committed != d.LastSeq:
				return "", fmt.Errorf("chain %d node %d not quiescent: committed %d of %d", ch, m.ID, d.Committed, d.LastSeq)
			case first == nil:
				first = &got
			case got != *first:
				return "", fmt.Errorf("chain %d: node %d has seq %d digest %.12s, node %d has seq %d digest %.12s",
					ch, cfg.Members[0].ID, first.LastSeq, first.Digest, m.ID, got.LastSeq, got.Digest)
			}
			ids = append(ids, strconv.FormatUint(m.ID, 10))
		}
		parts = append(parts, fmt.Sprintf("chain %d: nodes %s agree at seq %d (%d keys, %.12s)", ch, strings.Join(ids, ","), first.LastSeq, first.Keys, first.Digest))
	}
	return strings.Join(parts, "; "), nil
}

// NodeCPU implements harness.CPUMeter: every incarnation of each node.
func (c *Cluster) NodeCPU() map[uint64]time.Duration { return c.pc.NodeCPU() }

// PeerMessagesSent implements harness.MessageCounter. A node's counter
// covers all its chains; it comes with the node's digest of chain 0, which
// every node serves. Asked at the node's own address, past the proxies.
func (c *Cluster) PeerMessagesSent(ctx context.Context) map[uint64]uint64 {
	out := map[uint64]uint64{}
	for _, id := range c.pc.IDs() {
		if !c.pc.Up(id) {
			continue
		}
		dctx, cancel := context.WithTimeout(ctx, messageReadTimeout)
		d, err := c.conns.Counts(dctx, c.pc.ClientListen(id))
		cancel()
		if err != nil {
			continue
		}
		out[uint64(id)] = d.GetPeerMessagesSent()
	}
	return out
}

// Root is the znode under which the cluster's nodes keep their state.
func (c *Cluster) Root() string { return c.root }

// Close stops the client connections, the nodes (SIGTERM, so they close their
// sessions; SIGKILL after a grace), then ZooKeeper, or, on an external
// ensemble, removes the run's root. It is idempotent and safe on a
// cluster whose start failed half way.
func (c *Cluster) Close() error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		var errs []error
		if c.clients != nil && c.clients != c.conns {
			c.clients.Close()
		}
		if c.conns != nil {
			c.conns.Close()
		}
		if c.pc != nil {
			if err := c.pc.Close(closeGrace); err != nil {
				errs = append(errs, err)
			}
		}
		if c.zk != nil {
			if err := c.zk.Close(); err != nil {
				errs = append(errs, err)
			}
		} else if c.hostZK != nil {
			if err := c.hostZK.close(filepath.Join(c.env.Dir, "zk")); err != nil {
				errs = append(errs, err)
			}
		} else if len(c.zkAddrs) > 0 {
			if err := c.removeRoot(); err != nil {
				errs = append(errs, err)
			}
		}
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}
