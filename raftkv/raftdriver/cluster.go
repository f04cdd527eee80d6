package raftdriver

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/chainraft/chainraft/harness"
	"github.com/chainraft/chainraft/harness/proccluster"
	"github.com/chainraft/chainraft/internal/proc"
	"github.com/chainraft/chainraft/kv"
	"github.com/chainraft/chainraft/nemesis"
	"github.com/chainraft/chainraft/raftkv"
	"github.com/chainraft/chainraft/raftkv/raftkvpb"
)

// statusTimeout bounds one node's status answer in the meters and the
// replica comparison: a node that cannot answer in that time is paused,
// partitioned or overloaded, and is left out (meters) or waited for
// (comparison) rather than stalling the harness.
const statusTimeout = 2 * time.Second

// digestTimeout bounds a status with the digest of a node's data: a hash
// of all of it, about a second per gigabyte on the project's machine.
const digestTimeout = 30 * time.Second

// removeGrace is how long a removed node gets to stop cleanly before it is
// killed: it has left the membership, so nothing depends on its state.
const removeGrace = 2 * time.Second

// Cluster is a running raft store: one `chainraft node raft` process per
// node, started and faulted through proccluster, with one shared set of
// client connections. Ids are never reused: a node added by a member fault
// takes the next id, a fresh port and an empty data directory.
type Cluster struct {
	env           harness.Env
	snapshotEvery uint64
	pc            *proccluster.Cluster
	conns         *raftkv.Conns
	// members are the initial nodes; groups and groupSize the multi-raft
	// shape (1 group of every node: the plain store).
	members           []raftkv.Member
	groups, groupSize int

	mu     sync.Mutex // guards nextID and added
	nextID uint64
	// added are the listen addresses of nodes added beyond the ids
	// proccluster reserved (a cluster not wired through the network has no
	// spares: an added node takes any free port).
	added map[uint64]string

	targetOnce sync.Once
	target     *Target

	closeOnce sync.Once
	closeErr  error
}

var (
	_ harness.Cluster         = (*Cluster)(nil)
	_ harness.TargetCluster   = (*Cluster)(nil)
	_ harness.ReplicaComparer = (*Cluster)(nil)
	_ harness.CPUMeter        = (*Cluster)(nil)
	_ harness.MessageCounter  = (*Cluster)(nil)
)

// listen is node id's listen address (clients and peers share it).
func (c *Cluster) listen(id uint64) string {
	if a := c.pc.PeerListen(int(id)); a != "" {
		return a
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.added[id]
}

// dial is the address node from dials to reach node to: its own proxy when
// the network is wired, else to's listen address.
func (c *Cluster) dial(from, to uint64) string {
	if c.pc.Proxied() {
		return c.pc.Dial(int(from), int(to))
	}
	return c.listen(to)
}

// peerArgs is node id's --peers: every node in reach as "id=addr" (id
// itself at its listen address, the others at the address id dials, its
// own proxy when wired), and, when wired, "+id=addr" address-only entries
// for the spare ids: a running node learns a new member's address from the
// log, one address for every dialer, which would bypass the per-link
// proxies; the address book makes node id dial a spare through its own
// proxy if the log ever adds it.
func (c *Cluster) peerArgs(id uint64, reach []uint64) []string {
	var out []string
	known := map[uint64]bool{}
	for _, m := range reach {
		known[m] = true
		out = append(out, fmt.Sprintf("%d=%s", m, c.dial(id, m)))
	}
	if c.pc.Proxied() {
		for _, s := range c.pc.Spares() {
			if sid := uint64(s); sid != id && !known[sid] {
				out = append(out, fmt.Sprintf("+%d=%s", sid, c.dial(id, sid)))
			}
		}
	}
	sort.Strings(out)
	return out
}

func (c *Cluster) startNode(id uint64, peers []string, join bool) error {
	return c.pc.Start(int(id), c.env.Binary, c.nodeArgs(id, c.listen(id), peers, join), nil)
}

// waitServing waits until every group has a leader that answers a
// linearizable read (a Get goes through ReadIndex or the lease), failing
// early if a node process exits.
func (c *Cluster) waitServing(ctx context.Context, timeout time.Duration) error {
	cl := c.conns.NewClient()
	probes := probeKeys(c.groups)
	return c.pc.WaitReady(ctx, timeout, func(ctx context.Context) error {
		for _, k := range probes {
			if _, _, err := cl.Get(ctx, k); err != nil {
				return err
			}
		}
		return nil
	})
}

// probeKeys is one key of each group, in group order.
func probeKeys(groups int) []string {
	out := make([]string, groups)
	found := 0
	for i := 0; found < groups; i++ {
		k := fmt.Sprintf("chainraft-probe-%d", i)
		if g := kv.ShardOf(k, groups); out[g] == "" {
			out[g] = k
			found++
		}
	}
	return out
}

// groupMembers is group g's initial members, its preferred leader first.
func (c *Cluster) groupMembers(g int) []uint64 {
	var out []uint64
	for _, m := range raftkv.GroupMembers(c.members, c.groupSize, g) {
		out = append(out, m.ID)
	}
	return out
}

// errMultiGroup refuses a membership change of a multi-raft cluster.
var errMultiGroup = errors.New("raft cluster: membership changes need a single raft group (--groups 1)")

// NewClient implements harness.Cluster.
func (c *Cluster) NewClient() (kv.KV, error) { return c.conns.NewClient(), nil }

// Close implements harness.Cluster: it SIGKILLs every node process (a
// node's durable state is on disk; nothing is lost that a crash would not
// lose), closes the connections and releases every port. It is idempotent.
func (c *Cluster) Close() error {
	c.closeOnce.Do(func() {
		c.closeErr = c.pc.Close(0)
		c.conns.Close()
	})
	return c.closeErr
}

// Nodes lists the ids of the nodes started (removed ones included), sorted.
func (c *Cluster) Nodes() []uint64 {
	var out []uint64
	for _, id := range c.pc.IDs() {
		out = append(out, uint64(id))
	}
	return out
}

// Process is node id's process handle (nil for an unknown id).
func (c *Cluster) Process(id uint64) *proc.Process { return c.pc.Process(int(id)) }

// Kill SIGKILLs node id (one already down is left alone).
func (c *Cluster) Kill(id uint64) error { return c.pc.Kill(int(id)) }

// Restart starts a killed or stopped node again on its data directory.
func (c *Cluster) Restart(id uint64) error { return c.pc.Restart(int(id)) }

// Pause SIGSTOPs node id.
func (c *Cluster) Pause(id uint64) error { return c.pc.Pause(int(id)) }

// Resume SIGCONTs a paused node.
func (c *Cluster) Resume(id uint64) error { return c.pc.Resume(int(id)) }

// Leader asks the running nodes who leads group 0 (the only group of a
// single-group store) and returns the id a leader reports for itself (0
// and an error if none does right now). Two nodes may both think they lead
// for a moment; the one with the higher term wins.
func (c *Cluster) Leader(ctx context.Context) (uint64, error) { return c.GroupLeader(ctx, 0) }

// GroupLeader is Leader for group g.
func (c *Cluster) GroupLeader(ctx context.Context, g int) (uint64, error) {
	var best, bestTerm uint64
	for _, id := range c.Nodes() {
		if !c.pc.Up(int(id)) {
			continue
		}
		st, err := c.conns.GroupStatus(ctx, id, uint32(g))
		if err != nil {
			continue
		}
		if st.GetRole() == "StateLeader" && st.GetTerm() >= bestTerm {
			best, bestTerm = id, st.GetTerm()
		}
	}
	if best == 0 {
		return 0, fmt.Errorf("raft cluster: group %d has no leader right now", g)
	}
	return best, nil
}

// NodeStatus asks one node for its view (role, term, commit, applied,
// members, digest, messages sent).
func (c *Cluster) NodeStatus(ctx context.Context, id uint64) (*raftkvpb.StatusResponse, error) {
	return c.conns.Status(ctx, id)
}

// catchUpWait bounds WaitCaughtUp: a new node copies the leader's whole
// state, which takes longer the more data the store holds.
const catchUpWait = 5 * time.Minute

// WaitCaughtUp waits until node id has applied what the leader had
// committed when the wait began.
func (c *Cluster) WaitCaughtUp(ctx context.Context, id uint64) error {
	ctx, cancel := context.WithTimeout(ctx, catchUpWait)
	defer cancel()
	status := func(id uint64) (*raftkvpb.StatusResponse, error) {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		return c.NodeStatus(sctx, id)
	}
	began := time.Now()
	var target uint64
	for {
		if target == 0 {
			if lead, err := c.Leader(ctx); err == nil {
				if st, err := status(lead); err == nil {
					target = st.GetCommit()
				}
			}
		}
		if target != 0 {
			if st, err := status(id); err == nil && st.GetApplied() >= target {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("raft cluster: node %d not caught up (applied index %d wanted) after %v: %w", id, target, time.Since(began).Round(time.Millisecond), ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// AddNode starts a node with a fresh id (ids are never reused), on a fresh
// port and data directory, and adds it to the membership. Through the
// network only the spare ids wired at start have proxies, so there are at
// most env.SpareNodes additions.
func (c *Cluster) AddNode(ctx context.Context) (uint64, error) {
	if c.groups > 1 {
		return 0, errMultiGroup
	}
	reach := c.Nodes()
	id, addr, clientAddr, err := c.takeID()
	if err != nil {
		return 0, err
	}
	if err := c.conns.AddNode(ctx, id, addr); err != nil {
		return 0, fmt.Errorf("raft cluster: add node %d: %w", id, err)
	}
	if err := c.conns.SetMember(id, clientAddr); err != nil {
		return 0, err
	}
	if err := c.startNode(id, c.peerArgs(id, reach), true); err != nil {
		return 0, err
	}
	return id, nil
}

// takeID takes the next node id and its addresses (listen, and where
// clients dial it), in one critical section so that concurrent additions
// never share an id.
func (c *Cluster) takeID() (id uint64, addr, clientAddr string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id = c.nextID
	if c.pc.Proxied() || c.pc.Remote() {
		addr, clientAddr = c.pc.PeerListen(int(id)), c.pc.ClientAddr(int(id))
		if addr == "" {
			return 0, "", "", fmt.Errorf("raft cluster: add node %d: no spare node wired through the network (SpareNodes %d)", id, c.env.SpareNodes)
		}
	} else {
		addrs, err := proc.FreeAddrs(1)
		if err != nil {
			return 0, "", "", fmt.Errorf("raft cluster: add node %d: %w", id, err)
		}
		addr, clientAddr = addrs[0], addrs[0]
		c.added[id] = addr
	}
	c.nextID++
	return id, addr, clientAddr, nil
}

// RemoveNode removes node id from the membership by conf change, then
// stops its process.
func (c *Cluster) RemoveNode(ctx context.Context, id uint64) error {
	if c.groups > 1 {
		return errMultiGroup
	}
	if err := c.conns.RemoveNode(ctx, id); err != nil {
		return fmt.Errorf("raft cluster: remove node %d: %w", id, err)
	}
	return c.pc.Stop(int(id), removeGrace)
}

// Groups is the number of raft groups, GroupSize their members.
func (c *Cluster) Groups() (groups, size int) { return c.groups, c.groupSize }

// NodeCPU implements harness.CPUMeter: every incarnation of every node
// started, removed ones included.
func (c *Cluster) NodeCPU() map[uint64]time.Duration { return c.pc.NodeCPU() }

// PeerMessagesSent implements harness.MessageCounter: each running node's
// count of raft messages handed to its transport, from its status.
func (c *Cluster) PeerMessagesSent(ctx context.Context) map[uint64]uint64 {
	out := map[uint64]uint64{}
	for _, id := range c.Nodes() {
		if !c.pc.Up(int(id)) {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, statusTimeout)
		st, err := c.conns.Status(sctx, id)
		cancel()
		if err != nil {
			continue
		}
		out[id] = st.GetPeerMessagesSent()
	}
	return out
}

// Target implements harness.TargetCluster. There is one target per
// cluster, made on the first call, because it remembers which nodes member
// faults removed and replaced; net is the network the cluster was started
// with (env.Network), which proccluster already holds.
func (c *Cluster) Target(*nemesis.Network) nemesis.Target {
	c.targetOnce.Do(func() {
		c.target = &Target{
			Target: proccluster.Target{C: c.pc}, c: c,
			Replacements: proccluster.Replacements{Store: Name, IDs: c.pc.IDs},
		}
	})
	return c.target
}
