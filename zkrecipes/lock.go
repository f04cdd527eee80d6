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
func NewLock(conn Conn, dir string) *Lock {
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
//
// Unlike the recipe's znodes, whose names are unique, the naive lock's name
// is the same for every holder, so "delete path" may delete a successor's
// lock. Each acquisition therefore creates, in the same Multi as the lock
// znode, an ephemeral owner marker with a name of its own, and Unlock
// deletes the lock only in a Multi that first checks the marker exists (see
// Unlock).
type NaiveLock struct {
	conn     Conn
	path     string
	st       counters
	holder   holder
	dirReady bool
	// Of the current holding, set by acquired under holder.mu: the owner
	// marker created with the lock znode, the session both belong to, and
	// the lock znode's Stat when it was acquired.
	marker   string
	session  int64
	heldStat zk.Stat
}

// NewNaiveLock is a contender for the naive lock znode path.
func NewNaiveLock(conn Conn, path string) *NaiveLock {
	return &NaiveLock{conn: conn, path: path}
}

// markerPath names a fresh owner marker for one acquisition attempt.
func (n *NaiveLock) markerPath() string { return n.path + ".owner-" + newGUID() }

// createOps creates the lock znode and the attempt's owner marker
// atomically: both ephemeral, so both belong to one session and live exactly
// as long as it (or until Unlock deletes them together).
func (n *NaiveLock) createOps(marker string) []any {
	acl := zk.WorldACL(zk.PermAll)
	return []any{
		&zk.CreateRequest{Path: n.path, Flags: zk.FlagEphemeral, Acl: acl},
		&zk.CreateRequest{Path: marker, Flags: zk.FlagEphemeral, Acl: acl},
	}
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
		marker := n.markerPath()
		_, err := call(ctx, &n.st, func() ([]zk.MultiResponse, error) {
			return n.conn.Multi(n.createOps(marker)...)
		}, func(_ []zk.MultiResponse, err error) {
			if err == nil { // abandoned by ctx: release what it took, guarded as Unlock is
				_, _ = n.conn.Multi(n.releaseOps(marker, -1)...)
			}
		})
		switch {
		case err == nil:
			return n.acquired(ctx, marker)
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
			// The Multi may have happened: the attempt's marker says.
			k++
			if err := sleepCtx(ctx, backoff(k)); err != nil {
				return 0, err
			}
			ok, _, err := n.exists(ctx, marker)
			if err == nil && ok {
				return n.acquired(ctx, marker)
			}
		default:
			return 0, lostErr("create "+n.path, err)
		}
	}
}

func (n *NaiveLock) exists(ctx context.Context, path string) (bool, *zk.Stat, error) {
	type res struct {
		ok bool
		st *zk.Stat
	}
	r, err := call(ctx, &n.st, func() (res, error) {
		ok, st, err := n.conn.Exists(path)
		return res{ok, st}, err
	}, nil)
	return r.ok, r.st, err
}

// acquired sets the guard watch, whose Stat gives the token, and checks the
// znode really is this session's.
func (n *NaiveLock) acquired(ctx context.Context, marker string) (int64, error) {
	g, st, err := watchHeld(ctx, n.conn, &n.st, n.path)
	if err != nil {
		return 0, err
	}
	if sess := n.conn.SessionID(); st.EphemeralOwner != sess {
		g.releasing.Store(true) // not ours: its deletion is not our loss
		return 0, fmt.Errorf("%w: %s belongs to session %#x, not %#x", ErrSessionLost, n.path, st.EphemeralOwner, sess)
	}
	n.holder.mu.Lock()
	n.holder.guard = g
	n.holder.held = true
	n.holder.token = st.Czxid
	n.heldStat = *st
	n.marker = marker
	n.session = st.EphemeralOwner
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

// releaseOps deletes the lock znode only if the holding's owner marker
// still exists: the marker is an ephemeral of the acquiring session with a
// name no one else uses, so it exists only while that session lives, and
// while it lives the lock znode at path is the one created with it (a
// session's ephemeral outlives nothing but an explicit delete, and only
// this guarded Multi deletes it). version is the lock znode's data version
// at acquisition (-1: any); nobody writes the lock's data, so it is 0 for
// every holder and protects nothing by itself: the marker does.
func (n *NaiveLock) releaseOps(marker string, version int32) []any {
	return []any{
		&zk.CheckVersionRequest{Path: marker, Version: 0},
		&zk.DeleteRequest{Path: n.path, Version: version},
		&zk.DeleteRequest{Path: marker, Version: 0},
	}
}

// Unlock releases the lock if this contender still holds it, and otherwise
// deletes nothing and returns ErrLost.
//
// Why not exists-then-delete: a holder resumed after its session expired
// calls Unlock before go-zookeeper has heard of the expiry. Its request
// fails when the dead connection is found closed; a retry is queued while
// go-zookeeper reconnects, learns the session expired, and opens a new one,
// and go-zookeeper sends queued requests on that new session. A
// Delete(path, -1) sent there deletes the successor's lock znode (same name,
// same version 0), and a third contender takes the lock while the successor
// is inside its critical section. No client-side check closes this, since
// the session can change between any check and the send. So the delete is a
// Multi guarded by the acquisition's own owner marker, checked by ZooKeeper
// atomically with the delete: on any session but the acquiring one it fails
// with NoNode and deletes nothing. Unlock also gives up at once when the
// session id already differs from the acquiring one.
func (n *NaiveLock) Unlock() error {
	n.holder.mu.Lock()
	held, g := n.holder.held, n.holder.guard
	marker, session, version := n.marker, n.session, n.heldStat.Version
	n.holder.held = false
	n.holder.mu.Unlock()
	if !held {
		return ErrNotHeld
	}
	select {
	case <-g.lost:
		n.dropMarker(marker)
		return fmt.Errorf("%w: %s", ErrLost, n.path)
	default:
	}
	if now := n.conn.SessionID(); now != session {
		return fmt.Errorf("%w: %s: the acquiring session %#x ended (now %#x): nothing deleted", ErrLost, n.path, session, now)
	}
	g.releasing.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), releaseWait)
	defer cancel()
	var err error
	for k := 0; ; k++ {
		if now := n.conn.SessionID(); now != session {
			return fmt.Errorf("%w: %s: the acquiring session %#x ended (now %#x) before the release: nothing deleted", ErrLost, n.path, session, now)
		}
		_, err = call(ctx, &n.st, func() ([]zk.MultiResponse, error) {
			return n.conn.Multi(n.releaseOps(marker, version)...)
		}, nil)
		if retriable(err) && ctx.Err() == nil {
			if sleepCtx(ctx, backoff(k)) == nil {
				continue
			}
		}
		break
	}
	if err == nil {
		return awaitGuard(ctx, g, n.path)
	}
	// The Multi reports its first failing op's error: the marker's check
	// comes first, so NoNode there means the session ended; NoNode from the
	// lock's delete (marker present) means someone deleted our lock znode.
	switch {
	case errors.Is(err, zk.ErrNoNode), errors.Is(err, zk.ErrBadVersion):
		n.dropMarker(marker)
		return fmt.Errorf("%w: %s: not released (%w): the acquiring session ended or the lock znode was deleted; nothing deleted", ErrLost, n.path, err)
	default:
		return lostErr("release "+n.path, err)
	}
}

// dropMarker deletes a lost holding's owner marker in the background when
// the session still lives (the lock znode was deleted by someone else), so
// it does not outlive the holding; when the session ended it is gone
// already and the delete finds nothing.
func (n *NaiveLock) dropMarker(marker string) {
	n.st.requests.Add(1)
	go func() { _ = n.conn.Delete(marker, 0) }() // owned by the conn: ends when the request does
}

// Lost is closed when the lock held since the last successful Lock is lost
// without Unlock (see Lock.Lost).
func (n *NaiveLock) Lost() <-chan struct{} { return n.holder.lost() }

// Stats is what this contender cost ZooKeeper so far.
func (n *NaiveLock) Stats() Stats { return n.st.snapshot() }
