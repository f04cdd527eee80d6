package zkserver

import (
	"context"
	"fmt"

	"github.com/chainraft/chainraft/harness/proccluster"
	"github.com/chainraft/chainraft/nemesis"
)

// Target adapts an Ensemble for the nemesis (nemesis.ZKTarget), so that
// every store driver whose cluster runs on a ZooKeeper the harness started
// (the chain store's configuration center, the zookeeper store itself)
// faults it the same way. Server ids are ZooKeeper myids: index+1.
type Target struct{ E *Ensemble }

var _ nemesis.ZKTarget = (*Target)(nil)

// Servers implements nemesis.ZKTarget.
func (z *Target) Servers() []int {
	out := make([]int, z.E.Size())
	for i := range out {
		out[i] = i + 1
	}
	return out
}

// Resolve knows "zk-leader" (the leader, or the standalone server) and
// "zk-follower". A role nobody holds (an election under way after a kill)
// is asked again for a while (proccluster.ResolveRetry), so that a fault
// right after another waits for the new leader instead of being skipped.
func (z *Target) Resolve(ctx context.Context, role string) ([]int, error) {
	return proccluster.ResolveRetry(ctx, func(ctx context.Context) ([]int, error) { return z.resolve(ctx, role) })
}

func (z *Target) resolve(_ context.Context, role string) ([]int, error) {
	switch role {
	case nemesis.RoleZKLeader:
		i, err := z.E.Leader()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", nemesis.ErrNoTarget, err)
		}
		return []int{i + 1}, nil
	case "zk-follower":
		var out []int
		for i := 0; i < z.E.Size(); i++ {
			if m, err := z.E.Mode(i); err == nil && m == "follower" {
				out = append(out, i+1)
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: no ZooKeeper role %q", nemesis.ErrUnsupported, role)
}

// Kill implements nemesis.ZKTarget: SIGKILL, its data directory kept.
func (z *Target) Kill(_ context.Context, server int) error { return z.E.Kill(server - 1) }

// Restart starts a killed server and waits until it serves; a running one
// is left alone, so overlapping faults on one server heal in any order.
func (z *Target) Restart(ctx context.Context, server int) error {
	if err := z.E.check(server - 1); err != nil {
		return err
	}
	if p := z.E.Process(server - 1); p != nil && p.Running() {
		return nil
	}
	return z.E.Restart(ctx, server-1)
}
