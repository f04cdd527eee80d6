package zkrecipes

import (
	"context"
	"errors"
	"fmt"

	"github.com/go-zookeeper/zk"
)

// Lock is one contender for the lock recipe's lock (ephemeral-sequential
// znodes under dir, each waiter watching only its predecessor). A Lock is
// used by one goroutine; Lost and Stats may be read from any.
type Lock struct{ q *queue }

// NewLock is a contender for the lock at dir on conn's session.
func NewLock(conn *zk.Conn, dir string) *Lock {
	return &Lock{q: newQueue(conn, dir, "lock-", nil)}
}

// Lock blocks until the lock is held or ctx ends. The token is the znode's
// sequence number: a later holder always has a larger one (ZooKeeper numbers
// the children of dir from one counter), so a resource that refuses tokens
// older than the newest it has seen refuses a deposed holder.
func (l *Lock) Lock(ctx context.Context) (token int64, err error) { return l.q.acquire(ctx) }

// Unlock deletes the contender's znode, waking its successor only. ErrLost
// means the lock had already been lost (the session expired).
func (l *Lock) Unlock() error { return l.q.releaseHeld() }

// Lost is closed when the lock held since the last successful Lock is lost
// without Unlock: the session expired (reported when the client reconnects),
// the connection was closed, or the znode was deleted. Before the first Lock
// it is a channel that never closes.
func (l *Lock) Lost() <-chan struct{} { return l.q.lost() }

// Path is the contender's znode while it waits or holds, else "".
func (l *Lock) Path() string { p, _ := l.q.ownPath(); return p }

// Stats is what this contender cost ZooKeeper so far.
func (l *Lock) Stats() Stats { return l.q.st.snapshot() }

// NaiveLock is the lock the recipes warn against: every contender tries to
// create one fixed ephemeral znode, and on NodeExists sets an exists watch
// and tries again when it fires. Each release wakes every waiter (the herd
// effect); it exists here to be measured next to Lock.
type NaiveLock struct {
	conn      *zk.Conn
	path      string
	st        counters
	holder    holder
	dirReady  bool
	heldStat  zk.Stat
	heldOwner int64
}

// NewNaiveLock is a contender for the naive lock znode path.
func NewNaiveLock(conn *zk.Conn, path string) *NaiveLock {
	return &NaiveLock{conn: conn, path: path}
}

// Lock blocks until the lock is held or ctx ends. The token is the lock
// znode's creation zxid (Czxid): every acquisition creates the znode anew in
// a later transaction, so later holders have larger tokens.
func (n *NaiveLock) Lock(ctx context.Context) (token int64, err error) {
	if n.holder.heldAndNotLost() {
		return 0, fmt.Errorf("zkrecipes: %s already held by this contender", n.path)
	}
	if !n.dirReady {
		if err := ensurePath(ctx, n.conn, &n.st, parentOf(n.path)); err != nil {
			return 0, err
		}
		n.dirReady = true
	}
	for k := 0; ; {
		_, err := call(ctx, &n.st, func() (string, error) {
			return n.conn.Create(n.path, nil, zk.FlagEphemeral, zk.WorldACL(zk.PermAll))
		}, func(_ string, err error) {
			if err == nil {
				_ = n.conn.Delete(n.path, -1) // abandoned by ctx: release what it took
			}
		})
		switch {
		case err == nil:
			return n.acquired(ctx)
		case ctx.Err() != nil:
			return 0, ctx.Err()
		case errors.Is(err, zk.ErrNodeExists):
			if err := n.waitDeleted(ctx); err != nil {
				return 0, err
			}
		case errors.Is(err, zk.ErrNoNode):
			if err := ensurePath(ctx, n.conn, &n.st, parentOf(n.path)); err != nil {
				return 0, err
			}
		case retriable(err) && k < 8:
			// The create may have happened: the znode's ephemeral owner says.
			k++
			if err := sleepCtx(ctx, backoff(k)); err != nil {
				return 0, err
			}
			ok, st, err := n.exists(ctx)
			if err == nil && ok && st.EphemeralOwner == n.conn.SessionID() {
				return n.acquired(ctx)
			}
		default:
			return 0, lostErr("create "+n.path, err)
		}
	}
}

func (n *NaiveLock) exists(ctx context.Context) (bool, *zk.Stat, error) {
	type res struct {
		ok bool
		st *zk.Stat
	}
	r, err := call(ctx, &n.st, func() (res, error) {
		ok, st, err := n.conn.Exists(n.path)
		return res{ok, st}, err
	}, nil)
	return r.ok, r.st, err
}

// acquired sets the guard watch, whose Stat gives the token, and checks the
// znode really is this session's.
func (n *NaiveLock) acquired(ctx context.Context) (int64, error) {
	g, st, err := watchHeld(ctx, n.conn, &n.st, n.path)
	if err != nil {
		return 0, err
	}
	if st.EphemeralOwner != n.conn.SessionID() {
		g.releasing.Store(true) // not ours: its deletion is not our loss
		return 0, fmt.Errorf("%w: %s belongs to session %#x, not %#x", ErrSessionLost, n.path, st.EphemeralOwner, n.conn.SessionID())
	}
	n.holder.mu.Lock()
	n.holder.guard = g
	n.holder.held = true
	n.holder.token = st.Czxid
	n.heldStat = *st
	n.holder.mu.Unlock()
	n.st.acquisitions.Add(1)
	return st.Czxid, nil
}

// waitDeleted is the naive wait: an exists watch on the lock znode; every
// waiter holds one, so every release notifies them all.
func (n *NaiveLock) waitDeleted(ctx context.Context) error {
	type res struct {
		ok bool
		ch <-chan zk.Event
	}
	r, err := call(ctx, &n.st, func() (res, error) {
		ok, _, ch, err := n.conn.ExistsW(n.path)
		return res{ok, ch}, err
	}, nil)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if retriable(err) {
			return nil // try the create again
		}
		return lostErr("exists "+n.path, err)
	}
	if !r.ok {
		// Released between our create and our exists. The exists watch now
		// waits for the next creation, which is soon (ours or another's):
		// count that notification too, it is part of the naive lock's cost.
		go func() { // owned by the conn: the watch fires on creation or session end
			if ev := <-r.ch; ev.Type != zk.EventNotWatching {
				n.st.watches.Add(1)
			}
		}()
		return nil
	}
	select {
	case ev := <-r.ch:
		n.st.watches.Add(1)
		if ev.Type == zk.EventNotWatching {
			return lostErr("waiting on "+n.path, ev.Err)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Unlock deletes the lock znode if this contender still holds it. The Czxid
// is checked first so a holder whose session expired does not delete its
// successor's znode; a window remains between that check and the delete
// (the session expiring in between), which only fencing tokens close.
func (n *NaiveLock) Unlock() error {
	n.holder.mu.Lock()
	held, g, czxid := n.holder.held, n.holder.guard, n.heldStat.Czxid
	n.holder.held = false
	n.holder.mu.Unlock()
	if !held {
		return ErrNotHeld
	}
	select {
	case <-g.lost:
		return fmt.Errorf("%w: %s", ErrLost, n.path)
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), releaseWait)
	ok, st, err := n.exists(ctx)
	cancel()
	if err == nil && (!ok || st.Czxid != czxid) {
		g.releasing.Store(true)
		return fmt.Errorf("%w: %s was re-created by another holder", ErrLost, n.path)
	}
	return release(n.conn, &n.st, n.path, g)
}

// Lost is closed when the lock held since the last successful Lock is lost
// without Unlock (see Lock.Lost).
func (n *NaiveLock) Lost() <-chan struct{} { return n.holder.lost() }

// Stats is what this contender cost ZooKeeper so far.
func (n *NaiveLock) Stats() Stats { return n.st.snapshot() }
