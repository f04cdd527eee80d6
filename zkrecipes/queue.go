package zkrecipes

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/go-zookeeper/zk"
)

// queue is the ephemeral-sequential recipe shared by Election and Lock: a
// contender creates dir/_c_<guid>-<name><seq>, and the lowest sequence
// number holds. Each contender watches only its predecessor, so a release
// wakes exactly one waiter. One goroutine at a time drives a queue.
type queue struct {
	conn Conn
	dir  string
	name string
	data []byte
	st   counters
	holder

	guid     string
	dirReady bool
	// path and seq are the own znode while enqueued; written by the driving
	// goroutine under holder.mu, read by others (Path) under it.
	path string
	seq  int64
}

func (q *queue) ownPath() (string, int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.path, q.seq
}

func (q *queue) setOwn(p string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.path, q.seq = p, -1
	if p != "" {
		q.seq = seqOf(p)
		if q.seq < 0 {
			panic(fmt.Sprintf("zkrecipes: sequential znode %q without a sequence suffix", p))
		}
	}
}

func newQueue(conn Conn, dir, name string, data []byte) *queue {
	return &queue{conn: conn, dir: strings.TrimRight(dir, "/"), name: name, data: data, guid: newGUID()}
}

func (q *queue) prefix() string { return "_c_" + q.guid + "-" }

// acquire enqueues (if not already) and waits to be first.
func (q *queue) acquire(ctx context.Context) (int64, error) {
	if q.heldAndNotLost() {
		return 0, fmt.Errorf("zkrecipes: %s already held by this contender", q.dir)
	}
	q.mu.Lock()
	if q.guard != nil && !q.held && q.path != "" {
		select {
		case <-q.guard.lost:
			// The znode of a lost holding is gone (or going with its
			// session): queue again with a new one.
			q.path, q.seq = "", -1
		default:
		}
	}
	q.mu.Unlock()
	if !q.dirReady {
		if err := ensurePath(ctx, q.conn, &q.st, q.dir); err != nil {
			return 0, err
		}
		q.dirReady = true
	}
	if p, _ := q.ownPath(); p == "" {
		if err := q.create(ctx); err != nil {
			return 0, err
		}
	}
	if err := q.waitFirst(ctx); err != nil {
		q.withdraw()
		return 0, err
	}
	own, seq := q.ownPath()
	g, _, err := watchHeld(ctx, q.conn, &q.st, own)
	if err != nil {
		q.withdraw()
		return 0, err
	}
	q.mu.Lock()
	q.guard = g
	q.held = true
	q.token = seq
	q.mu.Unlock()
	q.st.acquisitions.Add(1)
	return seq, nil
}

// create makes the contender's znode. After a connection loss the create
// may or may not have happened: the guid in the name lets us find it
// (ZOOKEEPER-1262), instead of leaving an orphan that would block the queue
// until the session ends.
func (q *queue) create(ctx context.Context) error {
	base := q.dir + "/" + q.prefix() + q.name
	for k := 0; ; k++ {
		p, err := call(ctx, &q.st, func() (string, error) {
			return q.conn.Create(base, q.data, zk.FlagEphemeralSequential, zk.WorldACL(zk.PermAll))
		}, func(p string, err error) {
			// Abandoned by a cancelled ctx: take back what it made.
			if err == nil {
				_ = q.conn.Delete(p, -1)
			} else if retriable(err) {
				if kids, _, err := q.conn.Children(q.dir); err == nil {
					for _, kid := range kids {
						if strings.HasPrefix(kid, q.prefix()) {
							_ = q.conn.Delete(q.dir+"/"+kid, -1)
						}
					}
				}
			}
		})
		if err == nil {
			q.setOwn(p)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, zk.ErrNoNode) {
			if err := ensurePath(ctx, q.conn, &q.st, q.dir); err != nil {
				return err
			}
			continue
		}
		if !retriable(err) || k >= 8 {
			return lostErr("create under "+q.dir, err)
		}
		if err := sleepCtx(ctx, backoff(k)); err != nil {
			return err
		}
		kids, err := q.children(ctx)
		if err != nil {
			continue
		}
		for _, kid := range kids {
			if strings.HasPrefix(kid, q.prefix()) {
				q.setOwn(q.dir + "/" + kid)
				return nil
			}
		}
	}
}

func (q *queue) children(ctx context.Context) ([]string, error) {
	return call(ctx, &q.st, func() ([]string, error) {
		kids, _, err := q.conn.Children(q.dir)
		return kids, err
	}, nil)
}

// sortBySeq orders children by sequence number; the guid prefixes make
// name order meaningless.
func sortBySeq(kids []string) {
	sort.Slice(kids, func(i, j int) bool { return seqOf(kids[i]) < seqOf(kids[j]) })
}

// waitFirst is steps 2-5 of the recipe: list without a watch, and if
// someone is ahead, watch only the next lower znode.
func (q *queue) waitFirst(ctx context.Context) error {
	ownPath, _ := q.ownPath()
	own := ownPath[strings.LastIndexByte(ownPath, '/')+1:]
	for k := 0; ; {
		kids, err := q.children(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if retriable(err) && k < 8 {
				k++
				if err := sleepCtx(ctx, backoff(k)); err != nil {
					return err
				}
				continue
			}
			return lostErr("list "+q.dir, err)
		}
		sortBySeq(kids)
		idx := -1
		for i, kid := range kids {
			if kid == own {
				idx = i
				break
			}
		}
		if idx < 0 {
			// Our ephemeral is gone: the session expired (go-zookeeper has
			// quietly made a new one) or someone deleted it.
			return fmt.Errorf("%w: %s no longer exists", ErrSessionLost, ownPath)
		}
		if idx == 0 {
			return nil
		}
		pred := q.dir + "/" + kids[idx-1]
		// A get with a watch, not exists: on a vanished predecessor exists
		// would leave a creation watch behind that never fires.
		ch, err := call(ctx, &q.st, func() (<-chan zk.Event, error) {
			_, _, ch, err := q.conn.GetW(pred)
			return ch, err
		}, nil)
		if errors.Is(err, zk.ErrNoNode) {
			continue // predecessor gone: list again
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if retriable(err) && k < 8 {
				k++
				if err := sleepCtx(ctx, backoff(k)); err != nil {
					return err
				}
				continue
			}
			return lostErr("watch "+pred, err)
		}
		k = 0
		select {
		case ev := <-ch:
			q.st.watches.Add(1)
			if ev.Type == zk.EventNotWatching {
				return lostErr("waiting on "+pred, ev.Err)
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// withdraw deletes the contender's znode after a failed or cancelled
// acquire, in the background if the connection is slow; a znode left
// behind would block everyone queued after it until the session ends.
func (q *queue) withdraw() {
	p, _ := q.ownPath()
	q.setOwn("")
	if p == "" {
		return
	}
	q.st.requests.Add(1)
	go func() { _ = q.conn.Delete(p, -1) }() // owned by the conn: ends when the request does
}

// releaseHeld gives up a held position.
func (q *queue) releaseHeld() error {
	q.mu.Lock()
	held, g, p := q.held, q.guard, q.path
	q.held = false
	q.mu.Unlock()
	if !held {
		if p != "" {
			q.withdraw()
			return nil
		}
		return ErrNotHeld
	}
	q.setOwn("")
	return release(q.conn, &q.st, p, g)
}
