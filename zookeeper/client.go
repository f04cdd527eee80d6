package zookeeper

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"

	"github.com/go-zookeeper/zk"

	"github.com/chainraft/chainraft/kv"
)

// client is one workload client: kv.KV over one ZooKeeper session. One
// znode per key, a child of Root; the session's requests are FIFO, so a
// read then a versioned write of one operation are ordered.
//
// go-zookeeper's calls take no context: a request returns when the server
// answers, when the connection breaks, or after the session's receive
// timeout on a silent server. Each request therefore runs on a goroutine
// of its own (callCtx) and the operation returns at its deadline; the
// request goes on and its goroutine ends when it returns (Close makes
// every pending request return).
type client struct {
	c    *Cluster
	conn *zk.Conn
	sync bool
	home int

	// pending counts the request goroutines (callCtx); Close waits for
	// them.
	pending sync.WaitGroup

	closeOnce sync.Once
}

// LastNode implements workload.NodeReporter: the server the session is on.
func (cl *client) LastNode() string { return cl.conn.Server() }

// Close ends the session and waits for its pending requests.
func (cl *client) Close() error {
	cl.closeOnce.Do(func() {
		cl.conn.Close() // fails every pending request (ErrClosing)
		cl.pending.Wait()
		cl.c.forget(cl)
	})
	return nil
}

func path(key string) string { return Root + "/" + url.PathEscape(key) }

// errAbandoned: the operation's deadline came with a request in flight.
var errAbandoned = errors.New("zookeeper: deadline with the request in flight")

// callCtx runs one request and waits for it or ctx, whichever first. A
// request not started because ctx had ended returns ctx's error; one
// abandoned in flight returns errAbandoned (wrapping ctx's error) — it may
// still be executed.
func callCtx[T any](ctx context.Context, wg *sync.WaitGroup, f func() (T, error)) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		v, err := f()
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		return zero, fmt.Errorf("%w: %w", errAbandoned, ctx.Err())
	}
}

// read is getData in the client's read mode: after a sync (sync mode) or
// plain (local mode). ok false: the key does not exist.
func (cl *client) read(ctx context.Context, key string) (val string, version int32, ok bool, err error) {
	p := path(key)
	if cl.sync {
		if _, err := callCtx(ctx, &cl.pending, func() (string, error) { return cl.conn.Sync(p) }); err != nil {
			return "", 0, false, err
		}
	}
	type got struct {
		b  []byte
		st *zk.Stat
	}
	g, err := callCtx(ctx, &cl.pending, func() (got, error) {
		b, st, err := cl.conn.Get(p)
		return got{b, st}, err
	})
	if errors.Is(err, zk.ErrNoNode) {
		return "", 0, false, nil
	}
	if err != nil {
		return "", 0, false, err
	}
	return string(g.b), g.st.Version, true, nil
}

// Get implements kv.KV. A failed read is dropped by the checker whatever
// its class.
func (cl *client) Get(ctx context.Context, key string) (string, bool, error) {
	v, _, ok, err := cl.read(ctx, key)
	if err != nil {
		return "", false, fmt.Errorf("zookeeper: get: %w", err)
	}
	return v, ok, nil
}

// writeErr classifies the error of a write request (every write request of
// the same operation before it had certainly no effect):
//
//   - zk.ErrNoServer: go-zookeeper fails the requests it never sent with it
//     (flushUnsentRequests, after a round of every server refusing): no
//     effect, definite;
//   - a request not started because the deadline had passed: definite;
//   - anything else — the connection closed with the request sent or
//     queued, the session expired, the deadline with the request in
//     flight (errAbandoned) — may have been applied: unknown.
func writeErr(op string, err error) error {
	err = fmt.Errorf("zookeeper: %s: %w", op, err)
	switch {
	case errors.Is(err, zk.ErrNoServer):
		return kv.Definite(err)
	case errors.Is(err, errAbandoned):
		return err
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return kv.Definite(err)
	}
	return err
}

// readErr: a read failed inside a write operation before any write of it
// could apply (the earlier ones had failed definitely): definite.
func readErr(op string, err error) error {
	return kv.Definite(fmt.Errorf("zookeeper: %s's read: %w", op, err))
}

func acl() []zk.ACL { return zk.WorldACL(zk.PermAll) }

// Put implements kv.KV: setData at any version, or, when the znode does
// not exist, create it; a create that finds it created meanwhile goes back
// to setData. NoNode and NodeExists are answers with no effect, so the loop
// is safe.
func (cl *client) Put(ctx context.Context, key, value string) error {
	p := path(key)
	for {
		_, err := callCtx(ctx, &cl.pending, func() (*zk.Stat, error) { return cl.conn.Set(p, []byte(value), -1) })
		if err == nil {
			return nil
		}
		if !errors.Is(err, zk.ErrNoNode) {
			return writeErr("put", err)
		}
		_, err = callCtx(ctx, &cl.pending, func() (string, error) { return cl.conn.Create(p, []byte(value), 0, acl()) })
		if err == nil {
			return nil
		}
		if !errors.Is(err, zk.ErrNodeExists) {
			return writeErr("put", err)
		}
	}
}

// CAS implements kv.KV: getData (in the read mode), then setData at the
// version read. BadVersion means someone wrote in between and no effect:
// read again. An absent key never matches.
func (cl *client) CAS(ctx context.Context, key, expect, value string) (bool, error) {
	p := path(key)
	for {
		cur, version, ok, err := cl.read(ctx, key)
		if err != nil {
			return false, readErr("cas", err)
		}
		if !ok || cur != expect {
			return false, nil
		}
		_, err = callCtx(ctx, &cl.pending, func() (*zk.Stat, error) { return cl.conn.Set(p, []byte(value), version) })
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, zk.ErrBadVersion) && !errors.Is(err, zk.ErrNoNode) {
			return false, writeErr("cas", err)
		}
	}
}

// Append implements kv.KV: getData, then setData of old+value at the
// version read (create, when absent), again after BadVersion, NoNode or
// NodeExists, which had no effect.
func (cl *client) Append(ctx context.Context, key, value string) error {
	p := path(key)
	for {
		cur, version, ok, err := cl.read(ctx, key)
		if err != nil {
			return readErr("append", err)
		}
		if !ok {
			_, err = callCtx(ctx, &cl.pending, func() (string, error) { return cl.conn.Create(p, []byte(value), 0, acl()) })
			if err == nil {
				return nil
			}
			if !errors.Is(err, zk.ErrNodeExists) {
				return writeErr("append", err)
			}
			continue
		}
		_, err = callCtx(ctx, &cl.pending, func() (*zk.Stat, error) { return cl.conn.Set(p, []byte(cur+value), version) })
		if err == nil {
			return nil
		}
		if !errors.Is(err, zk.ErrBadVersion) && !errors.Is(err, zk.ErrNoNode) {
			return writeErr("append", err)
		}
	}
}
