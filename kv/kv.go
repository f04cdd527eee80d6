package kv

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
)

// KV is what the harness drives. Implementations must be safe for use by one
// goroutine at a time; the harness gives each workload client its own KV.
type KV interface {
	// Get returns the key's value and whether the key exists: an absent key
	// is not the same as an empty value.
	Get(ctx context.Context, key string) (value string, found bool, err error)
	// Put sets the key's value.
	Put(ctx context.Context, key, value string) error
	// Append appends value to the key's value, creating the key if absent.
	Append(ctx context.Context, key, value string) error
	// CAS sets the key to value if it currently holds expect. An absent key
	// never matches, not even an empty expect.
	CAS(ctx context.Context, key, expect, value string) (swapped bool, err error)
}

// ErrDefinite marks an error after which the operation certainly had no
// effect. Every error that does not wrap it is indeterminate.
var ErrDefinite = errors.New("operation had no effect")

// Definite wraps err as definite. It returns nil for a nil err.
func Definite(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrDefinite) {
		return err
	}
	return &definiteError{err: err}
}

// Definitef builds a definite error from a format.
func Definitef(format string, args ...any) error {
	return Definite(fmt.Errorf(format, args...))
}

type definiteError struct{ err error }

func (e *definiteError) Error() string { return e.err.Error() + " (definite: no effect)" }

// Is makes errors.Is(err, ErrDefinite) true while Unwrap keeps the cause
// reachable for callers that branch on it.
func (e *definiteError) Is(target error) bool { return target == ErrDefinite }
func (e *definiteError) Unwrap() error        { return e.err }

// IsDefinite reports whether err certainly had no effect.
func IsDefinite(err error) bool { return err != nil && errors.Is(err, ErrDefinite) }

// RequestID names one request for exactly-once application: the client that
// sent it and the client's sequence number, starting at 1.
type RequestID struct {
	Client uint64
	Seq    uint64
}

func (id RequestID) String() string { return fmt.Sprintf("%x/%d", id.Client, id.Seq) }

// NewClientID returns a random non-zero client id. Random rather than counted
// so that ids never collide across harness processes, restarts and stores:
// a reused id would make a store's dedup table swallow a new request.
func NewClientID() uint64 {
	var b [8]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			panic(fmt.Sprintf("kv: reading random client id: %v", err))
		}
		if id := binary.LittleEndian.Uint64(b[:]); id != 0 {
			return id
		}
	}
}

// Sequencer hands out the request ids of one client: a fixed client id and an
// increasing sequence. A retry reuses the id it was first given.
type Sequencer struct {
	client uint64
	seq    atomic.Uint64
}

// NewSequencer returns a sequencer with a fresh random client id.
func NewSequencer() *Sequencer { return &Sequencer{client: NewClientID()} }

// Next returns the id of a new request.
func (s *Sequencer) Next() RequestID { return RequestID{Client: s.client, Seq: s.seq.Add(1)} }

// Client is the sequencer's client id.
func (s *Sequencer) Client() uint64 { return s.client }
