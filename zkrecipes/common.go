package zkrecipes

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"
)

// Conn is the part of a ZooKeeper connection the recipes use. *zk.Conn
// satisfies it; so does the deterministic simulator's ZooKeeper (package
// sim), which is why the recipes take an interface: the chain store's
// master election runs in both.
type Conn interface {
	Create(path string, data []byte, flags int32, acl []zk.ACL) (string, error)
	Delete(path string, version int32) error
	Exists(path string) (bool, *zk.Stat, error)
	ExistsW(path string) (bool, *zk.Stat, <-chan zk.Event, error)
	Get(path string) ([]byte, *zk.Stat, error)
	GetW(path string) ([]byte, *zk.Stat, <-chan zk.Event, error)
	Children(path string) ([]string, *zk.Stat, error)
	Multi(ops ...any) ([]zk.MultiResponse, error)
	SessionID() int64
}

var _ Conn = (*zk.Conn)(nil)

// Sentinel errors callers branch on.
var (
	// ErrSessionLost: the session that owned this contender's znode ended
	// (expired, or the connection was closed), or the znode was deleted by
	// someone else: the place in the queue, or the lock, is gone.
	ErrSessionLost = errors.New("zkrecipes: session or znode lost")
	// ErrNotHeld: Unlock or Resign without holding.
	ErrNotHeld = errors.New("zkrecipes: not held")
	// ErrLost: Unlock found the lock already lost (its znode was gone).
	ErrLost = errors.New("zkrecipes: lock lost before release")
	// ErrNoLeader: Leader found no candidate.
	ErrNoLeader = errors.New("zkrecipes: no leader")
)

// releaseWait bounds Unlock/Resign: the delete is retried across
// connection losses this long, and the guard's notification awaited.
const releaseWait = 10 * time.Second

// Stats counts what one contender cost ZooKeeper.
type Stats struct {
	// Requests is every ZooKeeper request this contender issued (creates,
	// child listings, exists/get with or without a watch, deletes).
	Requests int64
	// Watches is the watch notifications delivered to this contender while
	// it waited for the lock (or leadership): the herd-effect measure.
	Watches int64
	// Guard is the notifications on the holder's own znode watch, the watch
	// that reports a lost lock: at most one per acquisition, in both recipes,
	// so it is kept out of Watches.
	Guard int64
	// Acquisitions is how many times Lock/Campaign succeeded.
	Acquisitions int64
}

type counters struct {
	requests, watches, guard, acquisitions atomic.Int64
}

func (c *counters) snapshot() Stats {
	return Stats{
		Requests:     c.requests.Load(),
		Watches:      c.watches.Load(),
		Guard:        c.guard.Load(),
		Acquisitions: c.acquisitions.Load(),
	}
}

// call issues one counted ZooKeeper request and waits for it or for ctx.
// go-zookeeper has no per-request deadline: a request queues while the
// connection is down and completes when it reconnects, or fails when the
// connection is closed. So the request runs in its own goroutine, owned by
// the connection (it ends when the request completes or the conn closes),
// and a cancelled ctx returns at once; after, may clean up what the request
// did once it completes (a create nobody waits for any more).
func call[T any](ctx context.Context, c *counters, f func() (T, error), after func(T, error)) (T, error) {
	c.requests.Add(1)
	type res struct {
		v   T
		err error
	}
	done := make(chan res, 1)
	go func() {
		v, err := f()
		done <- res{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		if after != nil {
			go func() {
				r := <-done
				after(r.v, r.err)
			}()
		}
		var zero T
		return zero, ctx.Err()
	}
}

// retriable errors leave the session intact: try again.
func retriable(err error) bool {
	return errors.Is(err, zk.ErrConnectionClosed) || errors.Is(err, zk.ErrNoServer)
}

// lostErr maps a session-ending error to ErrSessionLost.
func lostErr(what string, err error) error {
	if errors.Is(err, zk.ErrSessionExpired) || errors.Is(err, zk.ErrClosing) ||
		errors.Is(err, zk.ErrSessionMoved) {
		return fmt.Errorf("%w: %s: %w", ErrSessionLost, what, err)
	}
	return fmt.Errorf("zkrecipes: %s: %w", what, err)
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// backoff is the pause before retry k after a connection loss.
func backoff(k int) time.Duration {
	d := 20 * time.Millisecond << min(k, 6)
	return d
}

// ensurePath creates dir and its parents as persistent znodes.
func ensurePath(ctx context.Context, conn Conn, c *counters, dir string) error {
	if dir == "" || dir == "/" {
		return nil
	}
	parts := strings.Split(strings.Trim(dir, "/"), "/")
	p := ""
	for _, part := range parts {
		p += "/" + part
		for k := 0; ; k++ {
			_, err := call(ctx, c, func() (string, error) {
				return conn.Create(p, nil, zk.FlagPersistent, zk.WorldACL(zk.PermAll))
			}, nil)
			if err == nil || errors.Is(err, zk.ErrNodeExists) {
				break
			}
			if retriable(err) && k < 8 {
				if err := sleepCtx(ctx, backoff(k)); err != nil {
					return err
				}
				continue
			}
			return lostErr("create "+p, err)
		}
	}
	return nil
}

func parentOf(path string) string {
	i := strings.LastIndexByte(path, '/')
	if i <= 0 {
		return "/"
	}
	return path[:i]
}

func newGUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("zkrecipes: crypto/rand failed: " + err.Error())
	}
	return hex.EncodeToString(b[:])
}

// seqOf is the 10-digit sequence suffix ZooKeeper appends to sequential
// znodes, or -1.
func seqOf(name string) int64 {
	if len(name) < 10 {
		return -1
	}
	n, err := strconv.ParseInt(name[len(name)-10:], 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// guard watches a held znode and reports its loss. Its goroutine is owned by
// the holder and ends when the watch fires, which it always does: at the
// holder's own delete (release), at session expiry or connection close
// (EventNotWatching), or when someone else deletes the znode.
type guard struct {
	lost      chan struct{}
	done      chan struct{}
	releasing atomic.Bool
}

// watchHeld sets the guard watch on path (a get with a watch, which also
// returns the znode's Stat) and starts the guard goroutine.
func watchHeld(ctx context.Context, conn Conn, c *counters, path string) (*guard, *zk.Stat, error) {
	type got struct {
		st *zk.Stat
		ch <-chan zk.Event
	}
	for k := 0; ; k++ {
		r, err := call(ctx, c, func() (got, error) {
			_, st, ch, err := conn.GetW(path)
			return got{st, ch}, err
		}, nil)
		if retriable(err) && k < 8 {
			if err := sleepCtx(ctx, backoff(k)); err != nil {
				return nil, nil, err
			}
			continue
		}
		if errors.Is(err, zk.ErrNoNode) {
			return nil, nil, fmt.Errorf("%w: %s vanished as it was acquired", ErrSessionLost, path)
		}
		if err != nil {
			return nil, nil, lostErr("watch "+path, err)
		}
		g := &guard{lost: make(chan struct{}), done: make(chan struct{})}
		go func() {
			defer close(g.done)
			ev := <-r.ch
			c.guard.Add(1)
			if ev.Type == zk.EventNodeDeleted && g.releasing.Load() {
				return
			}
			// Anything else is a loss: deletion by someone else, session
			// expiry or close (EventNotWatching), or a write to the znode's
			// data, which nobody makes: the watch is spent and the holder
			// would be blind from then on, so it is reported rather than
			// silently ignored.
			close(g.lost)
		}()
		return g, r.st, nil
	}
}

// release deletes a held znode of the queue recipes (retrying across
// connection losses for up to releaseWait) and waits for its guard to see the
// deletion. Deleting by path with any version is safe there, even when a
// retry goes out on a new session after the acquiring one expired: the
// queue's znode names are unique (guid and sequence number), so the path can
// only name this holding's znode, or nothing. NaiveLock, whose path every
// holder shares, cannot use it (see NaiveLock.Unlock).
func release(conn Conn, c *counters, path string, g *guard) error {
	g.releasing.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), releaseWait)
	defer cancel()
	var err error
	for k := 0; ; k++ {
		_, err = call(ctx, c, func() (struct{}, error) { return struct{}{}, conn.Delete(path, -1) }, nil)
		if retriable(err) && ctx.Err() == nil {
			if sleepCtx(ctx, backoff(k)) == nil {
				continue
			}
		}
		break
	}
	switch {
	case err == nil:
		return awaitGuard(ctx, g, path)
	case errors.Is(err, zk.ErrNoNode):
		return fmt.Errorf("%w: %s was already gone", ErrLost, path)
	default:
		return lostErr("delete "+path, err)
	}
}

// awaitGuard waits, until ctx ends, for the guard of a znode just deleted
// to see the deletion, and reports ErrLost if it saw a loss first.
func awaitGuard(ctx context.Context, g *guard, path string) error {
	select {
	case <-g.done:
	case <-ctx.Done():
	}
	select {
	case <-g.lost:
		// The znode was lost before our delete found it.
		return fmt.Errorf("%w: %s", ErrLost, path)
	default:
		return nil
	}
}

// neverClosed is the Lost channel before any acquisition.
var neverClosed = make(chan struct{})

// holder state shared by the recipes' public types.
type holder struct {
	mu    sync.Mutex
	guard *guard
	held  bool
	token int64
}

func (h *holder) lost() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.guard == nil {
		return neverClosed
	}
	return h.guard.lost
}

// heldAndNotLost reports a live holding. A holding that was lost is
// forgotten, so the contender may try again (after an expiry, say) without
// first calling Unlock or Resign.
func (h *holder) heldAndNotLost() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.held {
		return false
	}
	select {
	case <-h.guard.lost:
		h.held = false
		return false
	default:
		return true
	}
}
