package chain

import (
	"encoding/json"
	"fmt"
	"slices"
)

// LiveNode is what the master knows of a registered node: its address and,
// per chain, the epoch in which it reported itself caught up as a joiner.
type LiveNode struct {
	Addr   string         `json:"addr"`
	Synced map[int]uint64 `json:"synced,omitempty"`
}

func (n LiveNode) encode() []byte {
	b, err := json.Marshal(n)
	if err != nil {
		panic(fmt.Sprintf("chain: encoding live node: %v", err))
	}
	return b
}

// Reconcile is the master's decision for one chain, a pure function so the
// Core tests' in-memory coordinator and the ZooKeeper master share it.
//
//   - The first configuration (epoch 1) waits until every preferred node is
//     live, and lists them in the preferred order. Formed from whoever
//     registered first, it would make the late nodes join as tails, one by
//     one: a node slow to start would become the tail of every chain and
//     serve every read, and the rotation that spreads heads and tails over
//     the nodes would be lost before the first request.
//   - Members whose node is gone (no ephemeral znode, or registered again at
//     another address) are spliced out, keeping order: a dead head makes its
//     successor head, a dead tail its predecessor tail, a dead middle joins
//     its neighbours. The last member is never removed: whoever holds the
//     chain's only copy must come back.
//   - A live preferred node outside the chain becomes the joiner behind the
//     tail; once it reports itself synced in the current epoch, and nothing
//     else changes, it is appended as the new tail.
//   - A whole chain (every preferred node a member, no joiner) that is not
//     in its preferred order has one node moved to the tail (outOfPlace),
//     one move at a time. A node back from a failure always joins as the
//     tail, so without this the rotation would drift under faults until
//     one node was the tail of every chain and served every read. The
//     paper has no such step; it costs a state transfer per move, and the
//     chain runs one replica short while the moved node catches up.
//
// It returns the next configuration and whether it differs from cur.
func Reconcile(cur Config, preferred []uint64, live map[uint64]LiveNode) (Config, bool) {
	isLive := func(m Member) bool {
		n, ok := live[m.ID]
		return ok && n.Addr == m.Addr
	}
	next := Config{Chain: cur.Chain, Epoch: cur.Epoch}
	if cur.Epoch == 0 {
		for _, id := range preferred {
			n, ok := live[id]
			if !ok {
				return cur, false
			}
			next.Members = append(next.Members, Member{ID: id, Addr: n.Addr})
		}
		if len(next.Members) == 0 {
			return cur, false
		}
		next.Epoch = 1
		return next, true
	}
	for _, m := range cur.Members {
		if isLive(m) {
			next.Members = append(next.Members, m)
		}
	}
	if len(next.Members) == 0 {
		// Every member is gone: nobody else holds the chain's state, so the
		// configuration waits for one of them to come back.
		next.Members = slices.Clone(cur.Members)
		if cur.Joining != nil && isLive(*cur.Joining) {
			next.Joining = cur.Joining
		}
		return next, !sameConfig(cur, next)
	}
	spliced := len(next.Members) != len(cur.Members)
	if j := cur.Joining; j != nil && isLive(*j) {
		if !spliced && live[j.ID].Synced[cur.Chain] == cur.Epoch {
			next.Members = append(next.Members, *j)
		} else {
			next.Joining = j
		}
	}
	if !spliced && next.Joining == nil && len(next.Members) == len(preferred) {
		if id, ok := outOfPlace(next.Members, preferred); ok {
			// The chain is whole but not in its preferred order: the node
			// that should come next is spliced out (a planned failure; it
			// is live) and rejoins below as the joiner behind the tail.
			i := next.index(id)
			next.Members = slices.Delete(slices.Clone(next.Members), i, i+1)
		}
	}
	if next.Joining == nil && len(next.Members) < len(preferred) {
		for _, id := range preferred {
			n, ok := live[id]
			if !ok || next.index(id) >= 0 {
				continue
			}
			next.Joining = &Member{ID: id, Addr: n.Addr}
			break
		}
	}
	if sameConfig(cur, next) {
		return cur, false
	}
	next.Epoch = cur.Epoch + 1
	return next, true
}

// outOfPlace picks the member to move when a whole chain is not in its
// preferred order. Nodes can only leave a chain or join it at the tail, so
// the members kept in place are the longest prefix p1..pk of the preferred
// order that appears in the chain in that order; p(k+1) is moved: spliced
// out, it comes back as the tail, behind p1..pk, and the kept prefix grows.
// The order is back after at most len(preferred)-1 moves, each a state
// transfer to the moved node.
func outOfPlace(members []Member, preferred []uint64) (uint64, bool) {
	k := 0
	for _, m := range members {
		if k < len(preferred) && m.ID == preferred[k] {
			k++
		}
	}
	if k == len(preferred) {
		return 0, false
	}
	return preferred[k], true
}

func sameConfig(a, b Config) bool {
	if !slices.Equal(a.Members, b.Members) {
		return false
	}
	switch {
	case a.Joining == nil && b.Joining == nil:
		return true
	case a.Joining == nil || b.Joining == nil:
		return false
	default:
		return *a.Joining == *b.Joining
	}
}
