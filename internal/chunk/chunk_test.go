package chunk

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// pieces returns a next function that yields ps in order, then end.
func pieces(end error, ps ...[]byte) func() ([]byte, error) {
	return func() ([]byte, error) {
		if len(ps) == 0 {
			return nil, end
		}
		p := ps[0]
		ps = ps[1:]
		return p, nil
	}
}

func withDeadline(t *testing.T, size int64) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), Timeout(size))
	t.Cleanup(cancel)
	return ctx
}

func TestSplitCoversDataInOrder(t *testing.T) {
	data := []byte("0123456789")
	var got [][]byte
	require.NoError(t, Split(data, 4, func(p []byte) error { got = append(got, p); return nil }))
	require.Equal(t, [][]byte{[]byte("0123"), []byte("4567"), []byte("89")}, got)

	got = nil
	require.NoError(t, Split(nil, 4, func(p []byte) error { got = append(got, p); return nil }))
	require.Len(t, got, 1, "an empty snapshot still sends one piece")

	boom := errors.New("boom")
	calls := 0
	require.ErrorIs(t, Split(data, 4, func([]byte) error { calls++; return boom }), boom)
	require.Equal(t, 1, calls, "stops at the first error")
}

func TestAssembleWhole(t *testing.T) {
	r := NewReceiver(100, 100)
	buf, done, err := r.Assemble(withDeadline(t, 10), 10, []byte("0123"), pieces(io.EOF, []byte("4567"), []byte("89")))
	require.NoError(t, err)
	require.Equal(t, []byte("0123456789"), buf)
	b, n := r.Received()
	require.Zero(t, b, "counted only once handed on")
	require.Zero(t, n)
	done(true)
	done(true) // a second call changes nothing
	b, n = r.Received()
	require.Equal(t, uint64(10), b)
	require.Equal(t, uint64(1), n)
	require.Equal(t, int64(100), r.free, "the budget is back")
}

func TestAssembleRefusesAndDiscards(t *testing.T) {
	r := NewReceiver(50, 60)
	ctx := withDeadline(t, 50)

	_, _, err := r.Assemble(ctx, 51, nil, pieces(io.EOF))
	require.ErrorIs(t, err, ErrTooLarge)

	_, _, err = r.Assemble(context.Background(), 10, nil, pieces(io.EOF))
	require.ErrorIs(t, err, ErrNoDeadline, "no deadline")
	far, cancel := context.WithTimeout(context.Background(), Timeout(10)+time.Minute)
	defer cancel()
	_, _, err = r.Assemble(far, 10, nil, pieces(io.EOF))
	require.ErrorIs(t, err, ErrNoDeadline, "a deadline later than the size allows")

	// A transfer in progress holds its bytes of the budget.
	_, held, err := r.Assemble(ctx, 40, make([]byte, 40), pieces(io.EOF))
	require.NoError(t, err)
	_, _, err = r.Assemble(ctx, 30, nil, pieces(io.EOF))
	require.ErrorIs(t, err, ErrBusy)
	held(false)

	// The sender vanished midway: the stream's error ends the transfer.
	gone := errors.New("stream reset")
	buf, done, err := r.Assemble(ctx, 10, []byte("0123"), pieces(gone, []byte("45")))
	require.ErrorIs(t, err, ErrTruncated)
	require.ErrorIs(t, err, gone)
	require.Nil(t, buf)
	require.Nil(t, done)
	// Closed early, or sent too much.
	_, _, err = r.Assemble(ctx, 10, []byte("0123"), pieces(io.EOF))
	require.ErrorIs(t, err, ErrTruncated)
	_, _, err = r.Assemble(ctx, 4, []byte("0123"), pieces(io.EOF, []byte("4")))
	require.ErrorIs(t, err, ErrOverrun)

	require.Equal(t, int64(60), r.free, "every refused or broken transfer gave its budget back")
	b, n := r.Received()
	require.Zero(t, b)
	require.Zero(t, n)

	// And the next whole transfer goes through.
	buf, done, err = r.Assemble(ctx, 6, []byte("abc"), pieces(io.EOF, []byte("def")))
	require.NoError(t, err)
	require.True(t, bytes.Equal([]byte("abcdef"), buf))
	done(true)
}

// Send counts what the stream accepted, marks only the first piece,
// counts a transfer whole once finish accepts it, and stops at the first
// error with the counts so far.
func TestSentSendCountsAndStops(t *testing.T) {
	var s Sent
	var firsts, got []int
	pieces, n, err := s.Send(make([]byte, 10), 4, func() { t.Fatal("no piece stalled") }, func(p []byte, first bool) error {
		if first {
			firsts = append(firsts, len(got))
		}
		got = append(got, len(p))
		return nil
	}, func() error { return nil })
	require.NoError(t, err)
	require.Equal(t, []int{4, 4, 2}, got)
	require.Equal(t, []int{0}, firsts)
	require.Equal(t, 3, pieces)
	require.Equal(t, 10, n)
	b, transfers := s.Load()
	require.Equal(t, uint64(10), b)
	require.Equal(t, uint64(1), transfers)

	boom := errors.New("stream broke")
	pieces, n, err = s.Send(make([]byte, 10), 4, func() {}, func(p []byte, first bool) error {
		if !first {
			return boom
		}
		return nil
	}, func() error { t.Fatal("finish after a failed piece"); return nil })
	require.ErrorIs(t, err, boom)
	require.Equal(t, 1, pieces)
	require.Equal(t, 4, n)
	_, _, err = s.Send(nil, 4, func() {}, func([]byte, bool) error { return nil }, func() error { return boom })
	require.ErrorIs(t, err, boom, "a transfer the receiver refused")
	_, transfers = s.Load()
	require.Equal(t, uint64(1), transfers, "refused transfers are not counted whole")
}
