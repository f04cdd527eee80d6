package proccluster

import (
	"context"
	"fmt"
	"sync"

	"github.com/chainraft/chainraft/nemesis"
)

// Replacements is the member fault of a store that never takes a removed
// member back — raft never reuses an id, etcd refuses a removed member's
// return — so "adding it back" starts a fresh node with a new id and an
// empty data directory, which catches up from the others. Replacements
// keeps which nodes are out and who replaced whom, the part such drivers
// share; a driver's Target embeds it and supplies the cluster calls.
type Replacements struct {
	// Store names the store in messages: its driver's Name.
	Store string
	// IDs lists every node started, removed or not (Cluster.IDs).
	IDs func() []int

	mu       sync.Mutex
	removed  map[int]bool
	replaced map[int]int
}

// Nodes implements nemesis.Target: every node started, less those removed.
func (r *Replacements) Nodes() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []int
	for _, id := range r.IDs() {
		if !r.removed[id] {
			out = append(out, id)
		}
	}
	return out
}

// Remove takes node out with remove and records it. The last member is
// never removed: nothing could add one back.
func (r *Replacements) Remove(ctx context.Context, node int, remove func(context.Context, int) error) error {
	if len(r.Nodes()) <= 1 {
		return fmt.Errorf("%w: cannot remove the last member", nemesis.ErrNoTarget)
	}
	if err := remove(ctx, node); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.removed == nil {
		r.removed = map[int]bool{}
	}
	r.removed[node] = true
	return nil
}

// Add starts a fresh node with add in place of node and records it as
// node's replacement (ReplacedBy), so the nemesis targets it from then on.
func (r *Replacements) Add(ctx context.Context, node int, add func(context.Context) (int, error)) (int, error) {
	id, err := add(ctx)
	if err != nil {
		return 0, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.replaced == nil {
		r.replaced = map[int]int{}
	}
	r.replaced[node] = id
	return id, nil
}

// ReplacedBy implements nemesis.Replacer.
func (r *Replacements) ReplacedBy(node int) (int, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	id, ok := r.replaced[node]
	return id, ok
}

// LeaderOrFollowers resolves the roles of a store with one leader:
// "leader" is who leader says leads now, "follower" every running node of
// candidates but it. Other roles are refused, naming the store, before
// the leader is asked.
func (r *Replacements) LeaderOrFollowers(role string, leader func() (int, error), candidates func() []int, up func(int) bool) ([]int, error) {
	if role != nemesis.RoleLeader && role != nemesis.RoleFollower {
		return nil, fmt.Errorf("%w: the %s store has no role %q (known: leader, follower)", nemesis.ErrUnsupported, r.Store, role)
	}
	lead, err := leader()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", nemesis.ErrNoTarget, err)
	}
	if role == nemesis.RoleLeader {
		return []int{lead}, nil
	}
	var out []int
	for _, id := range candidates() {
		if id != lead && up(id) {
			out = append(out, id)
		}
	}
	return out, nil
}
