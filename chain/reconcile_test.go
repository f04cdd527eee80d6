package chain

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestReconcileFirstConfigWaitsForEveryPreferredNode(t *testing.T) {
	p := Placement{Chains: 3, Replicas: 3, Nodes: 3}
	live := map[uint64]LiveNode{3: {Addr: "n3"}, 1: {Addr: "n1"}}
	for i := 0; i < p.Chains; i++ {
		cur := Config{Chain: i}
		next, changed := Reconcile(cur, p.Members(i), live)
		require.False(t, changed, "chain %d formed with node 2 not registered yet", i)
		require.Equal(t, cur, next)
	}

	live[2] = LiveNode{Addr: "n2"}
	var tails []uint64
	for i := 0; i < p.Chains; i++ {
		next, changed := Reconcile(Config{Chain: i}, p.Members(i), live)
		require.True(t, changed)
		require.Equal(t, uint64(1), next.Epoch)
		require.Nil(t, next.Joining)
		var ids []uint64
		for _, m := range next.Members {
			ids = append(ids, m.ID)
		}
		require.Equal(t, p.Members(i), ids, "chain %d in the preferred, rotated order", i)
		tails = append(tails, next.Tail().ID)
	}
	require.ElementsMatch(t, []uint64{1, 2, 3}, tails, "every node is the tail of one chain")
}

func TestReconcileLateNodeJoinsAsTailOnlyAfterTheFirstConfig(t *testing.T) {
	p := Placement{Chains: 1, Replicas: 3, Nodes: 3}
	live := map[uint64]LiveNode{1: {Addr: "n1"}, 2: {Addr: "n2"}, 3: {Addr: "n3"}}
	cur, _ := Reconcile(Config{Chain: 0}, p.Members(0), live)
	delete(live, 1) // the head dies: its successor becomes head
	cur, changed := Reconcile(cur, p.Members(0), live)
	require.True(t, changed)
	require.Equal(t, uint64(2), cur.Head().ID)
	live[1] = LiveNode{Addr: "n1"} // back: it joins behind the tail
	cur, changed = Reconcile(cur, p.Members(0), live)
	require.True(t, changed)
	require.NotNil(t, cur.Joining)
	require.Equal(t, uint64(1), cur.Joining.ID)
	require.Len(t, cur.Members, 2)
}

// A whole chain out of its preferred order gets back to it by moves to the
// tail, one at a time, each through the joiner path (the moved node syncs
// first), and then stays put.
func TestReconcileRestoresPreferredOrder(t *testing.T) {
	preferred := []uint64{1, 2, 3}
	for _, start := range [][]uint64{{2, 1, 3}, {3, 2, 1}, {1, 3, 2}, {2, 3, 1}, {3, 1, 2}} {
		live := map[uint64]LiveNode{}
		cur := Config{Chain: 0, Epoch: 7}
		for _, id := range start {
			addr := "n" + string(rune('0'+id))
			live[id] = LiveNode{Addr: addr, Synced: map[int]uint64{}}
			cur.Members = append(cur.Members, Member{ID: id, Addr: addr})
		}
		live[cur.Tail().ID].Synced[0] = cur.Epoch
		moves := 0
		for step := 0; step < 20; step++ {
			next, changed := Reconcile(cur, preferred, live)
			if !changed {
				break
			}
			require.Greater(t, next.Epoch, cur.Epoch)
			require.GreaterOrEqual(t, len(next.Members), 2, "from %v: one replica short at most", start)
			if j := next.Joining; j != nil {
				if cur.Joining == nil {
					moves++
					require.Len(t, next.Members, 2, "the moved node leaves the chain as it becomes the joiner")
				}
				// The joiner syncs in this epoch; the next round appends it.
				live[j.ID].Synced[0] = next.Epoch
			}
			if j := cur.Joining; j != nil && next.index(j.ID) >= 0 {
				require.Nil(t, next.Joining, "from %v: no move in the step that appends the joiner", start)
			}
			// The tail catches up in each epoch; a move waits for it.
			live[next.Tail().ID].Synced[0] = next.Epoch
			cur = next
		}
		var ids []uint64
		for _, m := range cur.Members {
			ids = append(ids, m.ID)
		}
		require.Equal(t, preferred, ids, "from %v", start)
		require.Nil(t, cur.Joining)
		require.LessOrEqual(t, moves, 2, "from %v", start)
		_, changed := Reconcile(cur, preferred, live)
		require.False(t, changed, "from %v: in order, nothing moves", start)
	}
}

// Nothing moves while the chain is short of a member or has a joiner: the
// order is restored only from a whole chain.
func TestReconcileDoesNotReorderADegradedChain(t *testing.T) {
	live := map[uint64]LiveNode{2: {Addr: "n2"}, 1: {Addr: "n1"}}
	cur := Config{Chain: 0, Epoch: 3, Members: []Member{{ID: 2, Addr: "n2"}, {ID: 1, Addr: "n1"}}}
	next, changed := Reconcile(cur, []uint64{1, 2, 3}, live)
	require.False(t, changed, "node 3 is down: nothing to do, %v", next)
}

// Found by the simulator (sim, chain seed 35 before the fix): a chain of
// one whose member is held out must not promote its joiner past it. The
// member would be spliced out in the next round, before the new tail had
// what the member committed alone.
func TestReconcileNoJoinerPromotedPastAnOutMember(t *testing.T) {
	cur := Config{Chain: 1, Epoch: 3, Members: []Member{{3, "n3"}}, Joining: &Member{2, "n2"}}
	live := map[uint64]LiveNode{2: {Addr: "n2", Synced: map[int]uint64{1: 3}}, 3: {Addr: "n3"}, 4: {Addr: "n4"}}
	next, changed := ReconcileExcluding(cur, []uint64{2, 3, 4}, live, map[uint64]bool{3: true})
	require.False(t, changed, "got %+v", next)

	next, changed = ReconcileExcluding(cur, []uint64{2, 3, 4}, live, nil)
	require.True(t, changed)
	require.Equal(t, []Member{{3, "n3"}, {2, "n2"}}, next.Members, "promoted once the member is back in")
}

// Found by the simulator (sim, chain seed 427 before the fix): a tail that
// has not reported catching up in the current epoch keeps a predecessor,
// even one taken out or gone: alone it would serve without the writes the
// old tail committed that had not reached it.
func TestReconcileUnsyncedTailKeepsAPredecessor(t *testing.T) {
	cur := Config{Chain: 0, Epoch: 3, Members: []Member{{3, "n3"}, {1, "n1"}}, Joining: &Member{2, "n2"}}
	live := map[uint64]LiveNode{1: {Addr: "n1", Synced: map[int]uint64{0: 2}}, 2: {Addr: "n2"}, 3: {Addr: "n3"}}
	out := map[uint64]bool{3: true}
	next, changed := ReconcileExcluding(cur, []uint64{1, 2, 3}, live, out)
	require.False(t, changed, "n3 spliced out before n1 caught up: %+v", next)
	gone := map[uint64]LiveNode{1: live[1], 2: live[2]}
	_, changed = ReconcileExcluding(cur, []uint64{1, 2, 3}, gone, nil)
	require.False(t, changed, "a dead predecessor is waited for too")

	live[1] = LiveNode{Addr: "n1", Synced: map[int]uint64{0: 3}}
	next, changed = ReconcileExcluding(cur, []uint64{1, 2, 3}, live, out)
	require.True(t, changed)
	require.Equal(t, []Member{{1, "n1"}}, next.Members, "caught up: the out predecessor goes")
}
