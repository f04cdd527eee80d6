package proccluster

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/nemesis"
)

// TestReplacements: a removed node leaves Nodes, the last member is never
// removed, a failed removal records nothing, and a fresh node added in a
// removed one's place is its replacement.
func TestReplacements(t *testing.T) {
	ids := []int{1, 2, 3}
	r := &Replacements{Store: "kv", IDs: func() []int { return ids }}
	ctx := context.Background()
	ok := func(context.Context, int) error { return nil }

	require.Error(t, r.Remove(ctx, 2, func(context.Context, int) error { return errors.New("refused") }))
	require.Equal(t, []int{1, 2, 3}, r.Nodes())
	require.NoError(t, r.Remove(ctx, 2, ok))
	require.Equal(t, []int{1, 3}, r.Nodes())

	id, err := r.Add(ctx, 2, func(context.Context) (int, error) { ids = append(ids, 4); return 4, nil })
	require.NoError(t, err)
	require.Equal(t, 4, id)
	got, replaced := r.ReplacedBy(2)
	require.True(t, replaced)
	require.Equal(t, 4, got)
	require.Equal(t, []int{1, 3, 4}, r.Nodes())

	require.NoError(t, r.Remove(ctx, 1, ok))
	require.NoError(t, r.Remove(ctx, 3, ok))
	require.ErrorIs(t, r.Remove(ctx, 4, ok), nemesis.ErrNoTarget, "the last member stays")

	up := func(id int) bool { return id != 3 }
	lead := func() (int, error) { return 1, nil }
	all := func() []int { return []int{1, 2, 3} }
	leaders, err := r.LeaderOrFollowers(nemesis.RoleLeader, lead, all, up)
	require.NoError(t, err)
	require.Equal(t, []int{1}, leaders)
	followers, err := r.LeaderOrFollowers(nemesis.RoleFollower, lead, all, up)
	require.NoError(t, err)
	require.Equal(t, []int{2}, followers, "the leader and nodes that are down are no followers")
	_, err = r.LeaderOrFollowers("head", func() (int, error) { panic("asked the leader for a role the store lacks") }, all, up)
	require.ErrorIs(t, err, nemesis.ErrUnsupported)
	require.ErrorContains(t, err, `the kv store has no role "head"`)
	_, err = r.LeaderOrFollowers(nemesis.RoleLeader, func() (int, error) { return 0, errors.New("electing") }, all, up)
	require.ErrorIs(t, err, nemesis.ErrNoTarget)
}
