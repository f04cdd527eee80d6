package raftdriver

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/chainraft/chainraft/harness"
)

// errDivergence: replicas at the same applied index hold different data.
var errDivergence = errors.New("replicas diverge")

// comparePoll is the pause between two rounds of status while the members
// catch up.
const comparePoll = 200 * time.Millisecond

// CompareReplicas implements harness.ReplicaComparer. It waits until every
// member (as the leader's membership says) has applied the same index, and
// then requires the same digest of the data from each. The digest comes
// with the applied index in one status reply, taken on the node's own
// goroutine, so equal indexes with unequal digests are a real divergence,
// never a race. With several groups each group's replicas are compared,
// in turn.
func (c *Cluster) CompareReplicas(ctx context.Context) (string, error) {
	var details []string
	for g := range c.groups {
		d, err := c.compareGroup(ctx, g)
		if err != nil {
			if c.groups > 1 {
				err = fmt.Errorf("group %d: %w", g, err)
			}
			return "", err
		}
		if c.groups > 1 {
			d = fmt.Sprintf("group %d: %s", g, d)
		}
		details = append(details, d)
	}
	return strings.Join(details, "; "), nil
}

func (c *Cluster) compareGroup(ctx context.Context, g int) (string, error) {
	last := "no status yet"
	for {
		detail, agree, err := c.compareOnce(ctx, g)
		if err == nil && agree {
			return detail, nil
		}
		if errors.Is(err, errDivergence) || errors.Is(err, harness.ErrNoDigest) {
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

// compareOnce reads every member's status once. agree is true when all are
// at one applied index with one digest; err is set when they are at one
// index with different digests (divergence), the nodes report no digest,
// or a member did not answer.
func (c *Cluster) compareOnce(ctx context.Context, g int) (detail string, agree bool, err error) {
	lead, err := c.GroupLeader(ctx, g)
	if err != nil {
		return "", false, err
	}
	sctx, cancel := context.WithTimeout(ctx, statusTimeout)
	st, err := c.conns.GroupStatus(sctx, lead, uint32(g))
	cancel()
	if err != nil {
		return "", false, fmt.Errorf("leader %d status: %w", lead, err)
	}
	var ids []uint64
	for _, m := range st.GetMembers() {
		ids = append(ids, m.GetId())
	}
	if len(ids) == 0 {
		return "", false, fmt.Errorf("leader %d reports no members", lead)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	applied := map[uint64]uint64{}
	digest := map[uint64]string{}
	var parts []string
	for _, id := range ids {
		sctx, cancel := context.WithTimeout(ctx, digestTimeout)
		s, err := c.conns.GroupDigest(sctx, id, uint32(g))
		cancel()
		if err != nil {
			return "", false, fmt.Errorf("member %d status: %w", id, err)
		}
		applied[id], digest[id] = s.GetApplied(), s.GetDigest()
		parts = append(parts, fmt.Sprintf("n%d@%d:%.12s", id, s.GetApplied(), s.GetDigest()))
	}
	detail = fmt.Sprintf("members %v: %s", ids, strings.Join(parts, " "))
	first := ids[0]
	for _, id := range ids[1:] {
		if applied[id] != applied[first] {
			return detail, false, nil // still catching up
		}
	}
	for _, id := range ids[1:] {
		if digest[id] != digest[first] {
			return detail, false, fmt.Errorf("%w at applied index %d: %s", errDivergence, applied[first], detail)
		}
	}
	if digest[first] == "" {
		return detail, false, fmt.Errorf("raft nodes: %w", harness.ErrNoDigest)
	}
	return detail, true, nil
}
