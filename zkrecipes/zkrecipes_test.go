package zkrecipes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/internal/proc"
	"github.com/chainraft/chainraft/internal/zkserver"
)

// One real standalone ZooKeeper serves every test of the package; each test
// works under its own znode paths.
var (
	zkOnce sync.Once
	zkEns  *zkserver.Ensemble
	zkErr  error
	zkDir  string
)

func TestMain(m *testing.M) {
	code := func() int {
		defer func() {
			if zkEns != nil {
				zkEns.Close()
			}
			if zkDir != "" {
				os.RemoveAll(zkDir)
			}
		}()
		return proc.RunTests(m)
	}()
	os.Exit(code)
}

func zkAddrs(t *testing.T) []string {
	t.Helper()
	zkOnce.Do(func() {
		zkDir, zkErr = os.MkdirTemp("", "zkrecipes-test-")
		if zkErr != nil {
			return
		}
		zkEns, zkErr = zkserver.Start(context.Background(), zkserver.Config{Dir: zkDir, TickTime: 250 * time.Millisecond})
	})
	require.NoError(t, zkErr)
	return zkEns.Addrs()
}

func connect(t *testing.T, addrs []string, timeout time.Duration) *zk.Conn {
	t.Helper()
	c, _, err := Connect(addrs, timeout)
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

func testPath(t *testing.T, kind string) string {
	return fmt.Sprintf("/test/%s/%s-%s", t.Name(), kind, newGUID()[:8])
}

type anyLock interface {
	locker
	Lost() <-chan struct{}
}

func newLocker(kind string, c *zk.Conn, path string) anyLock {
	if kind == "naive" {
		return NewNaiveLock(c, path)
	}
	return NewLock(c, path)
}

func TestMutualExclusion(t *testing.T) {
	addrs := zkAddrs(t)
	for _, kind := range []string{"recipe", "naive"} {
		t.Run(kind, func(t *testing.T) {
			path := testPath(t, kind)
			const contenders, rounds = 5, 8
			var (
				inside, maxInside atomic.Int64
				counter           int // incremented non-atomically under the lock
				mu                sync.Mutex
				tokens            []int64
				wg                sync.WaitGroup
			)
			locks := make([]anyLock, contenders)
			for i := range locks {
				locks[i] = newLocker(kind, connect(t, addrs, 5*time.Second), path)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			errs := make(chan error, contenders)
			for _, l := range locks {
				wg.Add(1)
				go func(l anyLock) {
					defer wg.Done()
					for r := 0; r < rounds; r++ {
						tok, err := l.Lock(ctx)
						if err != nil {
							errs <- err
							return
						}
						n := inside.Add(1)
						for {
							m := maxInside.Load()
							if n <= m || maxInside.CompareAndSwap(m, n) {
								break
							}
						}
						c := counter
						time.Sleep(time.Millisecond)
						counter = c + 1
						mu.Lock()
						tokens = append(tokens, tok)
						mu.Unlock()
						inside.Add(-1)
						if err := l.Unlock(); err != nil {
							errs <- err
							return
						}
					}
				}(l)
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				require.NoError(t, err)
			}
			require.Equal(t, int64(1), maxInside.Load(), "two holders at once")
			require.Equal(t, contenders*rounds, counter, "an increment was lost")
			for i := 1; i < len(tokens); i++ {
				require.Greater(t, tokens[i], tokens[i-1], "fencing tokens must grow with each holder")
			}
			var acq int64
			for _, l := range locks {
				acq += l.Stats().Acquisitions
			}
			require.Equal(t, int64(contenders*rounds), acq)
		})
	}
}

func TestLockCancelWithdraws(t *testing.T) {
	addrs := zkAddrs(t)
	path := testPath(t, "recipe")
	a := NewLock(connect(t, addrs, 5*time.Second), path)
	bConn := connect(t, addrs, 5*time.Second)
	b := NewLock(bConn, path)
	_, err := a.Lock(context.Background())
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	_, err = b.Lock(ctx)
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded)
	// b's znode is withdrawn: after a releases, a third contender gets the
	// lock at once instead of queueing behind b's orphan.
	require.NoError(t, a.Unlock())
	c := NewLock(connect(t, addrs, 5*time.Second), path)
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = c.Lock(ctx)
	require.NoError(t, err)
	require.NoError(t, c.Unlock())
	require.ErrorIs(t, c.Unlock(), ErrNotHeld)
}

func TestElectionFailover(t *testing.T) {
	addrs := zkAddrs(t)
	dir := testPath(t, "election")
	conns := make([]*zk.Conn, 3)
	els := make([]*Election, 3)
	for i := range els {
		c, _, err := Connect(addrs, 5*time.Second)
		require.NoError(t, err)
		defer c.Close()
		conns[i] = c
		els[i] = NewElection(c, dir, []byte(fmt.Sprintf("cand-%d", i)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, els[0].Campaign(ctx))
	require.True(t, els[0].Leading())
	won := make(chan int, 2)
	for i := 1; i < 3; i++ {
		go func(i int) {
			if err := els[i].Campaign(ctx); err == nil {
				won <- i
			}
		}(i)
	}
	// Both others are queued; nobody else leads while 0 does.
	require.Eventually(t, func() bool { return els[1].Path() != "" && els[2].Path() != "" }, 5*time.Second, 10*time.Millisecond)
	select {
	case i := <-won:
		t.Fatalf("candidate %d leads while 0 does", i)
	case <-time.After(300 * time.Millisecond):
	}
	p, data, err := Leader(conns[1], dir)
	require.NoError(t, err)
	require.Equal(t, els[0].Path(), p)
	require.Equal(t, "cand-0", string(data))

	// The leader's session ends: it learns it lost, and exactly one
	// successor leads, the next in line.
	seq0 := els[0].Seq()
	conns[0].Close()
	select {
	case <-els[0].Lost():
	case <-time.After(10 * time.Second):
		t.Fatal("Lost not closed after the leader's connection closed")
	}
	require.False(t, els[0].Leading())
	var next int
	select {
	case next = <-won:
	case <-time.After(10 * time.Second):
		t.Fatal("no successor")
	}
	want := 1
	if seqOf(els[2].Path()) < seqOf(els[1].Path()) {
		want = 2
	}
	require.Equal(t, want, next, "the next in line leads")
	require.Greater(t, els[next].Seq(), seq0)
	select {
	case i := <-won:
		t.Fatalf("candidate %d leads as well", i)
	case <-time.After(200 * time.Millisecond):
	}
	last := 3 - next
	// Resign hands over to the last one; resigning is not losing.
	require.NoError(t, els[next].Resign())
	select {
	case <-els[next].Lost():
		t.Fatal("Resign reported as a loss")
	default:
	}
	select {
	case i := <-won:
		require.Equal(t, last, i)
	case <-time.After(10 * time.Second):
		t.Fatal("no successor after Resign")
	}
	// Recipe: one watch notification per hand-over; the last in line was
	// not woken when the first leader went.
	require.Equal(t, int64(1), els[next].Stats().Watches)
	require.Equal(t, int64(1), els[last].Stats().Watches)
}

// blackhole is a TCP proxy to ZooKeeper that can cut its clients off, the
// way a partition does, so the server expires their sessions while they
// cannot tell.
type blackhole struct {
	ln       net.Listener
	upstream string
	mu       sync.Mutex
	cut      bool
	conns    []net.Conn
	wg       sync.WaitGroup
}

func newBlackhole(t *testing.T, upstream string) *blackhole {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	b := &blackhole{ln: ln, upstream: upstream}
	b.wg.Add(1)
	go b.accept()
	t.Cleanup(func() {
		ln.Close()
		b.setCut(true)
		b.wg.Wait()
	})
	return b
}

func (b *blackhole) accept() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.mu.Lock()
		if b.cut {
			b.mu.Unlock()
			c.Close()
			continue
		}
		u, err := net.DialTimeout("tcp", b.upstream, time.Second)
		if err != nil {
			b.mu.Unlock()
			c.Close()
			continue
		}
		b.conns = append(b.conns, c, u)
		b.mu.Unlock()
		b.wg.Add(2)
		go func() { defer b.wg.Done(); io.Copy(u, c); u.Close() }()
		go func() { defer b.wg.Done(); io.Copy(c, u); c.Close() }()
	}
}

func (b *blackhole) setCut(cut bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cut = cut
	if cut {
		for _, c := range b.conns {
			c.Close()
		}
		b.conns = nil
	}
}

func TestLostOnSessionExpiry(t *testing.T) {
	addrs := zkAddrs(t)
	for _, kind := range []string{"recipe", "naive"} {
		t.Run(kind, func(t *testing.T) {
			path := testPath(t, kind)
			bh := newBlackhole(t, addrs[0])
			const session = 1500 * time.Millisecond
			holder := newLocker(kind, connect(t, []string{bh.ln.Addr().String()}, session), path)
			other := newLocker(kind, connect(t, addrs, 5*time.Second), path)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			tok1, err := holder.Lock(ctx)
			require.NoError(t, err)

			// Partition the holder. The server expires its session and hands
			// the lock on, while the holder, cut off, has not been told:
			// the soft-lock hazard that fencing tokens exist for.
			bh.setCut(true)
			tok2, err := other.Lock(ctx)
			require.NoError(t, err)
			require.Greater(t, tok2, tok1, "the new holder's token fences the old one out")
			select {
			case <-holder.Lost():
				t.Fatal("a partitioned client cannot know of its expiry yet")
			default:
			}
			// Healed, the holder reconnects, hears of the expiry, and Lost
			// fires.
			bh.setCut(false)
			select {
			case <-holder.Lost():
			case <-time.After(15 * time.Second):
				t.Fatal("Lost not closed after the session expired")
			}
			require.ErrorIs(t, holder.Unlock(), ErrLost)
			// The old holder's Unlock did not release the new holder's lock.
			select {
			case <-other.Lost():
				t.Fatal("the new holder lost its lock to the old holder's Unlock")
			default:
			}
			require.NoError(t, other.Unlock())
			// The old holder's client got a new session: it can lock again,
			// with a token newer than both.
			tok3, err := holder.Lock(ctx)
			require.NoError(t, err)
			require.Greater(t, tok3, tok2)
			require.NoError(t, holder.Unlock())
		})
	}
}

func TestLostOnClose(t *testing.T) {
	addrs := zkAddrs(t)
	for _, kind := range []string{"recipe", "naive"} {
		t.Run(kind, func(t *testing.T) {
			c, _, err := Connect(addrs, 5*time.Second)
			require.NoError(t, err)
			l := newLocker(kind, c, testPath(t, kind))
			_, err = l.Lock(context.Background())
			require.NoError(t, err)
			c.Close()
			select {
			case <-l.Lost():
			case <-time.After(5 * time.Second):
				t.Fatal("Lost not closed on Close")
			}
		})
	}
}

// TestHerdEffect measures watch notifications per acquisition for small N:
// the naive lock wakes every waiter at each release, the recipe one.
func TestHerdEffect(t *testing.T) {
	addrs := zkAddrs(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	per := map[string]map[int]float64{"naive": {}, "recipe": {}}
	for _, recipe := range []string{"naive", "recipe"} {
		for _, n := range []int{2, 8} {
			r, err := RunBench(ctx, BenchConfig{
				Addrs: addrs, Recipe: recipe, Contenders: n, Rounds: 5,
				// Holding a moment lets every other contender queue up.
				Hold: 5 * time.Millisecond,
			})
			require.NoError(t, err)
			require.Equal(t, int64(n*5), r.Acquisitions)
			require.Zero(t, r.Overlaps)
			require.Zero(t, r.TokenRegressions)
			t.Logf("%-6s N=%d acquisitions=%d watches/acq=%.2f requests/acq=%.2f p50=%v p99=%v",
				recipe, n, r.Acquisitions, r.WatchesPerAcq(), r.RequestsPerAcq(), r.P50, r.P99)
			per[recipe][n] = r.WatchesPerAcq()
		}
	}
	require.LessOrEqual(t, per["recipe"][2], 1.0)
	require.LessOrEqual(t, per["recipe"][8], 1.0, "the recipe wakes at most one waiter per release")
	require.Greater(t, per["naive"][8], 2*per["naive"][2], "naive cost grows with N")
	require.Greater(t, per["naive"][8], 3.0, "a release wakes most of the 7 waiters")
}

// TestDeposedLeaderMultiFails is the chain master's guard: a leader writes
// only through a Multi that checks its own election znode, so once it is
// deposed (partitioned past its session timeout) its write fails at
// ZooKeeper, whether or not it has noticed.
func TestDeposedLeaderMultiFails(t *testing.T) {
	addrs := zkAddrs(t)
	dir := testPath(t, "election")
	cfg := testPath(t, "config")
	bh := newBlackhole(t, addrs[0])
	oldConn := connect(t, []string{bh.ln.Addr().String()}, 1500*time.Millisecond)
	newConn := connect(t, addrs, 5*time.Second)
	require.NoError(t, ensurePath(context.Background(), newConn, &counters{}, parentOf(cfg)))
	_, err := newConn.Create(cfg, []byte("epoch-0"), 0, zk.WorldACL(zk.PermAll))
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	old := NewElection(oldConn, dir, []byte("old"))
	require.NoError(t, old.Campaign(ctx))
	write := func(c *zk.Conn, e *Election, data string) error {
		_, err := c.Multi(
			&zk.CheckVersionRequest{Path: e.Path(), Version: 0},
			&zk.SetDataRequest{Path: cfg, Data: []byte(data), Version: -1},
		)
		return err
	}
	require.NoError(t, write(oldConn, old, "epoch-1"))

	bh.setCut(true)
	succ := NewElection(newConn, dir, []byte("new"))
	require.NoError(t, succ.Campaign(ctx), "the successor leads once the old session expires")
	require.NoError(t, write(newConn, succ, "epoch-2"))
	oldPath := old.Path()
	bh.setCut(false)
	select {
	case <-old.Lost():
	case <-time.After(15 * time.Second):
		t.Fatal("old leader never told")
	}
	// The deposed leader's guarded write fails even if it had not looked at
	// Lost, and the config keeps the successor's write.
	// The old connection may still be re-establishing its session when Lost
	// fires; a request it could not send proves nothing, so retry until the
	// server itself answers.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err = oldConn.Multi(
			&zk.CheckVersionRequest{Path: oldPath, Version: 0},
			&zk.SetDataRequest{Path: cfg, Data: []byte("stale"), Version: -1},
		)
		if !errors.Is(err, zk.ErrNoServer) && !errors.Is(err, zk.ErrConnectionClosed) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	require.ErrorIs(t, err, zk.ErrNoNode)
	b, _, err := newConn.Get(cfg)
	require.NoError(t, err)
	require.Equal(t, "epoch-2", string(b))
	// Re-campaigning after a loss needs no Resign.
	go func() { _ = old.Campaign(ctx) }()
	require.NoError(t, succ.Resign())
	require.Eventually(t, old.Leading, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, old.Resign())
}
