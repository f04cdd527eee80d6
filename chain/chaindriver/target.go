package chaindriver

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/chainraft/chainraft/harness/proccluster"
	"github.com/chainraft/chainraft/nemesis"
)

// Target is what the nemesis acts on in a chain cluster: kill, pause,
// restart and the network from proccluster.Target, and the chain's own
// roles and membership.
//
// Roles: "head", "middle", "tail" — of chain K with ":K" ("tail:1"), else
// of every chain (the nemesis picks one with the fault's seed) — and
// "master", all read from ZooKeeper when the fault is injected.
//
// A member fault is a planned departure: the node is stopped cleanly
// (SIGTERM), so it closes its ZooKeeper session and the master splices it
// out at once, without waiting for a session timeout as after a kill; the
// heal starts it again on its data directory and it rejoins as a tail.
// (The chain store has no other membership operation the harness can
// call, and it brings back the same node: no nemesis.Replacer.)
type Target struct {
	proccluster.Target
	c *Cluster
}

var _ nemesis.Target = (*Target)(nil)

// memberWait bounds how long a member fault waits for the configuration to
// show the node gone (or back).
const memberWait = 20 * time.Second

// catchUpWait bounds the wait for every chain to be whole again after a
// node rejoined: its copies of each chain's state take longer the more
// data the store holds (the nemesis's bound for one heal, which grows with
// the preloaded data, is usually the tighter one).
const catchUpWait = 5 * time.Minute

// Resolve implements nemesis.Target; a role nobody holds right now (a
// chain still rejoining has no middle) is asked again for a while.
func (t *Target) Resolve(ctx context.Context, role string) ([]int, error) {
	return proccluster.ResolveRetry(ctx, func(ctx context.Context) ([]int, error) {
		ids, err := t.resolve(role)
		if err == nil && len(ids) == 0 {
			err = fmt.Errorf("%w: no chain has a %s now", nemesis.ErrNoTarget, role)
		}
		return ids, err
	})
}

func (t *Target) resolve(role string) ([]int, error) {
	name, chainSpec, hasChain := strings.Cut(role, ":")
	n := t.c.Chains()
	chains := make([]int, 0, n)
	if hasChain {
		k, err := strconv.Atoi(chainSpec)
		if err != nil || k < 0 || k >= n {
			return nil, fmt.Errorf("%w: role %q: no chain %q (chains 0..%d)", nemesis.ErrNoTarget, role, chainSpec, n-1)
		}
		chains = append(chains, k)
	} else {
		for k := 0; k < n; k++ {
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

// inChains reports whether node is a member (or the joiner) of any chain's
// configuration.
func (t *Target) inChains(node uint64) bool {
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
func (t *Target) RemoveMember(ctx context.Context, node int) error {
	if !t.c.pc.Has(node) {
		return fmt.Errorf("%w: no node %d", nemesis.ErrNoTarget, node)
	}
	began := time.Now()
	// A second is plenty for the node to close its ZooKeeper session, the
	// part that matters; a node slower than that to exit is SIGKILLed (its
	// session then expires instead, which waitMembership waits for).
	if err := t.c.pc.Stop(node, time.Second); err != nil {
		return fmt.Errorf("chain: stop node %d: %w", node, err)
	}
	stopped := time.Since(began)
	err := t.waitMembership(ctx, uint64(node), false)
	fmt.Fprintf(t.c.env.Log, "chain: node %d stopped in %v, out of every chain %v later\n",
		node, stopped.Round(time.Millisecond), (time.Since(began) - stopped).Round(time.Millisecond))
	return err
}

// AddMember starts node again and waits until every chain is whole again
// (the node rejoined as a tail and caught up, no joiner left), so that the
// heal's time is the rejoin's.
// The log line it writes then gives the snapshot bytes the node received
// since its restart (every chain's state copy), the cost side of the
// README's catch-up table.
func (t *Target) AddMember(ctx context.Context, node int) error {
	began := time.Now()
	if err := t.Restart(ctx, node); err != nil {
		return err
	}
	if err := t.waitMembership(ctx, uint64(node), true); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, catchUpWait)
	defer cancel()
	if err := t.c.WaitServing(wctx); err != nil {
		return err
	}
	took := time.Since(began).Round(time.Millisecond)
	dctx, cancel := context.WithTimeout(ctx, messageReadTimeout)
	defer cancel()
	d, err := t.c.conns.Counts(dctx, t.c.pc.ClientListen(node))
	if err != nil {
		fmt.Fprintf(t.c.env.Log, "chain: node %d back in every chain %v after its restart (snapshot bytes unknown: %v)\n", node, took, err)
		return nil
	}
	fmt.Fprintf(t.c.env.Log, "chain: node %d back in every chain %v after its restart; snapshots received: %d, %d bytes (%.1f MiB)\n",
		node, took, d.GetSnapshotsReceived(), d.GetSnapshotBytesReceived(), float64(d.GetSnapshotBytesReceived())/(1<<20))
	return nil
}

func (t *Target) waitMembership(ctx context.Context, node uint64, want bool) error {
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
