package kv

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDefiniteClassification(t *testing.T) {
	cause := errors.New("not leader")
	err := Definite(cause)
	require.True(t, IsDefinite(err))
	require.ErrorIs(t, err, cause)
	require.True(t, IsDefinite(fmt.Errorf("wrapped: %w", err)))
	require.False(t, IsDefinite(cause), "an unwrapped error is indeterminate")
	require.False(t, IsDefinite(nil))
	require.Nil(t, Definite(nil))
	require.Same(t, err, Definite(err), "wrapping twice keeps one layer")
}

func TestSequencer(t *testing.T) {
	a, b := NewSequencer(), NewSequencer()
	require.NotEqual(t, a.Client(), b.Client())
	require.Equal(t, RequestID{Client: a.Client(), Seq: 1}, a.Next())
	require.Equal(t, uint64(2), a.Next().Seq)
}

func TestMemorySemantics(t *testing.T) {
	ctx := context.Background()
	m := NewMemory()
	_, found, err := m.Get(ctx, "k")
	require.NoError(t, err)
	require.False(t, found)

	swapped, err := m.CAS(ctx, "k", "", "x")
	require.NoError(t, err)
	require.False(t, swapped, "a cas on an absent key never swaps, even with an empty expect")

	require.NoError(t, m.Put(ctx, "k", ""))
	v, found, err := m.Get(ctx, "k")
	require.NoError(t, err)
	require.True(t, found, "an empty value is present")
	require.Equal(t, "", v)

	require.NoError(t, m.Append(ctx, "k", "a"))
	require.NoError(t, m.Append(ctx, "new", "b"))
	swapped, err = m.CAS(ctx, "k", "a", "c")
	require.NoError(t, err)
	require.True(t, swapped)
	require.Equal(t, map[string]string{"k": "c", "new": "b"}, m.Snapshot())

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	require.True(t, IsDefinite(m.Put(cctx, "k", "z")))
	v, _, _ = m.Get(ctx, "k")
	require.Equal(t, "c", v, "a definite failure left no effect")
}

// TestShardOfSpreads: every shard gets keys, and one key always lands on
// the same shard (the stores route by it on every request).
func TestShardOfSpreads(t *testing.T) {
	for _, n := range []int{1, 3, 7} {
		seen := map[int]int{}
		for i := range 700 {
			k := fmt.Sprintf("k%d", i)
			s := ShardOf(k, n)
			require.Equal(t, s, ShardOf(k, n))
			require.GreaterOrEqual(t, s, 0)
			require.Less(t, s, n)
			seen[s]++
		}
		require.Len(t, seen, n, "every one of %d shards gets keys", n)
	}
	require.Equal(t, 0, ShardOf("anything", 0), "no shards: shard 0")
}

// The digest depends on the data only, and length prefixes keep a key's
// end apart from its value's start.
func TestDigest(t *testing.T) {
	a := Digest(map[string]string{"k1": "v", "k2": "w"})
	require.Equal(t, a, Digest(map[string]string{"k2": "w", "k1": "v"}))
	require.NotEqual(t, a, Digest(map[string]string{"k1": "v", "k2": "x"}))
	require.NotEqual(t, Digest(map[string]string{"ab": "c"}), Digest(map[string]string{"a": "bc"}))
	require.Equal(t, Digest(nil), Digest(map[string]string{}))
}
