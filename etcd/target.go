package etcd

import (
	"context"
	"fmt"
	"sync"

	"github.com/chainraft/chainraft/harness/proccluster"
	"github.com/chainraft/chainraft/nemesis"
)

// Target is what the nemesis acts on in an etcd cluster. Kill, pause,
// restart and the network are proccluster's. Roles: "leader" (the member
// that leads when the fault is injected, from the maintenance Status API)
// and "follower" (the running members that do not). A member fault
// removes the member through the cluster API and, on heal, adds a fresh
// one on a spare id (etcd takes no removed member back), recorded as its
// replacement (nemesis.Replacer).
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

// Nodes implements nemesis.Target: every node started, less those removed.
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

// Resolve implements nemesis.Target, waiting out an election
// (proccluster.ResolveRetry).
func (t *Target) Resolve(ctx context.Context, role string) ([]int, error) {
	return proccluster.ResolveRetry(ctx, func(ctx context.Context) ([]int, error) { return t.resolve(ctx, role) })
}

func (t *Target) resolve(ctx context.Context, role string) ([]int, error) {
	switch role {
	case nemesis.RoleLeader, nemesis.RoleFollower:
	default:
		return nil, fmt.Errorf("%w: the etcd store has no role %q (known: leader, follower)", nemesis.ErrUnsupported, role)
	}
	lead, err := t.c.Leader(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", nemesis.ErrNoTarget, err)
	}
	if role == nemesis.RoleLeader {
		return []int{lead}, nil
	}
	var out []int
	for _, id := range t.Nodes() {
		if id != lead && t.c.pc.Up(id) {
			out = append(out, id)
		}
	}
	return out, nil
}

// RemoveMember implements nemesis.Target. The last member is never
// removed: nothing could add one back.
func (t *Target) RemoveMember(ctx context.Context, node int) error {
	if len(t.Nodes()) <= 1 {
		return fmt.Errorf("%w: cannot remove the last member", nemesis.ErrNoTarget)
	}
	if err := t.c.RemoveMember(ctx, node); err != nil {
		return err
	}
	t.mu.Lock()
	t.removed[node] = true
	t.mu.Unlock()
	return nil
}

// AddMember implements nemesis.Target: a fresh member in place of node.
func (t *Target) AddMember(ctx context.Context, node int) error {
	id, err := t.c.AddMember(ctx)
	if err != nil {
		return err
	}
	t.mu.Lock()
	t.replaced[node] = id
	t.mu.Unlock()
	fmt.Fprintf(t.c.env.Log, "etcd: node %d added in place of removed node %d\n", id, node)
	return nil
}

// ReplacedBy implements nemesis.Replacer.
func (t *Target) ReplacedBy(node int) (int, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	id, ok := t.replaced[node]
	return id, ok
}
