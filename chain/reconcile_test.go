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
