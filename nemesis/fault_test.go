package nemesis

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fakeTarget is a unit-test Target: it records every call and resolves roles
// from a table. Capabilities listed in unsupported return ErrUnsupported.
type fakeTarget struct {
	mu          sync.Mutex
	nodes       []int
	roles       map[string][]int
	unsupported map[string]bool
	failKill    map[int]bool
	calls       []string
	net         *Network
	zk          *fakeZK
}

func newFakeTarget(nodes ...int) *fakeTarget {
	return &fakeTarget{nodes: nodes, roles: map[string][]int{}, unsupported: map[string]bool{}, failKill: map[int]bool{}}
}

func (f *fakeTarget) call(op string, node int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.unsupported[op] {
		return fmt.Errorf("fake store: %s: %w", op, ErrUnsupported)
	}
	if op == "kill" && f.failKill[node] {
		return errors.New("fake store: kill failed")
	}
	f.calls = append(f.calls, fmt.Sprintf("%s %d", op, node))
	return nil
}

func (f *fakeTarget) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeTarget) Nodes() []int { return f.nodes }
func (f *fakeTarget) Resolve(_ context.Context, role string) ([]int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ns, ok := f.roles[role]
	if !ok {
		return nil, fmt.Errorf("fake store: role %q: %w", role, ErrUnsupported)
	}
	return ns, nil
}
func (f *fakeTarget) Kill(_ context.Context, n int) error         { return f.call("kill", n) }
func (f *fakeTarget) Restart(_ context.Context, n int) error      { return f.call("restart", n) }
func (f *fakeTarget) Pause(_ context.Context, n int) error        { return f.call("pause", n) }
func (f *fakeTarget) Resume(_ context.Context, n int) error       { return f.call("resume", n) }
func (f *fakeTarget) RemoveMember(_ context.Context, n int) error { return f.call("remove", n) }
func (f *fakeTarget) AddMember(_ context.Context, n int) error    { return f.call("add", n) }
func (f *fakeTarget) Network() *Network                           { return f.net }
func (f *fakeTarget) ZK() ZKTarget {
	if f.zk == nil {
		return nil // a typed nil would not compare equal to nil
	}
	return f.zk
}

type fakeZK struct {
	mu      sync.Mutex
	servers []int
	leader  int
	calls   []string
}

func (z *fakeZK) Servers() []int { return z.servers }
func (z *fakeZK) Resolve(_ context.Context, role string) ([]int, error) {
	if role == RoleZKLeader {
		return []int{z.leader}, nil
	}
	return nil, fmt.Errorf("fake zk: role %q: %w", role, ErrUnsupported)
}
func (z *fakeZK) Kill(_ context.Context, s int) error    { return z.rec("kill", s) }
func (z *fakeZK) Restart(_ context.Context, s int) error { return z.rec("restart", s) }
func (z *fakeZK) rec(op string, s int) error {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.calls = append(z.calls, fmt.Sprintf("zk %s %d", op, s))
	return nil
}

func TestInjectKillLeaderAndHeal(t *testing.T) {
	ctx := context.Background()
	tg := newFakeTarget(1, 2, 3)
	tg.roles[RoleLeader] = []int{2}
	inj, err := Inject(ctx, tg, Fault{Kind: KindKill, Role: RoleLeader})
	require.NoError(t, err)
	require.Equal(t, []int{2}, inj.Targets)
	require.NoError(t, Heal(ctx, tg, inj))
	require.Equal(t, []string{"kill 2", "restart 2"}, tg.Calls())
}

func TestInjectPauseAndMemberPickOneCandidateBySeed(t *testing.T) {
	ctx := context.Background()
	tg := newFakeTarget(1, 2, 3)
	tg.roles[RoleFollower] = []int{3, 1}
	a, err := Inject(ctx, tg, Fault{Kind: KindPause, Role: RoleFollower, Seed: 5})
	require.NoError(t, err)
	b, err := Inject(ctx, tg, Fault{Kind: KindMember, Role: RoleFollower, Seed: 5})
	require.NoError(t, err)
	require.Len(t, a.Targets, 1)
	require.Equal(t, a.Targets, b.Targets, "same seed, same pick")
	require.Contains(t, []int{1, 3}, a.Targets[0])
	require.NoError(t, Heal(ctx, tg, a))
	require.NoError(t, Heal(ctx, tg, b))
	n := a.Targets[0]
	require.Equal(t, []string{
		fmt.Sprintf("pause %d", n), fmt.Sprintf("remove %d", n),
		fmt.Sprintf("resume %d", n), fmt.Sprintf("add %d", n),
	}, tg.Calls())
}

func TestInjectRolesKnownToNemesis(t *testing.T) {
	ctx := context.Background()
	tg := newFakeTarget(1, 2, 3, 4, 5)
	inj, err := Inject(ctx, tg, Fault{Kind: KindKill, Role: "node:4"})
	require.NoError(t, err)
	require.Equal(t, []int{4}, inj.Targets)

	inj, err = Inject(ctx, tg, Fault{Kind: KindKill, Role: RoleMinority, Seed: 1})
	require.NoError(t, err)
	require.Len(t, inj.Targets, 2)

	inj, err = Inject(ctx, tg, Fault{Kind: KindPause, Role: RoleAll})
	require.NoError(t, err)
	require.Equal(t, []int{1, 2, 3, 4, 5}, inj.Targets)

	_, err = Inject(ctx, tg, Fault{Kind: KindKill, Role: "node:9"})
	require.ErrorIs(t, err, ErrNoTarget)
	require.True(t, Skippable(err))

	_, err = Inject(ctx, tg, Fault{Kind: KindKill, Role: RoleTail})
	require.ErrorIs(t, err, ErrUnsupported, "a store without the role says so")

	tg.roles[RoleMiddle] = nil
	_, err = Inject(ctx, tg, Fault{Kind: KindKill, Role: RoleMiddle})
	require.ErrorIs(t, err, ErrNoTarget)

	_, err = Inject(ctx, tg, Fault{Kind: "flood"})
	require.Error(t, err)
	require.False(t, Skippable(err))
}

func TestInjectUndoesPartialKill(t *testing.T) {
	ctx := context.Background()
	tg := newFakeTarget(1, 2, 3)
	tg.failKill[3] = true
	_, err := Inject(ctx, tg, Fault{Kind: KindKill, Role: RoleAll})
	require.Error(t, err)
	require.Equal(t, []string{"kill 1", "kill 2", "restart 1", "restart 2"}, tg.Calls())
}

func TestInjectUnsupportedCapabilities(t *testing.T) {
	ctx := context.Background()
	tg := newFakeTarget(1, 2, 3)
	tg.unsupported["remove"] = true
	for _, f := range []Fault{
		{Kind: KindMember},
		{Kind: KindPartition, Shape: ShapeHalves},  // no network
		{Kind: KindZKPartition},                    // no network, no zk
		{Kind: KindZKKill},                         // no zk
		{Kind: KindDelay, Delay: time.Millisecond}, // no network
	} {
		_, err := Inject(ctx, tg, f)
		require.ErrorIs(t, err, ErrUnsupported, "%+v", f)
	}
	require.Empty(t, tg.Calls())
}

func TestInjectPartitionAndDelayOnNetwork(t *testing.T) {
	ctx := context.Background()
	s := newServer(t)
	n := NewNetwork()
	t.Cleanup(func() { _ = n.Close() })
	for _, a := range []int{1, 2, 3} {
		for _, b := range []int{1, 2, 3} {
			if a != b {
				_, err := n.Add(Link{From: NodeEndpoint(a), To: NodeEndpoint(b)}, s.addr())
				require.NoError(t, err)
			}
		}
		_, err := n.Add(Link{From: ClientEndpoint, To: NodeEndpoint(a)}, s.addr())
		require.NoError(t, err)
	}
	tg := newFakeTarget(1, 2, 3)
	tg.net = n
	tg.roles[RoleLeader] = []int{1}

	inj, err := Inject(ctx, tg, Fault{Kind: KindPartition, Shape: ShapeIsolate, Role: RoleLeader})
	require.NoError(t, err)
	require.Equal(t, []int{1}, inj.Targets)
	require.Equal(t, Both, n.Proxy(Link{From: "n1", To: "n2"}).Blackholed())
	require.Equal(t, Both, n.Proxy(Link{From: "n3", To: "n1"}).Blackholed())
	require.Equal(t, Direction(0), n.Proxy(Link{From: "n2", To: "n3"}).Blackholed())
	require.Equal(t, Direction(0), n.Proxy(Link{From: ClientEndpoint, To: "n1"}).Blackholed(), "clients still reach every node")
	require.NoError(t, Heal(ctx, tg, inj))
	require.Equal(t, Direction(0), n.Proxy(Link{From: "n1", To: "n2"}).Blackholed())

	d, err := Inject(ctx, tg, Fault{Kind: KindDelay, Role: "node:2", Delay: 25 * time.Millisecond})
	require.NoError(t, err)
	require.Len(t, d.Links, 5, "n1->n2, n2->n1, n2->n3, n3->n2, client->n2")
	require.Equal(t, 25*time.Millisecond, n.Proxy(Link{From: ClientEndpoint, To: "n2"}).Delay())
	require.Equal(t, time.Duration(0), n.Proxy(Link{From: "n1", To: "n3"}).Delay())
	require.NoError(t, Heal(ctx, tg, d))
	require.Equal(t, time.Duration(0), n.Proxy(Link{From: ClientEndpoint, To: "n2"}).Delay())
}

func TestInjectZKPartitionAndZKKill(t *testing.T) {
	ctx := context.Background()
	s := newServer(t)
	n := NewNetwork()
	t.Cleanup(func() { _ = n.Close() })
	for _, node := range []int{1, 2} {
		for _, z := range []int{1, 2, 3} {
			_, err := n.Add(Link{From: NodeEndpoint(node), To: ZKEndpoint(z)}, s.addr())
			require.NoError(t, err)
		}
	}
	_, err := n.Add(Link{From: "n1", To: "n2"}, s.addr())
	require.NoError(t, err)
	tg := newFakeTarget(1, 2)
	tg.net = n
	tg.zk = &fakeZK{servers: []int{1, 2, 3}, leader: 2}
	tg.roles[RoleTail] = []int{1}

	inj, err := Inject(ctx, tg, Fault{Kind: KindZKPartition, Role: RoleTail})
	require.NoError(t, err)
	for z := 1; z <= 3; z++ {
		require.Equal(t, Both, n.Proxy(Link{From: "n1", To: ZKEndpoint(z)}).Blackholed())
		require.Equal(t, Direction(0), n.Proxy(Link{From: "n2", To: ZKEndpoint(z)}).Blackholed())
	}
	require.Equal(t, Direction(0), n.Proxy(Link{From: "n1", To: "n2"}).Blackholed(), "only ZooKeeper is cut")
	require.NoError(t, Heal(ctx, tg, inj))
	require.Equal(t, Direction(0), n.Proxy(Link{From: "n1", To: "zk1"}).Blackholed())

	k, err := Inject(ctx, tg, Fault{Kind: KindZKKill}) // default role: the ZooKeeper leader
	require.NoError(t, err)
	require.Equal(t, []int{2}, k.Targets)
	m, err := Inject(ctx, tg, Fault{Kind: KindZKKill, Role: RoleZKMinority, Seed: 3})
	require.NoError(t, err)
	require.Len(t, m.Targets, 1)
	require.NoError(t, Heal(ctx, tg, k))
	require.Equal(t, []string{"zk kill 2", fmt.Sprintf("zk kill %d", m.Targets[0]), "zk restart 2"}, tg.zk.calls)

	_, err = Inject(ctx, tg, Fault{Kind: KindKill, Role: RoleZKLeader})
	require.ErrorIs(t, err, ErrUnsupported, "a ZooKeeper role does not name a store node")
}

func TestFaultDescribeAndValidate(t *testing.T) {
	require.Equal(t, "kill leader", Fault{Kind: KindKill, Role: RoleLeader}.Describe())
	require.Equal(t, "partition majorities-ring", Fault{Kind: KindPartition, Shape: ShapeMajoritiesRing}.Describe())
	require.Equal(t, "zk-kill zk-leader", Fault{Kind: KindZKKill}.Describe())
	require.Equal(t, "delay any 50ms", Fault{Kind: KindDelay, Delay: 50 * time.Millisecond}.Describe())
	require.Error(t, Fault{Kind: KindDelay}.Validate())
	require.ErrorIs(t, Fault{Kind: KindPartition, Shape: "moat"}.Validate(), ErrBadShape)
}
