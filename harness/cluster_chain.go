package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/chainraft/chainraft/chain"
	"github.com/chainraft/chainraft/internal/proc"
	"github.com/chainraft/chainraft/internal/zkserver"
	"github.com/chainraft/chainraft/kv"
	"github.com/chainraft/chainraft/nemesis"
	"github.com/chainraft/chainraft/zkrecipes"
)

// ChainSessionTimeout is the chain nodes' ZooKeeper session timeout in
// clusters the harness starts: it is the failure-detection time, so short.
const ChainSessionTimeout = 2 * time.Second

func init() {
	RegisterStore("chain", func(ctx context.Context, cfg ClusterConfig) (Cluster, error) {
		return StartChainCluster(ctx, cfg)
	})
}

// ChainNode is one node process of a chain cluster.
type ChainNode struct {
	ID      uint64
	Addr    string
	DataDir string
	LogPath string
	Proc    *proc.Process
}

// ChainCluster is a running chain store: a ZooKeeper ensemble (started here
// unless cfg.ZK names one) and cfg.Nodes node processes. It exposes the
// handles a nemesis needs: processes by node id, and the current head,
// middle and tail of each chain and the master, read from ZooKeeper.
type ChainCluster struct {
	cfg       ClusterConfig
	placement chain.Placement
	zk        *zkserver.Ensemble // nil when cfg.ZK is used
	zkAddrs   []string
	nodes     []*ChainNode // index id-1
	router    *chain.Router

	mu     sync.Mutex
	closed bool
}

// StartChainCluster starts the cluster and waits until every chain serves.
// On error nothing is left running.
func StartChainCluster(ctx context.Context, cfg ClusterConfig) (_ *ChainCluster, err error) {
	if cfg.Nodes == 0 {
		cfg.Nodes = 3
	}
	if cfg.Chains == 0 {
		cfg.Chains = cfg.Nodes
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = min(3, cfg.Nodes)
	}
	if cfg.Binary == "" {
		return nil, errors.New("chain cluster: ClusterConfig.Binary (the chainraft executable) is required")
	}
	if cfg.Dir == "" {
		return nil, errors.New("chain cluster: ClusterConfig.Dir is required")
	}
	p := chain.Placement{Chains: cfg.Chains, Replicas: cfg.Replicas, Nodes: cfg.Nodes}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	c := &ChainCluster{cfg: cfg, placement: p}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	if cfg.ZK != "" {
		c.zkAddrs = zkrecipes.SplitAddrs(cfg.ZK)
	} else {
		servers := max(cfg.ZKServers, 1)
		fmt.Fprintf(cfg.Log, "chain: starting ZooKeeper (%d server(s)) under %s\n", servers, filepath.Join(cfg.Dir, "zk"))
		c.zk, err = zkserver.Start(ctx, zkserver.Config{Dir: cfg.Dir, Servers: servers})
		if err != nil {
			return nil, fmt.Errorf("chain cluster: %w", err)
		}
		c.zkAddrs = c.zk.Addrs()
	}
	// Held until each node starts: the proxies wired below must not be
	// given a node's port (proc.Reservation).
	ports, addrs, err := proc.ReserveAddrs(cfg.Nodes)
	if err != nil {
		return nil, err
	}
	defer ports.Close()
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "nodes"), 0o755); err != nil {
		return nil, err
	}
	// With the nemesis's network, every node→node, node→ZooKeeper and
	// client→node link goes through a proxy of its own: each node gets its
	// ZooKeeper servers' and its peers' proxy addresses (--zk, --peers),
	// the router its client proxies. The harness's own ZooKeeper session
	// (the router, Master) stays direct: it is the observer, not a party.
	var wiring *nemesis.Wiring
	if cfg.Network != nil {
		topo := nemesis.Topology{Nodes: map[int]string{}, ZK: map[int]string{}}
		for i, a := range addrs {
			topo.Nodes[i+1] = a
		}
		for i, a := range c.zkAddrs {
			topo.ZK[i+1] = a
		}
		w, err := cfg.Network.Wire(topo)
		if err != nil {
			return nil, fmt.Errorf("chain cluster: wiring proxies: %w", err)
		}
		wiring = &w
	}
	for i := 0; i < cfg.Nodes; i++ {
		id := uint64(i + 1)
		n := &ChainNode{ID: id, Addr: addrs[i],
			DataDir: filepath.Join(cfg.Dir, "nodes", strconv.FormatUint(id, 10)),
			LogPath: filepath.Join(cfg.Dir, "nodes", strconv.FormatUint(id, 10)+".log")}
		args := []string{"node", "--store", "chain", "--id", strconv.FormatUint(id, 10), "--listen", n.Addr,
			"--data-dir", n.DataDir, "--zk", strings.Join(c.zkAddrs, ","),
			"--chains", strconv.Itoa(cfg.Chains), "--replicas", strconv.Itoa(cfg.Replicas), "--nodes", strconv.Itoa(cfg.Nodes),
			"--session-timeout", ChainSessionTimeout.String()}
		if cfg.NoFsync {
			args = append(args, "--no-fsync")
		}
		if cfg.Bug != "" {
			args = append(args, "--bug", cfg.Bug)
		}
		if wiring != nil {
			args = wireChainNode(args, *wiring, int(id))
		}
		ports.Release(n.Addr)
		n.Proc, err = proc.Start(proc.Spec{Name: fmt.Sprintf("chain-node-%d", id), Path: cfg.Binary, Args: args, LogPath: n.LogPath, CPUs: cfg.NodeCPUs})
		if err != nil {
			return nil, fmt.Errorf("chain cluster: start node %d: %w", id, err)
		}
		c.nodes = append(c.nodes, n)
	}
	c.router, err = chain.NewRouter(ctx, c.zkAddrs, cfg.Chains, 10*time.Second)
	if err != nil {
		return nil, fmt.Errorf("chain cluster: %w", err)
	}
	if wiring != nil {
		clients := map[uint64]string{}
		for id, a := range wiring.Clients {
			clients[uint64(id)] = a
		}
		c.router.SetAddrs(clients)
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := c.waitServing(wctx, true); err != nil {
		return nil, err
	}
	fmt.Fprintf(cfg.Log, "chain: %d nodes serving %d chains of %d (ZooKeeper %s)\n", cfg.Nodes, cfg.Chains, cfg.Replicas, strings.Join(c.zkAddrs, ","))
	return c, nil
}

// WaitServing waits until every chain has its full membership (no joiner)
// and answers a read at its tail.
func (c *ChainCluster) WaitServing(ctx context.Context) error { return c.waitServing(ctx, false) }

// waitServing fails early, at start, when a node process exits.
func (c *ChainCluster) waitServing(ctx context.Context, starting bool) error {
	cl := c.router.NewClient(time.Second)
	for ch := 0; ch < c.placement.Chains; ch++ {
		key := keyForChain(ch, c.placement.Chains)
		for {
			if starting {
				if err := c.checkExited(); err != nil {
					return err
				}
			}
			cfg, _ := c.router.Config(ch)
			if len(cfg.Members) == c.placement.Replicas && cfg.Joining == nil {
				rctx, cancel := context.WithTimeout(ctx, time.Second)
				_, _, err := cl.Get(rctx, key)
				cancel()
				if err == nil {
					break
				}
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("chain cluster: chain %d not serving (config %+v): %w", ch, cfg, ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}

func (c *ChainCluster) checkExited() error {
	for _, n := range c.nodes {
		select {
		case <-n.Proc.Exited():
			if !n.Proc.Running() && n.Proc.ExitErr() != nil {
				return fmt.Errorf("chain cluster: node %d exited: %v (log %s)", n.ID, n.Proc.ExitErr(), n.LogPath)
			}
		default:
		}
	}
	return nil
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

// NewClient implements Cluster.
func (c *ChainCluster) NewClient() (kv.KV, error) {
	return c.router.NewClient(c.cfg.RequestTimeout), nil
}

// Nodes lists the node processes, by id order.
func (c *ChainCluster) Nodes() []*ChainNode { return append([]*ChainNode(nil), c.nodes...) }

// Node returns node id, or nil.
func (c *ChainCluster) Node(id uint64) *ChainNode {
	if id == 0 || id > uint64(len(c.nodes)) {
		return nil
	}
	return c.nodes[id-1]
}

// Kill SIGKILLs node id.
func (c *ChainCluster) Kill(id uint64) error {
	n := c.Node(id)
	if n == nil {
		return fmt.Errorf("chain cluster: no node %d", id)
	}
	return n.Proc.Kill()
}

// Restart starts node id again with the same address and data directory.
func (c *ChainCluster) Restart(id uint64) error {
	n := c.Node(id)
	if n == nil {
		return fmt.Errorf("chain cluster: no node %d", id)
	}
	return n.Proc.Restart()
}

// Pause SIGSTOPs node id: it keeps its sockets and its ZooKeeper session
// until the session times out, as in a long GC pause.
func (c *ChainCluster) Pause(id uint64) error {
	n := c.Node(id)
	if n == nil {
		return fmt.Errorf("chain cluster: no node %d", id)
	}
	return n.Proc.Pause()
}

// Resume SIGCONTs node id.
func (c *ChainCluster) Resume(id uint64) error {
	n := c.Node(id)
	if n == nil {
		return fmt.Errorf("chain cluster: no node %d", id)
	}
	return n.Proc.Resume()
}

// Chains is the number of chains.
func (c *ChainCluster) Chains() int { return c.placement.Chains }

// Config returns chain ch's configuration as last seen in ZooKeeper.
func (c *ChainCluster) Config(ch int) chain.Config {
	c.router.Refresh(ch)
	cfg, _ := c.router.Config(ch)
	return cfg
}

// Head is chain ch's head node id (0 if none).
func (c *ChainCluster) Head(ch int) uint64 { return c.Config(ch).Head().ID }

// Tail is chain ch's tail node id (0 if none).
func (c *ChainCluster) Tail(ch int) uint64 { return c.Config(ch).Tail().ID }

// Rotated reports whether every chain has its preferred members in their
// preferred order (chain i: nodes i+1, i+2, ...), as the master restores
// them after failures.
func (c *ChainCluster) Rotated() bool {
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

// Middle is one of chain ch's middle nodes (0 if the chain has none).
func (c *ChainCluster) Middle(ch int) uint64 {
	cfg := c.Config(ch)
	if len(cfg.Members) < 3 {
		return 0
	}
	return cfg.Members[1].ID
}

// Master is the node currently elected master.
func (c *ChainCluster) Master() (uint64, error) {
	conn, _, err := zkrecipes.Connect(c.zkAddrs, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	_, data, err := zkrecipes.Leader(conn, chain.MasterPath)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(string(data), 10, 64)
}

// CompareReplicas implements ReplicaComparer: once quiescent, every member
// of every chain holds the same state (same last sequence, same digest of
// keys and values), in the current epoch.
func (c *ChainCluster) CompareReplicas(ctx context.Context) (string, error) {
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

func (c *ChainCluster) compareOnce(ctx context.Context) (string, error) {
	var parts []string
	for ch := 0; ch < c.placement.Chains; ch++ {
		cfg := c.Config(ch)
		if len(cfg.Members) == 0 {
			return "", fmt.Errorf("chain %d has no configuration", ch)
		}
		var first *ChainDigest
		var ids []string
		for _, m := range cfg.Members {
			dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			d, err := c.router.Digest(dctx, m.Addr, ch)
			cancel()
			if err != nil {
				return "", fmt.Errorf("chain %d node %d: %w", ch, m.ID, err)
			}
			got := ChainDigest{Epoch: d.Epoch, LastSeq: d.LastSeq, Digest: d.Digest, Keys: d.Keys}
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

// ChainDigest is one node's copy of a chain, as compared at the end of a run.
type ChainDigest struct {
	Epoch, LastSeq uint64
	Digest         string
	Keys           int64
}

// ZK is the ZooKeeper ensemble the harness started (nil when external).
func (c *ChainCluster) ZK() *zkserver.Ensemble { return c.zk }

// ZKConnect is the ZooKeeper connect string.
func (c *ChainCluster) ZKConnect() string { return strings.Join(c.zkAddrs, ",") }

// Close stops the nodes, then ZooKeeper. It is idempotent.
func (c *ChainCluster) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	var errs []error
	if c.router != nil {
		c.router.Close()
	}
	var wg sync.WaitGroup
	var emu sync.Mutex
	for _, n := range c.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := n.Proc.Stop(5 * time.Second); err != nil && !errors.Is(err, proc.ErrNotRunning) {
				emu.Lock()
				errs = append(errs, fmt.Errorf("node %d: %w", n.ID, err))
				emu.Unlock()
			}
		}()
	}
	wg.Wait()
	if c.zk != nil {
		if err := c.zk.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// wireChainNode points a chain node's --zk at its own ZooKeeper proxies and
// adds --peers with its own proxies to every other node.
func wireChainNode(args []string, w nemesis.Wiring, id int) []string {
	for i := range args {
		if args[i] == "--zk" && i+1 < len(args) {
			args[i+1] = w.ZKConnect(id)
		}
	}
	var peers []string
	for b, a := range w.Peers[id] {
		peers = append(peers, fmt.Sprintf("%d=%s", b, a))
	}
	sort.Strings(peers)
	if len(peers) > 0 {
		args = append(args, "--peers", strings.Join(peers, ","))
	}
	return args
}
