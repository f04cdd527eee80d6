package lockload

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// hist numbers the requests as a Resource would.
func hist(rs ...Request) []Request {
	for i := range rs {
		rs[i].Seq = int64(i) + 1
		rs[i].Time = int64(i+1) * 1e6
	}
	return rs
}

func rd(w int, tok, v int64) Request {
	return Request{Worker: w, Token: tok, Op: OpRead, Value: v, Before: v, Accepted: true}
}

func wr(w int, tok, before, v int64) Request {
	return Request{Worker: w, Token: tok, Op: OpWrite, Value: v, Before: before, Accepted: true}
}

func TestCheckSerialHistoryIsOK(t *testing.T) {
	h := hist(
		rd(0, 1, 0), wr(0, 1, 0, 1),
		rd(1, 2, 1), wr(1, 2, 1, 2),
		rd(0, 3, 2), wr(0, 3, 2, 3),
	)
	res, err := Check(h)
	require.NoError(t, err)
	require.Equal(t, VerdictOK, res.Verdict, "%+v", res.Violations)
	require.Equal(t, 3, res.AcceptedWrites)
	require.Equal(t, int64(3), res.Final)
	require.Equal(t, 3, res.Acquisitions)
	require.Zero(t, res.TwoHolders)
}

// The soft-lock story without fencing: worker 0 reads 1 and is paused; its
// lock expires; worker 1 reads 1 and writes 2; worker 0 resumes and writes 2.
func TestCheckCatchesPausedHolderWithoutFencing(t *testing.T) {
	h := hist(
		rd(0, 1, 0), wr(0, 1, 0, 1),
		rd(0, 2, 1), // worker 0 paused here
		rd(1, 3, 1), wr(1, 3, 1, 2),
		wr(0, 2, 2, 2), // worker 0 resumes: its write is based on a superseded read
	)
	res, err := Check(h)
	require.NoError(t, err)
	require.Equal(t, VerdictViolation, res.Verdict)
	kinds := map[string]int{}
	for _, v := range res.Violations {
		kinds[v.Kind]++
	}
	require.Equal(t, map[string]int{KindLostIncrement: 1, KindInterleave: 1, KindFinal: 1}, kinds)
	var il, lost Violation
	for _, v := range res.Violations {
		switch v.Kind {
		case KindInterleave:
			il = v
		case KindLostIncrement:
			lost = v
		}
	}
	require.Equal(t, Holding{Worker: 0, Token: 2, Seq: 6, Time: 6e6}, lost.Holder)
	require.NotNil(t, lost.Other)
	require.Equal(t, Holding{Worker: 1, Token: 3, Seq: 5, Time: 5e6}, *lost.Other, "the write it clobbered")
	require.Equal(t, Holding{Worker: 0, Token: 2, Seq: 6, Time: 6e6}, il.Holder)
	require.NotNil(t, il.Other)
	require.Equal(t, Holding{Worker: 1, Token: 3, Seq: 5, Time: 5e6}, *il.Other)
	require.Equal(t, 1, res.TwoHolders)
	require.Equal(t, int64(2), res.Final)
	require.Equal(t, 3, res.AcceptedWrites)
}

// The same schedule with fencing: the stale token is refused, the lock had
// two holders but the counter is right.
func TestCheckFencedRefusalIsOK(t *testing.T) {
	stale := Request{Worker: 0, Token: 2, Op: OpCAS, Value: 2, Expect: 1, Before: 2, Reason: ReasonStaleToken}
	h := hist(
		rd(0, 1, 0), wr(0, 1, 0, 1),
		rd(0, 2, 1),
		rd(1, 3, 1), wr(1, 3, 1, 2),
		stale,
	)
	res, err := Check(h)
	require.NoError(t, err)
	require.Equal(t, VerdictOK, res.Verdict, "%+v", res.Violations)
	require.Equal(t, 1, res.StaleRefused)
	require.Equal(t, 1, res.TwoHolders)
	require.Equal(t, int64(2), res.Final)
}

// Interleaving alone is caught even when the values happen to line up:
// worker 1's whole section runs inside worker 0's.
func TestCheckCatchesInterleavingWithoutValueDamage(t *testing.T) {
	h := hist(
		rd(0, 1, 0),
		rd(1, 2, 0), wr(1, 2, 0, 1),
		rd(1, 3, 1), wr(1, 3, 1, 2),
		Request{Worker: 0, Token: 1, Op: OpWrite, Value: 3, Before: 2, Accepted: true},
	)
	res, err := Check(h)
	require.NoError(t, err)
	require.Equal(t, VerdictViolation, res.Verdict)
	require.Equal(t, 1, res.ViolationCount, "%+v", res.Violations)
	require.Equal(t, KindInterleave, res.Violations[0].Kind)
}

func TestCheckNoWritesIsUnknown(t *testing.T) {
	res, err := Check(hist(rd(0, 1, 0), rd(1, 2, 0)))
	require.NoError(t, err)
	require.Equal(t, VerdictUnknown, res.Verdict)
}

func TestCheckRejectsMisnumberedHistory(t *testing.T) {
	h := hist(rd(0, 1, 0), wr(0, 1, 0, 1))
	h[1].Seq = 5
	_, err := Check(h)
	require.Error(t, err)
}

func TestCheckCatchesStaleRead(t *testing.T) {
	res, err := Check(hist(rd(0, 1, 0), wr(0, 1, 0, 1), rd(1, 2, 0), wr(1, 2, 0, 1)))
	require.NoError(t, err)
	require.Equal(t, VerdictViolation, res.Verdict)
	kinds := map[string]bool{}
	for _, v := range res.Violations {
		kinds[v.Kind] = true
	}
	require.True(t, kinds[KindStaleRead])
	require.True(t, kinds[KindLostIncrement])
}
