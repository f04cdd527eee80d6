package harness

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/chainraft/chainraft/internal/proc"
	"github.com/chainraft/chainraft/kv"
	"github.com/chainraft/chainraft/nemesis"
	"github.com/chainraft/chainraft/raftkv"
	"github.com/chainraft/chainraft/raftkv/raftkvpb"
)

func init() {
	RegisterStore("raft", func(ctx context.Context, cfg ClusterConfig) (Cluster, error) {
		return StartRaftCluster(ctx, cfg)
	})
}

// RaftCluster is a local raft store: one `chainraft node --store raft`
// process per node on loopback ports, each with its data directory
// <Dir>/nodes/<id>/ and log <Dir>/nodes/<id>.log. Besides the Cluster
// interface it exposes what the nemesis needs: the nodes, their processes,
// kill / pause / restart by id, the leader, and membership changes.
type RaftCluster struct {
	cfg   ClusterConfig
	group proc.Group
	conns *raftkv.Conns

	mu     sync.Mutex // guards nodes and nextID
	nodes  map[uint64]*raftNode
	nextID uint64

	// wiring is set when cfg.Network is: the proxy addresses each node and
	// the clients dial. spareAddrs are the listen addresses reserved for the
	// nodes AddNode may start (ids Nodes+1 ... Nodes+SpareNodes).
	wiring     *nemesis.Wiring
	spareAddrs map[uint64]string
	// ports holds the nodes' (and spares') addresses until each node starts.
	ports *proc.Reservation

	closeOnce sync.Once
	closeErr  error
}

type raftNode struct {
	id   uint64
	addr string
	p    *proc.Process
}

// StartRaftCluster starts cfg.Nodes node processes and returns once a
// leader serves a linearizable read. On error nothing is left running.
func StartRaftCluster(ctx context.Context, cfg ClusterConfig) (*RaftCluster, error) {
	if cfg.Binary == "" {
		return nil, errors.New("raft cluster: no chainraft binary given")
	}
	if cfg.Nodes <= 0 {
		cfg.Nodes = 3
	}
	spares := 0
	if cfg.Network != nil {
		spares = max(cfg.SpareNodes, 0)
	}
	ports, addrs, err := proc.ReserveAddrs(cfg.Nodes + spares)
	if err != nil {
		return nil, fmt.Errorf("raft cluster: %w", err)
	}
	c := &RaftCluster{cfg: cfg, nodes: map[uint64]*raftNode{}, spareAddrs: map[uint64]string{}, ports: ports}
	var members, clientAddrs []raftkv.Member
	var peers []string
	for i, a := range addrs[:cfg.Nodes] {
		id := uint64(i + 1)
		members = append(members, raftkv.Member{ID: id, Addr: a})
		peers = append(peers, fmt.Sprintf("%d=%s", id, a))
	}
	for i, a := range addrs[cfg.Nodes:] {
		c.spareAddrs[uint64(cfg.Nodes+i+1)] = a
	}
	c.nextID = uint64(cfg.Nodes) + 1
	clientAddrs = members
	if cfg.Network != nil {
		topo := nemesis.Topology{Nodes: map[int]string{}}
		for i, a := range addrs {
			topo.Nodes[i+1] = a
		}
		w, err := cfg.Network.Wire(topo)
		if err != nil {
			ports.Close()
			return nil, fmt.Errorf("raft cluster: wiring proxies: %w", err)
		}
		c.wiring = &w
		clientAddrs = nil
		for _, m := range members {
			clientAddrs = append(clientAddrs, raftkv.Member{ID: m.ID, Addr: w.Clients[int(m.ID)]})
		}
	}
	c.conns, err = raftkv.Dial(clientAddrs, raftkv.ClientOptions{RequestTimeout: cfg.RequestTimeout})
	if err != nil {
		ports.Close()
		return nil, fmt.Errorf("raft cluster: %w", err)
	}
	for _, m := range members {
		if err := c.startNode(m.ID, m.Addr, c.peerArgs(m.ID, m.Addr, peers, members), false); err != nil {
			c.Close()
			return nil, err
		}
	}
	if err := c.WaitServing(ctx, 30*time.Second); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// peerArgs is node id's --peers: direct, the given peers; through the
// network, every node id may reach (others, through id's own proxies, and
// itself at its listen address), with "+id=addr" address-only entries for
// the spare ids, which node id will dial through its proxies if the log
// ever adds them.
func (c *RaftCluster) peerArgs(id uint64, self string, direct []string, reach []raftkv.Member) []string {
	if c.wiring == nil {
		return direct
	}
	var out []string
	known := map[uint64]bool{}
	for _, m := range reach {
		known[m.ID] = true
		addr := self
		if m.ID != id {
			addr = c.wiring.Peers[int(id)][int(m.ID)]
		}
		out = append(out, fmt.Sprintf("%d=%s", m.ID, addr))
	}
	for sid := range c.spareAddrs {
		if sid != id && !known[sid] {
			out = append(out, fmt.Sprintf("+%d=%s", sid, c.wiring.Peers[int(id)][int(sid)]))
		}
	}
	sort.Strings(out)
	return out
}

func (c *RaftCluster) startNode(id uint64, addr string, peers []string, join bool) error {
	args := []string{"node", "--store", "raft",
		"--id", strconv.FormatUint(id, 10),
		"--listen", addr,
		"--peers", strings.Join(peers, ","),
		"--data-dir", filepath.Join(c.cfg.Dir, "nodes", strconv.FormatUint(id, 10)),
	}
	if c.cfg.NoFsync {
		args = append(args, "--no-fsync")
	}
	if c.cfg.ReadMode != "" {
		args = append(args, "--read-mode", c.cfg.ReadMode)
	}
	if join {
		args = append(args, "--join")
	}
	if c.cfg.Bug != "" {
		args = append(args, "--bug", c.cfg.Bug)
	}
	c.ports.Release(addr)
	p, err := c.group.Start(proc.Spec{
		Name:    fmt.Sprintf("raft-%d", id),
		Path:    c.cfg.Binary,
		Args:    args,
		LogPath: filepath.Join(c.cfg.Dir, "nodes", fmt.Sprintf("%d.log", id)),
		CPUs:    c.cfg.NodeCPUs,
	})
	if err != nil {
		return fmt.Errorf("raft cluster: start node %d: %w", id, err)
	}
	c.mu.Lock()
	c.nodes[id] = &raftNode{id: id, addr: addr, p: p}
	c.mu.Unlock()
	fmt.Fprintf(c.cfg.Log, "raft: node %d started at %s (pid %d)\n", id, addr, p.Pid())
	return nil
}

// WaitServing waits until some node leads and answers a linearizable read,
// failing early if a node process exits.
func (c *RaftCluster) WaitServing(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cl := c.conns.NewClient()
	for {
		for _, id := range c.Nodes() {
			if p := c.Process(id); p != nil && !p.Running() {
				return fmt.Errorf("raft cluster: node %d exited while starting: %v (see %s)", id, p.ExitErr(), p.Spec().LogPath)
			}
		}
		rctx, rcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		_, _, err := cl.Get(rctx, "chainraft-probe")
		rcancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("raft cluster: no leader serving within %v: %w", timeout, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// NewClient implements Cluster.
func (c *RaftCluster) NewClient() (kv.KV, error) { return c.conns.NewClient(), nil }

// Close SIGKILLs every node process (a node's durable state is on disk;
// nothing is lost that a crash would not lose) and closes connections. It
// is idempotent.
func (c *RaftCluster) Close() error {
	c.closeOnce.Do(func() {
		c.closeErr = c.group.CloseAll()
		c.conns.Close()
		c.ports.Close()
	})
	return c.closeErr
}

// Nodes lists the ids of the nodes started (removed ones included), sorted.
func (c *RaftCluster) Nodes() []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := make([]uint64, 0, len(c.nodes))
	for id := range c.nodes {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}

// Addr is a node's client and peer address.
func (c *RaftCluster) Addr(id uint64) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := c.nodes[id]; n != nil {
		return n.addr
	}
	return ""
}

// Process is a node's process handle (nil for an unknown id).
func (c *RaftCluster) Process(id uint64) *proc.Process {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := c.nodes[id]; n != nil {
		return n.p
	}
	return nil
}

func (c *RaftCluster) mustProcess(id uint64) (*proc.Process, error) {
	if p := c.Process(id); p != nil {
		return p, nil
	}
	return nil, fmt.Errorf("raft cluster: no node %d", id)
}

// Kill SIGKILLs a node.
func (c *RaftCluster) Kill(id uint64) error {
	p, err := c.mustProcess(id)
	if err != nil {
		return err
	}
	return p.Kill()
}

// Restart starts a killed or stopped node again on its data directory.
func (c *RaftCluster) Restart(id uint64) error {
	p, err := c.mustProcess(id)
	if err != nil {
		return err
	}
	return p.Restart()
}

// Pause SIGSTOPs a node; Resume SIGCONTs it.
func (c *RaftCluster) Pause(id uint64) error {
	p, err := c.mustProcess(id)
	if err != nil {
		return err
	}
	return p.Pause()
}

// Resume continues a paused node.
func (c *RaftCluster) Resume(id uint64) error {
	p, err := c.mustProcess(id)
	if err != nil {
		return err
	}
	return p.Resume()
}

// Leader asks the running nodes who leads and returns the id a leader
// reports for itself (0 and an error if none does right now). Two nodes
// may both think they lead for a moment; the one with the higher term wins.
func (c *RaftCluster) Leader(ctx context.Context) (uint64, error) {
	var best, bestTerm uint64
	for _, id := range c.Nodes() {
		if p := c.Process(id); p == nil || !p.Running() || p.Paused() {
			continue
		}
		st, err := c.conns.Status(ctx, id)
		if err != nil {
			continue
		}
		if st.GetRole() == "StateLeader" && st.GetTerm() >= bestTerm {
			best, bestTerm = id, st.GetTerm()
		}
	}
	if best == 0 {
		return 0, errors.New("raft cluster: no leader right now")
	}
	return best, nil
}

// NodeStatus asks one node for its view (role, term, commit, applied,
// members).
func (c *RaftCluster) NodeStatus(ctx context.Context, id uint64) (*raftkvpb.StatusResponse, error) {
	return c.conns.Status(ctx, id)
}

// Followers lists the running nodes that are not the leader.
func (c *RaftCluster) Followers(ctx context.Context) ([]uint64, error) {
	lead, err := c.Leader(ctx)
	if err != nil {
		return nil, err
	}
	var out []uint64
	for _, id := range c.Nodes() {
		if id != lead {
			out = append(out, id)
		}
	}
	return out, nil
}

// AddNode starts a new node with a fresh id (ids are never reused), on a
// fresh port and data directory, and adds it to the membership.
func (c *RaftCluster) AddNode(ctx context.Context) (uint64, error) {
	c.mu.Lock()
	id := c.nextID
	var peers []string
	var reach []raftkv.Member
	for _, n := range c.nodes {
		peers = append(peers, fmt.Sprintf("%d=%s", n.id, n.addr))
		reach = append(reach, raftkv.Member{ID: n.id, Addr: n.addr})
	}
	c.mu.Unlock()
	sort.Strings(peers)
	sort.Slice(reach, func(i, j int) bool { return reach[i].ID < reach[j].ID })
	var addr, clientAddr string
	if c.wiring != nil {
		// Through the network, only the spare ids have proxies.
		a, ok := c.spareAddrs[id]
		if !ok {
			return 0, fmt.Errorf("raft cluster: add node %d: no spare node wired through the network (SpareNodes %d)", id, c.cfg.SpareNodes)
		}
		addr, clientAddr = a, c.wiring.Clients[int(id)]
		peers = c.peerArgs(id, addr, nil, reach)
	} else {
		addrs, err := proc.FreeAddrs(1)
		if err != nil {
			return 0, err
		}
		addr, clientAddr = addrs[0], addrs[0]
	}
	c.mu.Lock()
	c.nextID++
	c.mu.Unlock()
	if err := c.conns.AddNode(ctx, id, addr); err != nil {
		return 0, fmt.Errorf("raft cluster: add node %d: %w", id, err)
	}
	if err := c.conns.SetMember(id, clientAddr); err != nil {
		return 0, err
	}
	if err := c.startNode(id, addr, peers, true); err != nil {
		return 0, err
	}
	return id, nil
}

// RemoveNode removes a node from the membership and then stops its process.
func (c *RaftCluster) RemoveNode(ctx context.Context, id uint64) error {
	if err := c.conns.RemoveNode(ctx, id); err != nil {
		return fmt.Errorf("raft cluster: remove node %d: %w", id, err)
	}
	p, err := c.mustProcess(id)
	if err != nil {
		return err
	}
	return p.Stop(2 * time.Second)
}
