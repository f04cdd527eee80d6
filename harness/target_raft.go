package harness

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/chainraft/chainraft/nemesis"
)

// RaftTarget is what the nemesis acts on in a raft cluster. Roles: "leader"
// (who leads when the fault is injected) and "follower" (the running members
// that do not). A member fault removes a node by conf change and, on heal,
// adds a fresh one: raft never reuses an id, so "adding it back" is a new
// node with a new id and an empty data directory, which catches up from the
// leader (ReplacedBy records it, and the new node is a target from then on).
type RaftTarget struct {
	c *RaftCluster

	mu       sync.Mutex
	removed  map[int]bool
	replaced map[int]int
}

// NewRaftTarget adapts c for the nemesis.
func NewRaftTarget(c *RaftCluster) *RaftTarget {
	return &RaftTarget{c: c, removed: map[int]bool{}, replaced: map[int]int{}}
}

var (
	_ nemesis.Target   = (*RaftTarget)(nil)
	_ nemesis.Replacer = (*RaftTarget)(nil)
)

// Nodes lists the members: every node started, less those removed.
func (t *RaftTarget) Nodes() []int {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []int
	for _, id := range t.c.Nodes() {
		if !t.removed[int(id)] {
			out = append(out, int(id))
		}
	}
	return out
}

// resolveWait bounds how long a role may go unheld (an election running, a
// chain rejoining a node) before the fault is skipped for want of a target.
const resolveWait = 5 * time.Second

// resolveRetry asks resolve until it names someone, an error that is not
// ErrNoTarget comes back, or resolveWait passes: "kill the leader" right
// after another fault must wait for the election, not skip.
func resolveRetry(ctx context.Context, resolve func(context.Context) ([]int, error)) ([]int, error) {
	ctx, cancel := context.WithTimeout(ctx, resolveWait)
	defer cancel()
	for {
		ids, err := resolve(ctx)
		if (err == nil && len(ids) > 0) || (err != nil && !errors.Is(err, nemesis.ErrNoTarget)) {
			return ids, err
		}
		select {
		case <-ctx.Done():
			return ids, err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Resolve implements nemesis.Target.
func (t *RaftTarget) Resolve(ctx context.Context, role string) ([]int, error) {
	return resolveRetry(ctx, func(ctx context.Context) ([]int, error) { return t.resolve(ctx, role) })
}

func (t *RaftTarget) resolve(ctx context.Context, role string) ([]int, error) {
	switch role {
	case nemesis.RoleLeader:
		id, err := t.c.Leader(ctx)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", nemesis.ErrNoTarget, err)
		}
		return []int{int(id)}, nil
	case nemesis.RoleFollower:
		lead, err := t.c.Leader(ctx)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", nemesis.ErrNoTarget, err)
		}
		var out []int
		for _, id := range t.Nodes() {
			p := t.c.Process(uint64(id))
			if id != int(lead) && p != nil && p.Running() && !p.Paused() {
				out = append(out, id)
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: the raft store has no role %q (known: leader, follower)", nemesis.ErrUnsupported, role)
}

// Kill implements nemesis.Target.
func (t *RaftTarget) Kill(_ context.Context, node int) error { return t.c.Kill(uint64(node)) }

// Restart starts a killed node again; a node already running is left alone,
// so that overlapping faults on one node heal in any order.
func (t *RaftTarget) Restart(_ context.Context, node int) error {
	if p := t.c.Process(uint64(node)); p != nil && p.Running() {
		return nil
	}
	return t.c.Restart(uint64(node))
}

// Pause implements nemesis.Target.
func (t *RaftTarget) Pause(_ context.Context, node int) error { return t.c.Pause(uint64(node)) }

// Resume continues a paused node; a running one is left alone.
func (t *RaftTarget) Resume(_ context.Context, node int) error {
	if p := t.c.Process(uint64(node)); p != nil && !p.Paused() {
		return nil
	}
	return t.c.Resume(uint64(node))
}

// RemoveMember takes node out by conf change and stops its process.
func (t *RaftTarget) RemoveMember(ctx context.Context, node int) error {
	t.mu.Lock()
	members := 0
	for _, id := range t.c.Nodes() {
		if !t.removed[int(id)] {
			members++
		}
	}
	t.mu.Unlock()
	if members <= 1 {
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

// AddMember adds a fresh node in place of node (see RaftTarget).
func (t *RaftTarget) AddMember(ctx context.Context, node int) error {
	id, err := t.c.AddNode(ctx)
	if err != nil {
		return err
	}
	t.mu.Lock()
	t.replaced[node] = int(id)
	t.mu.Unlock()
	fmt.Fprintf(t.c.cfg.Log, "raft: node %d added in place of removed node %d\n", id, node)
	return nil
}

// ReplacedBy implements nemesis.Replacer.
func (t *RaftTarget) ReplacedBy(node int) (int, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	id, ok := t.replaced[node]
	return id, ok
}

// Network implements nemesis.Target.
func (t *RaftTarget) Network() *nemesis.Network { return t.c.cfg.Network }

// ZK implements nemesis.Target: the raft store has no ZooKeeper.
func (t *RaftTarget) ZK() nemesis.ZKTarget { return nil }

// Members are the ids the raft cluster counts as members now, sorted (for
// the end-of-run checks).
func (t *RaftTarget) Members() []uint64 {
	var out []uint64
	for _, id := range t.Nodes() {
		out = append(out, uint64(id))
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
