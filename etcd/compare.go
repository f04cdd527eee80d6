package etcd

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// comparePoll is the pause between two rounds while members catch up.
const comparePoll = 200 * time.Millisecond

// CompareReplicas implements harness.ReplicaComparer with etcd's own
// end-of-test check (its robustness tests do the same): the leader's
// current revision R, then every member's HashKV at R. A member that has
// not applied R yet refuses ("future revision") and is waited for; members
// that all answer with different hashes of the same revision diverge.
// There is no compaction in a run, so R stays hashable.
func (c *Cluster) CompareReplicas(ctx context.Context) (string, error) {
	last := "no answer yet"
	for {
		detail, agree, err := c.compareOnce(ctx)
		if err == nil && agree {
			return detail, nil
		}
		if err != nil && strings.Contains(err.Error(), "diverge") {
			return "", err
		}
		if err != nil {
			last = err.Error()
		} else {
			last = detail
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("replicas did not converge: %s", last)
		case <-time.After(comparePoll):
		}
	}
}

func (c *Cluster) compareOnce(ctx context.Context) (string, bool, error) {
	lead, err := c.Leader(ctx)
	if err != nil {
		return "", false, err
	}
	st, err := c.status(ctx, lead)
	if err != nil {
		return "", false, fmt.Errorf("leader n%d status: %w", lead, err)
	}
	rev := st.Header.Revision
	members := c.Members()
	hashes := map[int]uint32{}
	var parts []string
	for _, id := range members {
		obs := c.observer(id)
		if obs == nil {
			return "", false, fmt.Errorf("no observer of n%d", id)
		}
		hctx, cancel := context.WithTimeout(ctx, statusTimeout)
		h, err := obs.HashKV(hctx, c.pc.ClientListen(id), rev)
		cancel()
		if err != nil {
			return "", false, fmt.Errorf("n%d HashKV at revision %d: %w", id, rev, err)
		}
		hashes[id] = h.Hash
		parts = append(parts, fmt.Sprintf("n%d:%08x", id, h.Hash))
	}
	detail := fmt.Sprintf("members %v, HashKV at revision %d: %s", members, rev, strings.Join(parts, " "))
	for _, id := range members[1:] {
		if hashes[id] != hashes[members[0]] {
			return "", false, fmt.Errorf("replicas diverge: %s", detail)
		}
	}
	return detail, true, nil
}
