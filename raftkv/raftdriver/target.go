package raftdriver

import (
	"context"
	"fmt"
	"sync"

	"github.com/chainraft/chainraft/harness/proccluster"
	"github.com/chainraft/chainraft/nemesis"
)

// Target is what the nemesis acts on in a raft cluster. Kill, pause,
// restart and the network are proccluster's. Roles: "leader" (who leads
// when the fault is injected) and "follower" (the running members that do
// not). With several groups (--groups) both are group 0's: its leader, and
// its other members — a node that leads group 0 leads no other group
// unless a fault moved leadership, so a leader fault costs about one
// group's writes and reads, as a head fault costs one chain's writes. A member fault removes a node by conf change and, on heal, adds a
// fresh one: raft never reuses an id, so "adding it back" is a new node
// with a new id and an empty data directory, which catches up from the
// leader (ReplacedBy records it, and the new node is a target from then
// on).
type Target struct {
	proccluster.Target
	c *Cluster

	mu       sync.Mutex
	removed  map[int]bool
	replaced map[int]int
}

var (
	_ nemesis.Target   = (*Target)(nil)
	_ nemesis.Replacer = (*Target)(nil)
)

// Nodes implements nemesis.Target: the members, every node started less
// those removed.
func (t *Target) Nodes() []int {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []int
	for _, id := range t.c.pc.IDs() {
		if !t.removed[id] {
			out = append(out, id)
		}
	}
	return out
}

// Resolve implements nemesis.Target, waiting out an election (see
// proccluster.ResolveRetry).
func (t *Target) Resolve(ctx context.Context, role string) ([]int, error) {
	return proccluster.ResolveRetry(ctx, func(ctx context.Context) ([]int, error) { return t.resolve(ctx, role) })
}

func (t *Target) resolve(ctx context.Context, role string) ([]int, error) {
	switch role {
	case nemesis.RoleLeader, nemesis.RoleFollower:
	default:
		return nil, fmt.Errorf("%w: the raft store has no role %q (known: leader, follower)", nemesis.ErrUnsupported, role)
	}
	lead, err := t.c.Leader(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", nemesis.ErrNoTarget, err)
	}
	if role == nemesis.RoleLeader {
		return []int{int(lead)}, nil
	}
	candidates := t.Nodes()
	if t.c.groups > 1 {
		// Group 0's other members: a fault on a node outside group 0 is
		// a fault on other groups' members, maybe their leaders.
		candidates = nil
		for _, id := range t.c.groupMembers(0) {
			candidates = append(candidates, int(id))
		}
	}
	var out []int
	for _, id := range candidates {
		if id != int(lead) && t.c.pc.Up(id) {
			out = append(out, id)
		}
	}
	return out, nil
}

// RemoveMember implements nemesis.Target: node leaves by conf change and
// its process stops. The last member is never removed: nothing could add
// one back.
func (t *Target) RemoveMember(ctx context.Context, node int) error {
	if len(t.Nodes()) <= 1 {
		return fmt.Errorf("%w: cannot remove the last member", nemesis.ErrNoTarget)
	}
	if err := t.c.RemoveNode(ctx, uint64(node)); err != nil {
		return err
	}
	t.mu.Lock()
	t.removed[node] = true
	t.mu.Unlock()
	return nil
}

// AddMember implements nemesis.Target: a fresh node in place of node (see
// Target).
func (t *Target) AddMember(ctx context.Context, node int) error {
	id, err := t.c.AddNode(ctx)
	if err != nil {
		return err
	}
	t.mu.Lock()
	t.replaced[node] = int(id)
	t.mu.Unlock()
	fmt.Fprintf(t.c.env.Log, "raft: node %d added in place of removed node %d\n", id, node)
	return nil
}

// ReplacedBy implements nemesis.Replacer.
func (t *Target) ReplacedBy(node int) (int, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	id, ok := t.replaced[node]
	return id, ok
}
