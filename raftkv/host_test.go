package raftkv

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/kv"
	pb "github.com/chainraft/chainraft/raftkv/raftkvpb"
)

// TestGroupMembersRotate: with groups = nodes, group g starts at node g
// (as chain g's head does), and every node is in size groups.
func TestGroupMembersRotate(t *testing.T) {
	nodes := []Member{{ID: 3}, {ID: 1}, {ID: 2}, {ID: 4}, {ID: 5}}
	in := map[uint64]int{}
	for g := range 5 {
		ms := GroupMembers(nodes, 3, g)
		require.Len(t, ms, 3)
		require.Equal(t, uint64(g+1), ms[0].ID, "group %d is led by node %d", g, g+1)
		for _, m := range ms {
			in[m.ID]++
		}
	}
	for id, n := range in {
		require.Equal(t, 3, n, "node %d", id)
	}
	require.Len(t, GroupMembers(nodes[:2], 3, 0), 2, "a group never has more members than there are nodes")
}

// TestHostsServeGroups runs four multi-raft processes in the test process
// (four groups of three), writes and reads keys of every group through the
// one client, and checks that each group's leader is the member it prefers:
// leaders spread over the nodes, one each.
func TestHostsServeGroups(t *testing.T) {
	const nodes, groups, size = 4, 4, 3
	var members []Member
	for i := 1; i <= nodes; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		members = append(members, Member{ID: uint64(i), Addr: l.Addr().String()})
		l.Close()
	}
	hosts := map[uint64]*Host{}
	for _, m := range members {
		h, err := StartHost(HostConfig{
			Node:   NodeConfig{ID: m.ID, Peers: members, DataDir: t.TempDir(), TickInterval: 20 * time.Millisecond},
			Groups: groups, GroupSize: size,
		})
		require.NoError(t, err)
		require.Len(t, h.Groups(), size, "node %d is in %d groups", m.ID, size)
		lis, err := net.Listen("tcp", m.Addr)
		require.NoError(t, err)
		gs, _ := ServeHost(h, lis)
		hosts[m.ID] = h
		t.Cleanup(func() {
			gs.Stop()
			require.NoError(t, h.Stop())
		})
	}
	conns, err := Dial(context.Background(), ClientOptions{Members: members, Groups: groups, RequestTimeout: 10 * time.Second, AttemptTimeout: 500 * time.Millisecond})
	require.NoError(t, err)
	defer conns.Close()
	ctx := context.Background()
	cl := conns.NewClient()
	seen := map[int]bool{}
	for i := range 40 {
		k := fmt.Sprintf("key-%d", i)
		seen[kv.ShardOf(k, groups)] = true
		require.NoError(t, cl.Put(ctx, k, "v"+k))
	}
	require.Len(t, seen, groups, "the keys cover every group")
	for i := range 40 {
		k := fmt.Sprintf("key-%d", i)
		v, ok, err := cl.Get(ctx, k)
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, "v"+k, v)
	}
	// A node that is not a member of a group says so, and has no role in it.
	outsider := members[3].ID // group 0 is nodes 1, 2 and 3
	st, err := conns.GroupStatus(ctx, outsider, 0)
	require.NoError(t, err)
	require.Equal(t, RoleNone, st.GetRole())
	resp, err := conns.client(outsider).Do(ctx, &pb.Request{Cmd: &pb.Command{Op: pb.Op_OP_GET, Key: "x"}, Group: 0})
	require.NoError(t, err)
	require.Equal(t, pb.Code_CODE_NOT_MEMBER, resp.GetCode())

	require.Eventually(t, func() bool {
		for g := range groups {
			want := GroupMembers(members, size, g)[0].ID
			st, err := conns.GroupStatus(ctx, want, uint32(g))
			if err != nil || st.GetRole() != "StateLeader" {
				return false
			}
		}
		return true
		// A liveness bound, not a speed goal: on the two-core machine under
		// make test (race detector, other packages' clusters alongside)
		// elections and transfers can take several rounds.
	}, 45*time.Second, 50*time.Millisecond, "every group is led by its preferred member")
}
