package chain

import "errors"

// ErrStopped is the reason given to requests that arrive while the node
// stops (their outcome is unknown: they may have been proposed).
var ErrStopped = errors.New("chain: node stopped")

// ErrCorrupt: the node's log has a bad record with good data after it (not
// a write torn by a crash), or a record it cannot place, or a snapshot does
// not decode. Dropping the rest
// would silently forget entries this node made durable and acknowledged, so
// the node refuses to start instead.
var ErrCorrupt = errors.New("chain: storage corrupt")

// Sentinel errors a caller of the client may branch on; each is wrapped with
// the node's explanation.
var (
	// ErrWrongEpoch: the node's configuration differs from the client's.
	ErrWrongEpoch = errors.New("chain: wrong epoch")
	// ErrNotHead: a write reached a node that is not the chain's head.
	ErrNotHead = errors.New("chain: not the head")
	// ErrNotTail: a read reached a node that is not the chain's tail.
	ErrNotTail = errors.New("chain: not the tail")
	// ErrUnavailable: the node refused before doing anything (no session,
	// a tail not yet synced, no configuration yet).
	ErrUnavailable = errors.New("chain: unavailable")
	// ErrUnknown: the node accepted the write but cannot tell its outcome.
	ErrUnknown = errors.New("chain: outcome unknown")
)
