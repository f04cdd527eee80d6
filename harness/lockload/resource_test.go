package lockload

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/kv"
)

func TestResourceFencedRefusesStaleTokenAndChangedValue(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.jsonl")
	r, err := StartResource(true, time.Now(), path)
	require.NoError(t, err)
	defer r.Close()
	ctx := context.Background()
	old := NewResourceClient(r.Addr(), 0, time.Second)
	cur := NewResourceClient(r.Addr(), 1, time.Second)

	v, err := old.Read(ctx, 5)
	require.NoError(t, err)
	require.Zero(t, v)
	_, err = cur.Read(ctx, 7)
	require.NoError(t, err)
	inc, ok := r.InCritical()
	require.True(t, ok)
	require.Equal(t, 1, inc.Worker)
	// The newer holder has been seen: the older token is refused, definitely.
	err = old.CAS(ctx, 5, 0, 1)
	require.ErrorIs(t, err, ErrRefused)
	require.True(t, kv.IsDefinite(err))
	require.NoError(t, cur.CAS(ctx, 7, 0, 1))
	_, ok = r.InCritical()
	require.False(t, ok, "the holder wrote: no longer in its critical section")
	// A cas on a changed value is refused even with a fresh token.
	require.ErrorIs(t, cur.CAS(ctx, 8, 0, 1), ErrRefused)
	require.Equal(t, int64(1), r.Value())
	require.NoError(t, r.Close())

	h, err := ReadHistory(path)
	require.NoError(t, err)
	require.Equal(t, r.History(), h)
	require.Len(t, h, 5)
	require.Equal(t, ReasonStaleToken, h[2].Reason)
	require.Equal(t, ReasonMismatch, h[4].Reason)
	res, err := Check(h)
	require.NoError(t, err)
	require.Equal(t, VerdictOK, res.Verdict)
}

func TestResourceUnfencedAcceptsStaleWrite(t *testing.T) {
	r, err := StartResource(false, time.Now(), "")
	require.NoError(t, err)
	defer r.Close()
	ctx := context.Background()
	old := NewResourceClient(r.Addr(), 0, time.Second)
	cur := NewResourceClient(r.Addr(), 1, time.Second)
	_, err = old.Read(ctx, 5)
	require.NoError(t, err)
	_, err = cur.Read(ctx, 7)
	require.NoError(t, err)
	require.NoError(t, cur.Write(ctx, 7, 1))
	require.NoError(t, old.Write(ctx, 5, 1)) // nothing stops it
	res, err := Check(r.History())
	require.NoError(t, err)
	require.Equal(t, VerdictViolation, res.Verdict)
}
