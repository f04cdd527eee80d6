package nemesis

import (
	"math/rand"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func rng(seed int64) *rand.Rand { return rand.New(rand.NewSource(seed)) }

// sees reports, for grudge g over nodes, the set each node receives from.
func sees(g Grudge, nodes []int) map[int][]int {
	out := map[int][]int{}
	for _, to := range nodes {
		drop := map[int]bool{}
		for _, f := range g.Drops[to] {
			drop[f] = true
		}
		for _, f := range nodes {
			if !drop[f] {
				out[to] = append(out[to], f)
			}
		}
	}
	return out
}

func TestPartitionHalves(t *testing.T) {
	g, err := PartitionGrudge(ShapeHalves, []int{5, 3, 1, 2, 4}, nil, rng(1))
	require.NoError(t, err)
	require.Equal(t, [][]int{{1, 2}, {3, 4, 5}}, g.Components)
	require.Equal(t, map[int][]int{1: {3, 4, 5}, 2: {3, 4, 5}, 3: {1, 2}, 4: {1, 2}, 5: {1, 2}}, g.Drops)
	require.Len(t, g.Cuts(), 12)
	require.Contains(t, g.Cuts(), Cut{From: "n3", To: "n1"})
	require.Contains(t, g.Cuts(), Cut{From: "n1", To: "n3"})
}

func TestPartitionIsolate(t *testing.T) {
	g, err := PartitionGrudge(ShapeIsolate, []int{1, 2, 3}, []int{2}, rng(1))
	require.NoError(t, err)
	require.Equal(t, [][]int{{2}, {1, 3}}, g.Components)
	require.Equal(t, map[int][]int{1: {2}, 3: {2}, 2: {1, 3}}, g.Drops)

	// No node named: one is drawn from the seed, the same one every time.
	a, err := PartitionGrudge(ShapeIsolate, []int{1, 2, 3, 4, 5}, nil, rng(7))
	require.NoError(t, err)
	b, err := PartitionGrudge(ShapeIsolate, []int{1, 2, 3, 4, 5}, nil, rng(7))
	require.NoError(t, err)
	require.Equal(t, a, b)
	require.Len(t, a.Components[0], 1)

	_, err = PartitionGrudge(ShapeIsolate, []int{1, 2}, []int{1, 2}, rng(1))
	require.ErrorIs(t, err, ErrBadShape)
}

func TestPartitionRandomHalvesSeeded(t *testing.T) {
	nodes := []int{1, 2, 3, 4, 5}
	a, err := PartitionGrudge(ShapeRandomHalves, nodes, nil, rng(42))
	require.NoError(t, err)
	b, err := PartitionGrudge(ShapeRandomHalves, nodes, nil, rng(42))
	require.NoError(t, err)
	require.Equal(t, a, b)
	require.Equal(t, []int{1, 2, 3, 4, 5}, nodes, "the caller's slice is not shuffled")
	require.Len(t, a.Components[0], 2)
	require.Len(t, a.Components[1], 3)
	distinct := map[string]bool{}
	for seed := int64(0); seed < 50; seed++ {
		g, err := PartitionGrudge(ShapeRandomHalves, nodes, nil, rng(seed))
		require.NoError(t, err)
		distinct[fmtInts(g.Components[0])] = true
	}
	require.Greater(t, len(distinct), 3, "random halves should vary with the seed")
}

func TestPartitionMajoritiesRingFive(t *testing.T) {
	nodes := []int{1, 2, 3, 4, 5}
	for seed := int64(0); seed < 20; seed++ {
		g, err := PartitionGrudge(ShapeMajoritiesRing, nodes, nil, rng(seed))
		require.NoError(t, err)
		views := sees(g, nodes)
		distinct := map[string]bool{}
		for _, n := range nodes {
			require.Len(t, views[n], 3, "node %d sees a majority of exactly 3", n)
			require.Contains(t, views[n], n)
			distinct[fmtInts(views[n])] = true
		}
		require.Len(t, distinct, 5, "no two nodes see the same majority")
		for to, froms := range g.Drops { // with five nodes the ring is symmetric
			for _, f := range froms {
				require.Contains(t, g.Drops[f], to)
			}
		}
	}
}

func TestPartitionMajoritiesRingThree(t *testing.T) {
	nodes := []int{1, 2, 3}
	g, err := PartitionGrudge(ShapeMajoritiesRing, nodes, nil, rng(3))
	require.NoError(t, err)
	views := sees(g, nodes)
	for _, n := range nodes {
		require.Len(t, views[n], 2)
		require.Len(t, g.Drops[n], 1)
	}
	require.Len(t, g.Cuts(), 3, "three one-way cuts")
}

func TestPartitionBridge(t *testing.T) {
	nodes := []int{1, 2, 3, 4, 5}
	g, err := PartitionGrudge(ShapeBridge, nodes, nil, rng(9))
	require.NoError(t, err)
	require.Len(t, g.Components, 2)
	a, b := g.Components[0], g.Components[1]
	var bridge []int
	for _, x := range a {
		for _, y := range b {
			if x == y {
				bridge = append(bridge, x)
			}
		}
	}
	require.Len(t, bridge, 1)
	br := bridge[0]
	require.Empty(t, g.Drops[br], "the bridge hears everyone")
	for to, froms := range g.Drops {
		require.NotContains(t, froms, br, "node %d drops the bridge", to)
	}
	require.Len(t, g.Cuts(), 2*2*2)

	_, err = PartitionGrudge(ShapeBridge, []int{1, 2}, nil, rng(1))
	require.ErrorIs(t, err, ErrBadShape)
	_, err = PartitionGrudge("moat", nodes, nil, rng(1))
	require.ErrorIs(t, err, ErrBadShape)
}

func fmtInts(xs []int) string {
	ys := append([]int(nil), xs...)
	sort.Ints(ys)
	s := ""
	for _, y := range ys {
		s += string(rune('0' + y))
	}
	return s
}

func TestNetworkCutsAreDirectionalAndCounted(t *testing.T) {
	s := newServer(t)
	n := NewNetwork()
	t.Cleanup(func() { _ = n.Close() })
	ab, err := n.Add(Link{From: "n1", To: "n2"}, s.addr())
	require.NoError(t, err)
	ba, err := n.Add(Link{From: "n2", To: "n1"}, s.addr())
	require.NoError(t, err)
	_, err = n.Add(Link{From: "n1", To: "n2"}, s.addr())
	require.Error(t, err, "a link has one proxy")

	cut := []Cut{{From: "n1", To: "n2"}}
	n.Cut(cut)
	require.Equal(t, Up, ab.Blackholed(), "n1's own connections to n2 lose their Up half")
	require.Equal(t, Down, ba.Blackholed(), "n2's connections to n1 lose their replies")
	require.True(t, n.IsCut("n1", "n2"))
	require.False(t, n.IsCut("n2", "n1"))

	n.Cut(cut) // a second, overlapping fault
	n.Uncut(cut)
	require.Equal(t, Up, ab.Blackholed(), "still cut by the other fault")
	n.Uncut(cut)
	require.Equal(t, Direction(0), ab.Blackholed())
	require.Equal(t, Direction(0), ba.Blackholed())

	links := []Link{{From: "n1", To: "n2"}}
	n.AddDelay(links, 10*time.Millisecond)
	n.AddDelay(links, 30*time.Millisecond)
	require.Equal(t, 30*time.Millisecond, ab.Delay())
	n.RemoveDelay(links, 30*time.Millisecond)
	require.Equal(t, 10*time.Millisecond, ab.Delay())
	require.Equal(t, time.Duration(0), ba.Delay())

	n.Cut([]Cut{{From: "n2", To: "n1"}, {From: "n1", To: "n2"}})
	require.Equal(t, Both, ab.Blackholed())
	n.HealAll()
	require.Equal(t, Direction(0), ab.Blackholed())
	require.Equal(t, time.Duration(0), ab.Delay())

	addr, err := n.Addr("n1", "n2")
	require.NoError(t, err)
	require.Equal(t, ab.Addr(), addr)
	_, err = n.Addr("n1", "n9")
	require.ErrorIs(t, err, ErrNoLink)
	require.Equal(t, []string{"n1", "n2"}, n.Endpoints())
}

// TestNetworkPartitionOverTCP sends real bytes between two endpoints across a
// symmetric partition and its heal.
func TestNetworkPartitionOverTCP(t *testing.T) {
	s := newServer(t)
	n := NewNetwork()
	t.Cleanup(func() { _ = n.Close() })
	// A cut applied before a link exists holds for it once added.
	n.Cut([]Cut{{From: "n1", To: "n2"}, {From: "n2", To: "n1"}})
	_, err := n.Add(Link{From: "n1", To: "n2"}, s.addr())
	require.NoError(t, err)
	addr, err := n.Addr("n1", "n2")
	require.NoError(t, err)
	c := dial(t, addr)
	write(t, c, "msg")
	requireStalled(t, c)
	n.HealAll()
	sc := s.accept(t)
	t.Cleanup(func() { _ = sc.Close() })
	require.Equal(t, "msg", string(readN(t, sc, 3, 5*time.Second)))
	write(t, sc, "re")
	require.Equal(t, "re", string(readN(t, c, 2, 5*time.Second)))
}

func TestIsZKEndpoint(t *testing.T) {
	require.True(t, IsZKEndpoint(ZKEndpoint(3)))
	require.False(t, IsZKEndpoint("zk"))
	require.False(t, IsZKEndpoint("zkx"))
	require.False(t, IsZKEndpoint(NodeEndpoint(1)))
	require.False(t, IsZKEndpoint(ClientEndpoint))
}

func TestNetworkWire(t *testing.T) {
	s := newServer(t)
	s.echo(t)
	n := NewNetwork()
	t.Cleanup(func() { _ = n.Close() })
	w, err := n.Wire(Topology{
		Nodes: map[int]string{1: s.addr(), 2: s.addr(), 3: s.addr()},
		ZK:    map[int]string{1: s.addr(), 2: s.addr()},
	})
	require.NoError(t, err)
	require.Len(t, n.Links(), 3*2+3*2+3, "peer pairs, node→zk, client→node")
	require.Len(t, w.Peers[1], 2)
	require.Len(t, w.ZK[2], 2)
	require.Equal(t, 2, strings.Count(w.ZKConnect(3), ",")+1)
	require.Equal(t, "1=self:1,2="+w.Peers[1][2]+",3="+w.Peers[1][3], w.PeerList(1, "self:1"))

	// Every handed-out address reaches the target through its own proxy.
	c := dial(t, w.Peers[2][3])
	write(t, c, "via")
	require.Equal(t, "via", string(readN(t, c, 3, 5*time.Second)))
	n.Cut([]Cut{{From: "n2", To: "n3"}})
	write(t, c, "cut")
	requireStalled(t, c)
	c2 := dial(t, w.Clients[3]) // the client link is not cut
	write(t, c2, "cl")
	require.Equal(t, "cl", string(readN(t, c2, 2, 5*time.Second)))
	n.HealAll()
	require.Equal(t, "cut", string(readN(t, c, 3, 5*time.Second)))
}
