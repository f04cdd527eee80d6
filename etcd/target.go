package etcd

import (
	"context"
	"fmt"

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
	proccluster.Replacements
	c *Cluster
}

var (
	_ nemesis.Target   = (*Target)(nil)
	_ nemesis.Replacer = (*Target)(nil)
)

// Nodes implements nemesis.Target: every node started, less those removed.
func (t *Target) Nodes() []int { return t.Replacements.Nodes() }

// Resolve implements nemesis.Target, waiting out an election
// (proccluster.ResolveRetry).
func (t *Target) Resolve(ctx context.Context, role string) ([]int, error) {
	return proccluster.ResolveRetry(ctx, func(ctx context.Context) ([]int, error) {
		return t.LeaderOrFollowers(role, func() (int, error) { return t.c.Leader(ctx) }, t.Nodes, t.c.pc.Up)
	})
}

// RemoveMember implements nemesis.Target.
func (t *Target) RemoveMember(ctx context.Context, node int) error {
	return t.Remove(ctx, node, t.c.RemoveMember)
}

// AddMember implements nemesis.Target: a fresh member in place of node.
func (t *Target) AddMember(ctx context.Context, node int) error {
	id, err := t.Add(ctx, node, t.c.AddMember)
	if err == nil {
		fmt.Fprintf(t.c.env.Log, "etcd: node %d added in place of removed node %d\n", id, node)
	}
	return err
}
