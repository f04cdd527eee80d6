package raftkv

import (
	"errors"
	"fmt"
	"io"
	"log"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
)

// Host is one node process of a multi-raft store: the keys are split over
// Groups raft groups (kv.ShardOf), each replicated on GroupSize of the
// nodes, and the process runs one Node per group it is a member of. The
// groups share the process's one Transport (a message carries its group)
// and its gRPC server (a request names its group); each group has its own
// Core, loop, ticker and storage directory, so that a group's fsync, Ready
// and election never wait on another's. A group is a raft cluster of its
// own in every other respect: its leader orders its writes and answers its
// reads, which is what spreads both over the nodes as chains spread theirs
// over heads and tails.
type Host struct {
	id        uint64
	logger    *log.Logger
	transport *Transport
	ownsTrans bool
	nodes     map[uint32]*Node // built by StartHost, then only read
	// ready publishes nodes once built: the shared transport's senders
	// start (and may report a broken stream) while StartHost is still
	// adding groups, and a report before then is dropped (raft learns the
	// same from the next failure).
	ready atomic.Pointer[map[uint32]*Node]

	wg       sync.WaitGroup // one watcher per node
	donec    chan struct{}  // closed when the first node's loop ends
	doneOnce sync.Once
	stopOnce sync.Once
	err      error
}

// HostConfig configures a Host. Node is the template of every group's
// NodeConfig: its Peers are all the nodes of the store (the placement is
// computed from them), its DataDir the process's directory, under which
// each group gets group-<g>.
type HostConfig struct {
	Node NodeConfig
	// Groups is the number of raft groups (at least 2: one group is a plain
	// Node); GroupSize the members of each (at most the nodes).
	Groups, GroupSize int
}

// GroupMembers is group g's members: with the nodes sorted by id, nodes
// g, g+1, ..., g+size-1 (mod their number), so that group g's first member
// is node g mod N — as chain g's head is — and each node is a member of
// size groups when groups equals the nodes. The first member is the one
// the group prefers as its leader.
func GroupMembers(nodes []Member, size, g int) []Member {
	sorted := append([]Member(nil), nodes...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].ID < sorted[j].ID })
	size = min(size, len(sorted))
	out := make([]Member, 0, size)
	for j := range size {
		out = append(out, sorted[(g+j)%len(sorted)])
	}
	return out
}

// StartHost starts a Node for every group whose members include
// cfg.Node.ID. A process in no group still serves: it answers every
// request CODE_NOT_MEMBER, and its status.
func StartHost(cfg HostConfig) (*Host, error) {
	if cfg.Groups < 2 {
		return nil, fmt.Errorf("raftkv: a host runs 2 or more groups, got %d (one group is a Node)", cfg.Groups)
	}
	if cfg.GroupSize < 1 {
		return nil, fmt.Errorf("raftkv: group size %d", cfg.GroupSize)
	}
	if cfg.Node.Join {
		return nil, errors.New("raftkv: a node of several groups cannot join: membership changes are single-group only")
	}
	logger := cfg.Node.Logger
	if logger == nil {
		logger = log.New(io.Discard, "", 0)
	}
	h := &Host{id: cfg.Node.ID, logger: logger, nodes: map[uint32]*Node{}, donec: make(chan struct{})}
	h.transport = cfg.Node.Transport
	if h.transport == nil {
		h.transport, h.ownsTrans = newTransport(cfg.Node.ID, logger, h.deliverReport), true
	}
	for g := range cfg.Groups {
		members := GroupMembers(cfg.Node.Peers, cfg.GroupSize, g)
		in := false
		for _, m := range members {
			in = in || m.ID == cfg.Node.ID
		}
		if !in {
			continue
		}
		nc := cfg.Node
		nc.Group, nc.Transport, nc.Preferred = uint32(g), h.transport, members[0].ID
		nc.Peers = members
		nc.DataDir = filepath.Join(cfg.Node.DataDir, fmt.Sprintf("group-%d", g))
		nc.Logger = log.New(logger.Writer(), fmt.Sprintf("group %d: ", g), 0)
		n, err := newNode(nc)
		if err != nil {
			// No loop runs yet: only the storages opened so far are held.
			for _, built := range h.nodes {
				built.storage.Close()
			}
			if h.ownsTrans {
				h.transport.Stop()
			}
			return nil, fmt.Errorf("raftkv: group %d: %w", g, err)
		}
		h.nodes[uint32(g)] = n
	}
	// The loops start only once every node exists: a report or a message
	// for a group must find its node.
	h.ready.Store(&h.nodes)
	for _, n := range h.nodes {
		go n.run()
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			<-n.Done()
			h.doneOnce.Do(func() { close(h.donec) })
		}()
	}
	return h, nil
}

// deliverReport routes a transport report to its group's node, or to every
// node for a broken stream.
func (h *Host) deliverReport(r report) {
	nodes := h.ready.Load()
	if nodes == nil {
		return
	}
	if r.all {
		for _, n := range *nodes {
			n.deliverReport(r)
		}
		return
	}
	if n := (*nodes)[r.group]; n != nil {
		n.deliverReport(r)
	}
}

// Node is the node of group g, or nil when this process is not a member.
func (h *Host) Node(g uint32) *Node { return h.nodes[g] }

// Groups lists the groups this process is a member of, sorted.
func (h *Host) Groups() []uint32 {
	out := make([]uint32, 0, len(h.nodes))
	for g := range h.nodes {
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Done is closed when any group's loop has ended (Stop, or a storage
// error: see Err); the process then stops every group.
func (h *Host) Done() <-chan struct{} { return h.donec }

// Err says why the first loop that ended did, once Done is closed.
func (h *Host) Err() error {
	for _, g := range h.Groups() {
		n := h.nodes[g]
		select {
		case <-n.Done():
			if err := n.Err(); err != nil {
				return fmt.Errorf("group %d: %w", g, err)
			}
		default:
		}
	}
	return nil
}

// Stop stops every group's loop, then the shared transport, and returns
// the first error a loop ended with.
func (h *Host) Stop() error {
	h.stopOnce.Do(func() {
		h.err = h.stopNodes()
		h.doneOnce.Do(func() { close(h.donec) })
		h.wg.Wait()
	})
	return h.err
}

func (h *Host) stopNodes() error {
	var first error
	for _, g := range h.Groups() {
		if err := h.nodes[g].Stop(); err != nil && first == nil {
			first = fmt.Errorf("group %d: %w", g, err)
		}
	}
	if h.ownsTrans {
		h.transport.Stop()
	}
	return first
}
