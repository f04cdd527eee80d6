package zkrecipes

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/go-zookeeper/zk"
)

// Election is one candidate in the leader-election recipe: an
// ephemeral-sequential znode under dir carrying the candidate's data; the
// lowest sequence number leads; each candidate watches only the next lower
// znode. An Election is driven by one goroutine; Lost, Path and Stats may be
// read from any.
type Election struct{ q *queue }

// NewElection is a candidate under dir, announcing data (say, its address).
func NewElection(conn Conn, dir string, data []byte) *Election {
	return &Election{q: newQueue(conn, dir, "n_", data)}
}

// Campaign blocks until this candidate leads or ctx ends (then it withdraws
// its znode). Leading means only that this candidate's znode is the lowest:
// the recipe warns that the others may not know yet. Anything the leader
// writes should be guarded by a Multi with a CheckVersionRequest on Path(),
// which fails once the znode is gone (deposed leader, expired session).
func (e *Election) Campaign(ctx context.Context) error {
	_, err := e.q.acquire(ctx)
	return err
}

// Path is the candidate's own znode, valid while it campaigns or leads.
func (e *Election) Path() string { p, _ := e.q.ownPath(); return p }

// Seq is the leader's sequence number: larger for every later leader, so it
// serves as a leadership epoch or fencing token.
func (e *Election) Seq() int64 {
	e.q.mu.Lock()
	defer e.q.mu.Unlock()
	return e.q.token
}

// Leading reports whether this candidate won and has not resigned or been
// seen to lose since.
func (e *Election) Leading() bool {
	e.q.mu.Lock()
	held, g := e.q.held, e.q.guard
	e.q.mu.Unlock()
	if !held {
		return false
	}
	select {
	case <-g.lost:
		return false
	default:
		return true
	}
}

// Resign gives up leadership (or withdraws a candidacy) by deleting the
// znode; the next candidate, and only it, is notified.
func (e *Election) Resign() error {
	err := e.q.releaseHeld()
	if errors.Is(err, ErrNotHeld) {
		return nil
	}
	return err
}

// Lost is closed when leadership won by the last Campaign is lost without
// Resign: session expired, connection closed, or znode deleted.
func (e *Election) Lost() <-chan struct{} { return e.q.lost() }

// Stats is what this candidate cost ZooKeeper so far.
func (e *Election) Stats() Stats { return e.q.st.snapshot() }

// Leader reads who leads the election under dir: the lowest-sequence
// candidate's znode path and data. It reads the connected server's view
// (call conn.Sync(dir) first for an up-to-date one).
func Leader(conn Conn, dir string) (path string, data []byte, err error) {
	dir = strings.TrimRight(dir, "/")
	for range 3 {
		kids, _, err := conn.Children(dir)
		if errors.Is(err, zk.ErrNoNode) {
			return "", nil, ErrNoLeader
		}
		if err != nil {
			return "", nil, fmt.Errorf("zkrecipes: list %s: %w", dir, err)
		}
		cands := kids[:0]
		for _, k := range kids {
			if seqOf(k) >= 0 {
				cands = append(cands, k)
			}
		}
		if len(cands) == 0 {
			return "", nil, ErrNoLeader
		}
		sortBySeq(cands)
		p := dir + "/" + cands[0]
		data, _, err := conn.Get(p)
		if errors.Is(err, zk.ErrNoNode) {
			continue // it resigned meanwhile: look again
		}
		if err != nil {
			return "", nil, fmt.Errorf("zkrecipes: get %s: %w", p, err)
		}
		return p, data, nil
	}
	return "", nil, fmt.Errorf("%w: leaders under %s kept changing", ErrNoLeader, dir)
}
