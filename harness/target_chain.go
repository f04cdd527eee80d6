package harness

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/chainraft/chainraft/internal/zkserver"
	"github.com/chainraft/chainraft/nemesis"
)

// ChainTarget is what the nemesis acts on in a chain cluster. Roles: "head",
// "middle", "tail" — of chain K with ":K" ("tail:1"), else of any chain,
// one picked with the fault's seed — and "master", all read from ZooKeeper
// when the fault is injected.
//
// A member fault is a planned departure: the node is stopped cleanly
// (SIGTERM), so it closes its ZooKeeper session and the master splices it
// out at once, without waiting for a session timeout as after a kill; the
// heal starts it again on its data directory and it rejoins as a tail.
// (The chain store has no other membership operation the harness can call.)
type ChainTarget struct {
	c *ChainCluster
	// Net is the proxied network, when the cluster was wired through one.
	Net *nemesis.Network
}

// NewChainTarget adapts c for the nemesis.
func NewChainTarget(c *ChainCluster, net *nemesis.Network) *ChainTarget {
	return &ChainTarget{c: c, Net: net}
}

var _ nemesis.Target = (*ChainTarget)(nil)

// memberWait bounds how long a member fault waits for the configuration to
// show the node gone (or back).
const memberWait = 20 * time.Second

// Nodes implements nemesis.Target.
func (t *ChainTarget) Nodes() []int {
	var out []int
	for _, n := range t.c.Nodes() {
		out = append(out, int(n.ID))
	}
	return out
}

// Resolve implements nemesis.Target; a role nobody holds right now (a
// chain still rejoining has no middle) is asked again for a while.
func (t *ChainTarget) Resolve(ctx context.Context, role string) ([]int, error) {
	return resolveRetry(ctx, func(ctx context.Context) ([]int, error) {
		ids, err := t.resolve(ctx, role)
		if err == nil && len(ids) == 0 {
			err = fmt.Errorf("%w: no chain has a %s now", nemesis.ErrNoTarget, role)
		}
		return ids, err
	})
}

func (t *ChainTarget) resolve(_ context.Context, role string) ([]int, error) {
	name, chainSpec, hasChain := strings.Cut(role, ":")
	chains := make([]int, 0, t.c.Chains())
	if hasChain {
		k, err := strconv.Atoi(chainSpec)
		if err != nil || k < 0 || k >= t.c.Chains() {
			return nil, fmt.Errorf("%w: role %q: no chain %q (chains 0..%d)", nemesis.ErrNoTarget, role, chainSpec, t.c.Chains()-1)
		}
		chains = append(chains, k)
	} else {
		for k := 0; k < t.c.Chains(); k++ {
			chains = append(chains, k)
		}
	}
	var pick func(int) uint64
	switch name {
	case nemesis.RoleHead:
		pick = t.c.Head
	case nemesis.RoleTail:
		pick = t.c.Tail
	case nemesis.RoleMiddle:
		pick = t.c.Middle
	case nemesis.RoleMaster:
		id, err := t.c.Master()
		if err != nil {
			return nil, fmt.Errorf("%w: master: %v", nemesis.ErrNoTarget, err)
		}
		return []int{int(id)}, nil
	default:
		return nil, fmt.Errorf("%w: the chain store has no role %q (known: head, middle, tail[:chain], master)", nemesis.ErrUnsupported, role)
	}
	seen := map[int]bool{}
	var out []int
	for _, k := range chains {
		if id := pick(k); id != 0 && !seen[int(id)] {
			seen[int(id)] = true
			out = append(out, int(id))
		}
	}
	return out, nil
}

// Kill implements nemesis.Target.
func (t *ChainTarget) Kill(_ context.Context, node int) error { return t.c.Kill(uint64(node)) }

// Restart starts a stopped node again; a running one is left alone.
func (t *ChainTarget) Restart(_ context.Context, node int) error {
	if n := t.c.Node(uint64(node)); n != nil && n.Proc.Running() {
		return nil
	}
	return t.c.Restart(uint64(node))
}

// Pause implements nemesis.Target.
func (t *ChainTarget) Pause(_ context.Context, node int) error { return t.c.Pause(uint64(node)) }

// Resume continues a paused node; a running one is left alone.
func (t *ChainTarget) Resume(_ context.Context, node int) error {
	if n := t.c.Node(uint64(node)); n != nil && !n.Proc.Paused() {
		return nil
	}
	return t.c.Resume(uint64(node))
}

// inChains reports whether node is a member (or the joiner) of any chain's
// configuration.
func (t *ChainTarget) inChains(node uint64) bool {
	for k := 0; k < t.c.Chains(); k++ {
		cfg := t.c.Config(k)
		for _, m := range cfg.Members {
			if m.ID == node {
				return true
			}
		}
		if cfg.Joining != nil && cfg.Joining.ID == node {
			return true
		}
	}
	return false
}

// RemoveMember stops node cleanly and waits until the master has spliced it
// out of every chain.
func (t *ChainTarget) RemoveMember(ctx context.Context, node int) error {
	n := t.c.Node(uint64(node))
	if n == nil {
		return fmt.Errorf("%w: no node %d", nemesis.ErrNoTarget, node)
	}
	began := time.Now()
	// A second is plenty for the node to close its ZooKeeper session, the
	// part that matters; a node slower than that to exit is SIGKILLed (its
	// session then expires instead, which waitMembership waits for).
	if err := n.Proc.Stop(time.Second); err != nil {
		return fmt.Errorf("chain: stop node %d: %w", node, err)
	}
	stopped := time.Since(began)
	err := t.waitMembership(ctx, uint64(node), false)
	fmt.Fprintf(t.c.cfg.Log, "chain: node %d stopped in %v, out of every chain %v later\n", node, stopped.Round(time.Millisecond), (time.Since(began) - stopped).Round(time.Millisecond))
	return err
}

// AddMember starts node again and waits until every chain is whole again
// (the node rejoined as a tail and caught up, no joiner left), so that the
// heal's time is the rejoin's.
func (t *ChainTarget) AddMember(ctx context.Context, node int) error {
	if err := t.Restart(ctx, node); err != nil {
		return err
	}
	if err := t.waitMembership(ctx, uint64(node), true); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, memberWait)
	defer cancel()
	return t.c.WaitServing(wctx)
}

func (t *ChainTarget) waitMembership(ctx context.Context, node uint64, want bool) error {
	ctx, cancel := context.WithTimeout(ctx, memberWait)
	defer cancel()
	for t.inChains(node) != want {
		select {
		case <-ctx.Done():
			return fmt.Errorf("chain: node %d still %s the configuration after %v", node, map[bool]string{true: "out of", false: "in"}[want], memberWait)
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

// Network implements nemesis.Target.
func (t *ChainTarget) Network() *nemesis.Network { return t.Net }

// ZK implements nemesis.Target: the ensemble the harness started, or nil
// for an external one.
func (t *ChainTarget) ZK() nemesis.ZKTarget {
	if e := t.c.ZK(); e != nil {
		return &ZKTarget{E: e}
	}
	return nil
}

// ZKTarget adapts a zkserver.Ensemble: server ids are ZooKeeper myids,
// index+1.
type ZKTarget struct{ E *zkserver.Ensemble }

var _ nemesis.ZKTarget = (*ZKTarget)(nil)

// Servers implements nemesis.ZKTarget.
func (z *ZKTarget) Servers() []int {
	out := make([]int, z.E.Size())
	for i := range out {
		out[i] = i + 1
	}
	return out
}

// Resolve knows "zk-leader" (the leader, or the standalone server) and
// "zk-follower", asked again for a while during an election.
func (z *ZKTarget) Resolve(ctx context.Context, role string) ([]int, error) {
	return resolveRetry(ctx, func(ctx context.Context) ([]int, error) { return z.resolve(ctx, role) })
}

func (z *ZKTarget) resolve(_ context.Context, role string) ([]int, error) {
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

// Kill implements nemesis.ZKTarget.
func (z *ZKTarget) Kill(_ context.Context, server int) error { return z.E.Kill(server - 1) }

// Restart starts a killed server and waits until it serves; a running one
// is left alone.
func (z *ZKTarget) Restart(ctx context.Context, server int) error {
	if p := z.E.Process(server - 1); p != nil && p.Running() {
		return nil
	}
	return z.E.Restart(ctx, server-1)
}
