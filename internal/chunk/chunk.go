// Package chunk is what the two stores share about sending a snapshot in
// pieces: the piece size, the deadline a transfer gets, and the receiver's
// bounds. A snapshot is a store's whole state, so it grows with the data; a
// gRPC message has to fit in memory twice and under a per-message limit,
// and one message of a gigabyte also holds a link for as long as it takes
// with no way to bound the wait short of cancelling the lot. Pieces of Size
// bytes over a stream of their own keep every Send small and bounded, and
// let the receiver refuse a transfer at its first piece.
//
// What a receiver accepts is bounded three ways. A transfer announces its
// size in its first piece: above the receiver's cap it is refused there,
// before any memory is taken. All transfers in progress share a byte
// budget (reserved at the first piece, released once the assembled
// snapshot is handed over or dropped), so concurrent senders cannot add up
// past it. And a transfer must come with a deadline no later than Timeout
// of its size: gRPC ends the stream at that deadline whether or not the
// sender is alive, so the pieces from a sender that died or was cut off
// midway are dropped then, never handed on. A transfer is whole only when
// the sender closes its stream after exactly the announced bytes.
package chunk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// Size is the bytes of snapshot data in one piece: large enough that
	// the per-message cost is noise next to copying the bytes, small
	// enough that a Send blocked by flow control holds little.
	Size = 4 << 20
	// MaxBytes is the largest single transfer a receiver accepts: twice
	// the 1 GB the harness preloads, with room for the dedup table.
	MaxBytes = 2 << 30
	// Budget is the bytes all transfers in progress at one receiver may
	// hold together.
	Budget = 4 << 30

	// A transfer's deadline allows baseTimeout plus its size at minRate,
	// far below what loopback or a LAN carries, so that only a stuck or
	// dead sender reaches it; slack covers the time between the sender
	// computing its deadline and the receiver checking it.
	// Stall bounds one piece's Send at the sender: a Send blocks only on
	// flow control, so one that waits this long means the receiver
	// stopped reading (a paused process, a silent partition), and the
	// transfer is given up rather than left to its whole deadline.
	Stall = 5 * time.Second

	baseTimeout = 10 * time.Second
	minRate     = 8 << 20 // bytes per second
	slack       = 5 * time.Second
)

// Timeout is how long a transfer of size bytes may take, end to end.
func Timeout(size int64) time.Duration {
	return baseTimeout + time.Duration(float64(size)/minRate*float64(time.Second))
}

// Split calls send with each consecutive piece of data, at most size
// bytes long, in order; at least once, so that an empty snapshot still
// travels with its header. It stops at the first error.
func Split(data []byte, size int, send func(piece []byte) error) error {
	for first := true; first || len(data) > 0; first = false {
		n := min(size, len(data))
		if err := send(data[:n:n]); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

// Errors a receiver answers a refused or broken transfer with.
var (
	ErrTooLarge   = errors.New("snapshot transfer larger than the receiver accepts")
	ErrBusy       = errors.New("receiver's snapshot budget is taken by other transfers")
	ErrNoDeadline = errors.New("snapshot transfer without a deadline, or a later one than its size allows")
	ErrTruncated  = errors.New("snapshot transfer ended before its announced size")
	ErrOverrun    = errors.New("snapshot transfer sent more than its announced size")
)

// Receiver bounds what one process accepts (see the package comment) and
// counts what it took in. Its methods are safe for concurrent use: each
// transfer runs on its own gRPC handler goroutine.
type Receiver struct {
	max, budget int64

	mu   sync.Mutex
	free int64

	bytes, count atomic.Uint64
}

// NewReceiver accepts transfers of at most max bytes each and budget bytes
// in all at a time.
func NewReceiver(max, budget int64) *Receiver {
	return &Receiver{max: max, budget: budget, free: budget}
}

// Held reports the budget bytes transfers in progress hold.
func (r *Receiver) Held() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.budget - r.free
}

// Received reports the bytes and the number of transfers handed on whole.
func (r *Receiver) Received() (bytes, transfers uint64) { return r.bytes.Load(), r.count.Load() }

// Count counts a snapshot of n bytes that arrived whole in one ordinary
// message (small enough not to need pieces).
func (r *Receiver) Count(n int) {
	r.bytes.Add(uint64(n))
	r.count.Add(1)
}

// Assemble collects one transfer of size bytes: first is the first piece's
// data, next returns each following piece's, and io.EOF once the sender has
// closed the stream. ctx is the stream's: its deadline is checked against
// Timeout(size). On success the caller owns buf and must call done once
// it has handed buf on (or dropped it), with whether it was handed on:
// that returns the budget and counts the transfer. On error nothing is
// kept.
func (r *Receiver) Assemble(ctx context.Context, size uint64, first []byte, next func() ([]byte, error)) (buf []byte, done func(delivered bool), err error) {
	if size > uint64(r.max) {
		return nil, nil, fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, size, r.max)
	}
	dl, ok := ctx.Deadline()
	if !ok || time.Until(dl) > Timeout(int64(size))+slack {
		return nil, nil, ErrNoDeadline
	}
	r.mu.Lock()
	if int64(size) > r.free {
		free := r.free
		r.mu.Unlock()
		return nil, nil, fmt.Errorf("%w: %d bytes asked, %d free", ErrBusy, size, free)
	}
	r.free -= int64(size)
	r.mu.Unlock()
	var once sync.Once
	done = func(delivered bool) {
		once.Do(func() {
			r.mu.Lock()
			r.free += int64(size)
			r.mu.Unlock()
			if delivered {
				r.bytes.Add(size)
				r.count.Add(1)
			}
		})
	}
	buf = make([]byte, 0, size)
	for piece := first; ; {
		if uint64(len(buf)+len(piece)) > size {
			done(false)
			return nil, nil, fmt.Errorf("%w (%d bytes)", ErrOverrun, size)
		}
		buf = append(buf, piece...)
		piece, err = next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			done(false)
			return nil, nil, fmt.Errorf("%w: %d of %d bytes: %w", ErrTruncated, len(buf), size, err)
		}
	}
	if uint64(len(buf)) != size {
		done(false)
		return nil, nil, fmt.Errorf("%w: %d of %d bytes", ErrTruncated, len(buf), size)
	}
	return buf, done, nil
}

// Sent counts the sending side: bytes every piece a stream accepted
// carried (a failed transfer's too: they crossed the link), transfers the
// receiver acknowledged whole.
type Sent struct {
	bytes, count atomic.Uint64
}

// Piece counts one piece's bytes.
func (s *Sent) Piece(n int) { s.bytes.Add(uint64(n)) }

// Transfer counts one transfer acknowledged whole.
func (s *Sent) Transfer() { s.count.Add(1) }

// Load reports the bytes and transfers counted so far.
func (s *Sent) Load() (bytes, transfers uint64) { return s.bytes.Load(), s.count.Load() }

// Send sends data in pieces of at most size bytes through send, first
// telling it which piece opens the transfer (and carries the header),
// then calls finish, which closes the stream and waits for the receiver's
// answer; a transfer finish accepts is counted whole. A piece that waits
// longer than Stall calls cancel, which must end the stream send is
// blocked on: a receiver that stopped reading would otherwise hold the
// sender until the whole transfer's deadline. It returns the pieces and
// bytes the stream accepted, counted in s too.
func (s *Sent) Send(data []byte, size int, cancel func(), send func(piece []byte, first bool) error, finish func() error) (pieces, bytes int, err error) {
	return s.SendFrom(len(data), size, func(n int) ([]byte, error) {
		piece := data[:n:n]
		data = data[n:]
		return piece, nil
	}, cancel, send, finish)
}

// SendFrom is Send of total bytes that next hands out in order, n at a
// time (a snapshot read from its file piece by piece rather than held
// whole); an error from next ends the transfer before finish.
func (s *Sent) SendFrom(total, size int, next func(n int) ([]byte, error), cancel func(), send func(piece []byte, first bool) error, finish func() error) (pieces, bytes int, err error) {
	for left := total; err == nil && (pieces == 0 || left > 0); {
		var piece []byte
		if piece, err = next(min(size, left)); err != nil {
			break
		}
		if len(piece) == 0 && left > 0 {
			err = fmt.Errorf("chunk: the source ran dry with %d of %d bytes left", left, total)
			break
		}
		watchdog := time.AfterFunc(Stall, cancel)
		err = send(piece, pieces == 0)
		watchdog.Stop()
		if err != nil {
			break
		}
		pieces++
		bytes += len(piece)
		left -= len(piece)
		s.Piece(len(piece))
	}
	if err == nil {
		err = finish()
	}
	if err == nil {
		s.Transfer()
	}
	return pieces, bytes, err
}
