package chain

import (
	"encoding/json"
	"fmt"
	"slices"
)

// LiveNode is what the master knows of a registered node: its address; per
// chain, the epoch in which it reported itself caught up as a joiner, and
// the latest epoch it adopted while named deposed (Config.Deposed); and the
// peers it suspects on the data path now.
type LiveNode struct {
	Addr     string         `json:"addr"`
	Synced   map[int]uint64 `json:"synced,omitempty"`
	Stepped  map[int]uint64 `json:"stepped,omitempty"`
	Suspects []uint64       `json:"suspects,omitempty"`
}

func (n LiveNode) encode() []byte {
	b, err := json.Marshal(n)
	if err != nil {
		panic(fmt.Sprintf("chain: encoding live node: %v", err))
	}
	return b
}

// Reconcile is ReconcileExcluding with nobody excluded: the master's
// decision when no node suspects another.
func Reconcile(cur Config, preferred []uint64, live map[uint64]LiveNode) (Config, bool) {
	return ReconcileExcluding(cur, preferred, live, nil)
}

// ReconcileExcluding is the master's decision for one chain, a pure
// function so the Core tests' in-memory coordinator and the ZooKeeper
// master share it. out names live nodes the master has taken out of the
// chains (suspected on the data path, or held down after such a removal:
// see Cover and the master's detector): they are treated as gone, except
// that one may still be the joiner, copying state in the background, and
// is never promoted.
//
//   - The first configuration (epoch 1) waits until every preferred node is
//     live, and lists them in the preferred order. Formed from whoever
//     registered first, it would make the late nodes join as tails, one by
//     one: a node slow to start would become the tail of every chain and
//     serve every read, and the rotation that spreads heads and tails over
//     the nodes would be lost before the first request.
//   - Members whose node is gone (no ephemeral znode, or registered again at
//     another address) or out are spliced out, keeping order: a removed head
//     makes its successor head, a removed tail its predecessor tail, a
//     removed middle joins its neighbours. The last member is never removed:
//     whoever holds the chain's only copy must come back; and when every
//     live member is out, the first of them stays.
//   - A tail that has not reported catching up in the current epoch
//     (Ready.Synced) keeps at least one predecessor: a joiner promoted
//     while the old tail's latest writes were still on their way, then
//     left alone when the old tail, now its only predecessor, was spliced
//     out, lost them (found by the simulator: sim, seed 427).
//   - A tail removed while its session lives is listed in Deposed until it
//     reports adopting the epoch that removed it (or its session ends): the
//     new tail neither commits nor serves until then (see Config).
//   - A live preferred node outside the chain becomes the joiner behind the
//     tail (one not out first); once it reports itself synced in the
//     current epoch, is not out, nothing else changes and no member is
//     out, it is appended as the new tail. A member kept while out (the
//     last one standing) must not be promoted past: it would be spliced
//     out in the next round, before the new tail has caught up in the new
//     epoch, and with it the writes it committed alone that the joiner had
//     not received yet (found by the simulator: sim, seed 35).
//   - A whole chain (every preferred node a member, no joiner) that is not
//     in its preferred order has one node moved to the tail (outOfPlace),
//     one move at a time. A node back from a failure always joins as the
//     tail, so without this the rotation would drift under faults until
//     one node was the tail of every chain and served every read. The
//     paper has no such step; it costs a state transfer per move, and the
//     chain runs one replica short while the moved node catches up. (The
//     node moved is never the tail, so a move deposes nobody.)
//
// It returns the next configuration and whether it differs from cur; a
// changed configuration always has the next epoch.
func ReconcileExcluding(cur Config, preferred []uint64, live map[uint64]LiveNode, out map[uint64]bool) (Config, bool) {
	return reconcile(cur, preferred, live, out, false)
}

// reconcile is ReconcileExcluding for a placement whose members may all
// answer reads (readAny, Placement.ReadAny): then every member removed
// while live is deposed, not only the tail, since each may answer a read
// at its old epoch.
func reconcile(cur Config, preferred []uint64, live map[uint64]LiveNode, out map[uint64]bool, readAny bool) (Config, bool) {
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
		if isLive(m) && !out[m.ID] {
			next.Members = append(next.Members, m)
		}
	}
	if len(next.Members) == 0 {
		// Every live member is out: the first stays, so the chain keeps a
		// holder of every committed write that can serve.
		for _, m := range cur.Members {
			if isLive(m) {
				next.Members = []Member{m}
				break
			}
		}
	}
	if t := cur.Tail(); len(cur.Members) > 1 && isLive(t) && live[t.ID].Synced[cur.Chain] < cur.Epoch &&
		len(next.Members) > 0 && next.Members[0].ID == t.ID {
		// The tail has not caught up with its predecessors in this epoch
		// (it may have been promoted from joiner with writes the old tail
		// committed still on their way) and would lose every one of
		// them: the configuration waits for it to catch up, or for a
		// predecessor to come back.
		return cur, false
	}
	next.Deposed = stillDeposed(cur, live)
	if len(next.Members) == 0 {
		// Every member is gone: nobody else holds the chain's state, so the
		// configuration waits for one of them to come back.
		next.Members = slices.Clone(cur.Members)
		if cur.Joining != nil && isLive(*cur.Joining) {
			next.Joining = cur.Joining
		}
		if sameConfig(cur, next) {
			return cur, false
		}
		next.Epoch = cur.Epoch + 1
		return next, true
	}
	spliced := len(next.Members) != len(cur.Members)
	keptOut := slices.ContainsFunc(next.Members, func(m Member) bool { return out[m.ID] })
	appended := false
	if j := cur.Joining; j != nil && isLive(*j) {
		if !spliced && !keptOut && !out[j.ID] && live[j.ID].Synced[cur.Chain] == cur.Epoch {
			next.Members = append(next.Members, *j)
			appended = true
		} else {
			next.Joining = j
		}
	}
	// A move waits until the tail has caught up in the current epoch, so
	// not in the step that appends a joiner: the joiner, a few writes
	// behind its tail, would get as predecessor a node whose Sent list the
	// old tail's commits had trimmed, and a whole state copy once more
	// (seen at 300 MB: 100 MB sent twice to the same joiner).
	tailSynced := live[next.Members[len(next.Members)-1].ID].Synced[cur.Chain] == cur.Epoch
	if !spliced && !appended && tailSynced && next.Joining == nil && len(next.Members) == len(preferred) {
		if id, ok := outOfPlace(next.Members, preferred); ok {
			// The chain is whole but not in its preferred order: the node
			// that should come next is spliced out (a planned failure; it
			// is live) and rejoins below as the joiner behind the tail.
			i := next.index(id)
			next.Members = slices.Delete(slices.Clone(next.Members), i, i+1)
		}
	}
	if next.Joining == nil && len(next.Members) < len(preferred) {
	pick:
		for _, wantOut := range []bool{false, true} {
			for _, id := range preferred {
				n, ok := live[id]
				if !ok || next.index(id) >= 0 || out[id] != wantOut {
					continue
				}
				next.Joining = &Member{ID: id, Addr: n.Addr}
				break pick
			}
		}
	}
	for i, m := range cur.Members {
		answered := readAny || i == len(cur.Members)-1
		if answered && isLive(m) && next.index(m.ID) < 0 && !cur.deposed(m.ID) {
			next.Deposed = append(next.Deposed, Deposed{ID: m.ID, Epoch: cur.Epoch + 1})
		}
	}
	if sameConfig(cur, next) {
		return cur, false
	}
	next.Epoch = cur.Epoch + 1
	return next, true
}

// stillDeposed is cur's Deposed entries whose node still has a session and
// has not reported adopting the entry's epoch.
func stillDeposed(cur Config, live map[uint64]LiveNode) []Deposed {
	var keep []Deposed
	for _, d := range cur.Deposed {
		if n, ok := live[d.ID]; ok && n.Stepped[cur.Chain] < d.Epoch {
			keep = append(keep, d)
		}
	}
	return keep
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
	if !slices.Equal(a.Members, b.Members) || !slices.Equal(a.Deposed, b.Deposed) {
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
