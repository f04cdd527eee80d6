package raftdriver

import (
	"context"
	"fmt"
	"time"

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
	proccluster.Replacements
	c *Cluster
}

var (
	_ nemesis.Target   = (*Target)(nil)
	_ nemesis.Replacer = (*Target)(nil)
)

// Nodes implements nemesis.Target: the members, every node started less
// those removed.
func (t *Target) Nodes() []int { return t.Replacements.Nodes() }

// Resolve implements nemesis.Target, waiting out an election (see
// proccluster.ResolveRetry).
func (t *Target) Resolve(ctx context.Context, role string) ([]int, error) {
	return proccluster.ResolveRetry(ctx, func(ctx context.Context) ([]int, error) {
		leader := func() (int, error) {
			lead, err := t.c.Leader(ctx)
			return int(lead), err
		}
		return t.LeaderOrFollowers(role, leader, t.candidates, t.c.pc.Up)
	})
}

// candidates are the nodes a follower fault may hit: the members, or with
// several groups group 0's members — a fault on a node outside group 0 is
// a fault on other groups' members, maybe their leaders.
func (t *Target) candidates() []int {
	if t.c.groups <= 1 {
		return t.Nodes()
	}
	var out []int
	for _, id := range t.c.groupMembers(0) {
		out = append(out, int(id))
	}
	return out
}

// RemoveMember implements nemesis.Target: node leaves by conf change and
// its process stops.
func (t *Target) RemoveMember(ctx context.Context, node int) error {
	return t.Remove(ctx, node, func(ctx context.Context, node int) error { return t.c.RemoveNode(ctx, uint64(node)) })
}

// AddMember implements nemesis.Target: a fresh node in place of node (see
// Target). It returns once the new node has applied what the leader had
// committed when it joined, so that the heal's time is the catch-up's
// (the snapshot install and the log after it), as a chain's rejoin is.
func (t *Target) AddMember(ctx context.Context, node int) error {
	began := time.Now()
	id, err := t.Add(ctx, node, func(ctx context.Context) (int, error) {
		id, err := t.c.AddNode(ctx)
		return int(id), err
	})
	if err != nil {
		return err
	}
	added := time.Since(began)
	if err := t.c.WaitCaughtUp(ctx, uint64(id)); err != nil {
		return err
	}
	caught := (time.Since(began) - added).Round(time.Millisecond)
	// The snapshot bytes the new node received are the catch-up's cost
	// side (the README's catch-up table): it started empty, so its counter
	// holds this catch-up's transfers and nothing else.
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := t.c.NodeStatus(sctx, uint64(id))
	if err != nil {
		fmt.Fprintf(t.c.env.Log, "raft: node %d added in place of removed node %d in %v, caught up %v later (snapshot bytes unknown: %v)\n",
			id, node, added.Round(time.Millisecond), caught, err)
		return nil
	}
	fmt.Fprintf(t.c.env.Log, "raft: node %d added in place of removed node %d in %v, caught up %v later; snapshots received: %d, %d bytes (%.1f MiB)\n",
		id, node, added.Round(time.Millisecond), caught, st.GetSnapshotsReceived(), st.GetSnapshotBytesReceived(), float64(st.GetSnapshotBytesReceived())/(1<<20))
	return nil
}
