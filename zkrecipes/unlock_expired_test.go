package zkrecipes

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// freezer is a TCP proxy to ZooKeeper that can freeze its clients the way
// SIGSTOP freezes a lock holder: the server hears nothing more (the upstream
// sides are closed) while the client's side of the connection stays open and
// swallows what it sends, so a request the client issues is written and
// awaits a reply that never comes. New connections are held unanswered until
// thaw, which resets them all, as the server's side of a stopped process's
// connections is found closed when it resumes.
type freezer struct {
	ln       net.Listener
	upstream string
	mu       sync.Mutex
	frozen   bool
	held     []net.Conn // client sides, reset at thaw
	ups      []net.Conn // upstream sides, closed at freeze
	wg       sync.WaitGroup
}

func newFreezer(t *testing.T, upstream string) *freezer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	f := &freezer{ln: ln, upstream: upstream}
	f.wg.Add(1)
	go f.accept() // owned by the test: ends when Cleanup closes the listener
	t.Cleanup(func() {
		ln.Close()
		f.mu.Lock()
		for _, c := range append(f.held, f.ups...) {
			c.Close()
		}
		f.mu.Unlock()
		f.wg.Wait()
	})
	return f
}

func (f *freezer) addr() string { return f.ln.Addr().String() }

func (f *freezer) accept() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.mu.Lock()
		f.held = append(f.held, c)
		if f.frozen {
			f.wg.Add(1)
			go func() { defer f.wg.Done(); io.Copy(io.Discard, c) }() // swallow until reset
			f.mu.Unlock()
			continue
		}
		u, err := net.DialTimeout("tcp", f.upstream, time.Second)
		if err != nil {
			f.mu.Unlock()
			c.Close()
			continue
		}
		f.ups = append(f.ups, u)
		f.mu.Unlock()
		f.wg.Add(2)
		go func() { // client -> server; once frozen, swallow
			defer f.wg.Done()
			io.Copy(u, c)
			io.Copy(io.Discard, c)
		}()
		go func() { defer f.wg.Done(); io.Copy(c, u) }() // server -> client
	}
}

func (f *freezer) freeze() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.frozen = true
	for _, u := range f.ups {
		u.Close()
	}
	f.ups = nil
}

func (f *freezer) thaw() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.frozen = false
	for _, c := range f.held {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0) // a reset, as a resumed process finds
		}
		c.Close()
	}
	f.held = nil
}

// TestUnlockAfterExpiryKeepsSuccessor is the regression test for a deposed
// holder's Unlock removing its successor's lock. The holder is frozen with
// its Unlock in flight; its first request fails when go-zookeeper gives up
// on the silent connection, while the server expires the session and the
// successor takes the lock. Unlock's retry is queued while go-zookeeper
// reconnects, and go-zookeeper sends it on the new session it opens after
// hearing of the expiry. A NaiveLock that retried Delete(path, -1) there
// removed the successor's znode (lockload runs showed a third worker
// entering the successor's critical section). Unlock must report ErrLost
// and leave the successor holding.
func TestUnlockAfterExpiryKeepsSuccessor(t *testing.T) {
	addrs := zkAddrs(t)
	for _, kind := range []string{"naive", "recipe"} {
		t.Run(kind, func(t *testing.T) {
			path := testPath(t, kind)
			fz := newFreezer(t, addrs[0])
			const session = 1500 * time.Millisecond
			hConn := connect(t, []string{fz.addr()}, session)
			holder := newLocker(kind, hConn, path)
			succ := newLocker(kind, connect(t, addrs, 5*time.Second), path)
			third := newLocker(kind, connect(t, addrs, 5*time.Second), path)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			tok1, err := holder.Lock(ctx)
			require.NoError(t, err)
			oldSession := hConn.SessionID()

			fz.freeze()
			unlocked := make(chan error, 1)
			go func() { unlocked <- holder.Unlock() }() // owned by the test: bounded by releaseWait

			tok2, err := succ.Lock(ctx) // granted once the server expires the holder
			require.NoError(t, err)
			require.Greater(t, tok2, tok1)
			fz.thaw()

			select {
			case err = <-unlocked:
			case <-time.After(releaseWait + 5*time.Second):
				t.Fatal("the deposed holder's Unlock did not return")
			}
			require.ErrorIs(t, err, ErrLost)
			require.NotEqual(t, oldSession, hConn.SessionID(), "go-zookeeper was to open a new session")

			// The successor still holds: its znode is there, its guard quiet,
			// and a third contender does not get in.
			select {
			case <-succ.Lost():
				t.Fatal("the deposed holder's Unlock removed the successor's lock")
			case <-time.After(500 * time.Millisecond):
			}
			tctx, tcancel := context.WithTimeout(ctx, time.Second)
			_, err = third.Lock(tctx)
			tcancel()
			require.ErrorIs(t, err, context.DeadlineExceeded, "a third contender got in while the successor held")
			require.NoError(t, succ.Unlock())
			tok3, err := third.Lock(ctx)
			require.NoError(t, err)
			require.Greater(t, tok3, tok2)
			require.NoError(t, third.Unlock())
		})
	}
}
