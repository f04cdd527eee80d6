package raftkv

import (
	"errors"
	"fmt"
)

// Errors a caller branches on. Each says whether the request may have taken
// effect; the client maps them to kv's definite / indeterminate classes.
var (
	// ErrNotLeader: this node is not the leader, so it did not propose the
	// request (definite). NotLeaderError carries the hint.
	ErrNotLeader = errors.New("not the leader")
	// ErrProposalDropped: raft refused the proposal before it entered the
	// log (a leader transfer in progress, say); definite.
	ErrProposalDropped = errors.New("proposal dropped by raft")
	// ErrOverloaded: the node's request queue was full; nothing was
	// proposed (definite).
	ErrOverloaded = errors.New("node overloaded")
	// ErrLeadershipLost: the request was proposed and then this node lost
	// leadership before it applied; it may still commit (indeterminate).
	ErrLeadershipLost = errors.New("leadership lost after proposing")
	// ErrStopped: the node stopped. Definite if the request had not been
	// proposed yet, indeterminate otherwise (the node says which by
	// wrapping it in an unknownError or not).
	ErrStopped = errors.New("node stopped")
	// ErrReadLost: a ReadIndex round got no answer in time; reads have no
	// effect, so it is always safe to retry.
	ErrReadLost = errors.New("read index round lost")
	// ErrRejected: a membership change was refused (an id in use or once
	// removed, an unknown id, another change in flight).
	ErrRejected = errors.New("membership change rejected")
	// ErrBadRequest: the request is malformed; definite.
	ErrBadRequest = errors.New("bad request")
	// ErrUnknown: the outcome of a write is unknown (indeterminate).
	ErrUnknown = errors.New("outcome unknown")
)

// ErrCorrupt: damage to the storage that is not a write torn by a crash —
// a bad log record with a valid one after it, a damaged snapshot or vote
// file, a log that lost a vote the vote file does not have. A torn tail of
// the log is a crash artefact and is cut; anything else is lost durable
// state (a vote, an acknowledged entry), and a node that carried on would
// break raft's safety, so it refuses to start. The error names the file
// and offset.
var ErrCorrupt = errors.New("raftkv: storage corrupt")

// NotLeaderError is ErrNotLeader with the node's guess of the leader.
type NotLeaderError struct {
	Leader uint64 // 0 when the node knows no leader
	Addr   string
}

func (e *NotLeaderError) Error() string {
	if e.Leader == 0 {
		return "not the leader (leader unknown)"
	}
	return fmt.Sprintf("not the leader (leader is %d at %s)", e.Leader, e.Addr)
}

func (e *NotLeaderError) Unwrap() error { return ErrNotLeader }

// unknown marks err as "may have been proposed": the node wraps every error
// that happens after a proposal entered the log.
func unknown(err error) error { return fmt.Errorf("%w: %w", ErrUnknown, err) }
