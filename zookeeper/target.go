package zookeeper

import (
	"context"
	"fmt"

	"github.com/chainraft/chainraft/harness/proccluster"
	"github.com/chainraft/chainraft/nemesis"
)

// Target is what the nemesis acts on: the ensemble's servers are the
// store's nodes (node id = myid). Kill is SIGKILL and its heal a restart
// on the same ports and data directory, waiting until the server serves
// again; pause is SIGSTOP / SIGCONT; partitions cut the server-to-server
// links (quorum and election, through the fronts in links.go) and delay
// slows them and the client links. Roles "leader" and "follower" are read
// from each server's `srvr` when the fault is injected.
type Target struct{ c *Cluster }

var _ nemesis.Target = (*Target)(nil)

// Nodes implements nemesis.Target.
func (t *Target) Nodes() []int {
	out := make([]int, t.c.ens.Size())
	for i := range out {
		out[i] = i + 1
	}
	return out
}

// Resolve implements nemesis.Target, waiting out an election.
func (t *Target) Resolve(ctx context.Context, role string) ([]int, error) {
	return proccluster.ResolveRetry(ctx, func(ctx context.Context) ([]int, error) { return t.resolve(role) })
}

func (t *Target) resolve(role string) ([]int, error) {
	switch role {
	case nemesis.RoleLeader:
		id, err := t.c.Leader()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", nemesis.ErrNoTarget, err)
		}
		return []int{id}, nil
	case nemesis.RoleFollower:
		var out []int
		for id := 1; id <= t.c.ens.Size(); id++ {
			if !t.c.up(id) {
				continue
			}
			if m, err := t.c.ens.Mode(id - 1); err == nil && m == "follower" {
				out = append(out, id)
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: the zookeeper store has no role %q (known: leader, follower)", nemesis.ErrUnsupported, role)
}

func (t *Target) check(node int) error {
	if node < 1 || node > t.c.ens.Size() {
		return fmt.Errorf("%w: no server %d", nemesis.ErrNoTarget, node)
	}
	return nil
}

// Kill implements nemesis.Target; a server already down is left alone.
func (t *Target) Kill(_ context.Context, node int) error {
	if err := t.check(node); err != nil {
		return err
	}
	t.c.setDown(node, true)
	if !t.c.ens.Process(node - 1).Running() {
		return nil
	}
	return t.c.ens.Kill(node - 1)
}

// Restart implements nemesis.Target: a running server is left alone.
func (t *Target) Restart(ctx context.Context, node int) error {
	if err := t.check(node); err != nil {
		return err
	}
	if t.c.ens.Process(node - 1).Running() {
		t.c.setDown(node, false)
		return nil
	}
	err := t.c.ens.Restart(ctx, node-1)
	if t.c.ens.Process(node - 1).Running() {
		t.c.setDown(node, false)
	}
	return err
}

// Pause implements nemesis.Target.
func (t *Target) Pause(_ context.Context, node int) error {
	if err := t.check(node); err != nil {
		return err
	}
	return t.c.ens.Process(node - 1).Pause()
}

// Resume implements nemesis.Target; one not paused is left alone.
func (t *Target) Resume(_ context.Context, node int) error {
	if err := t.check(node); err != nil {
		return err
	}
	p := t.c.ens.Process(node - 1)
	if !p.Paused() {
		return nil
	}
	return p.Resume()
}

// RemoveMember implements nemesis.Target: unsupported, the ensemble's
// membership is static.
func (t *Target) RemoveMember(context.Context, int) error {
	return fmt.Errorf("%w: the zookeeper store has no membership change", nemesis.ErrUnsupported)
}

// AddMember implements nemesis.Target: unsupported.
func (t *Target) AddMember(context.Context, int) error {
	return fmt.Errorf("%w: the zookeeper store has no membership change", nemesis.ErrUnsupported)
}

// Network implements nemesis.Target: the network the links were wired
// through, or nil.
func (t *Target) Network() *nemesis.Network { return t.c.net }

// ZK implements nemesis.Target: none apart from the store itself.
func (t *Target) ZK() nemesis.ZKTarget { return nil }
