package zkrecipes

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"
)

// BenchConfig is one lock benchmark: Contenders clients, each on its own
// ZooKeeper session, each acquiring and releasing the lock Rounds times.
type BenchConfig struct {
	Addrs      []string
	Recipe     string // "naive" or "recipe"
	Contenders int
	Rounds     int
	// Hold is how long each holder keeps the lock (default 0: release at once).
	Hold time.Duration
	// Path is the lock znode (naive) or directory (recipe); default
	// /chainraft/lockbench/<recipe>-<n>-<guid>.
	Path           string
	SessionTimeout time.Duration // default 10s
}

// BenchResult sums the contenders' Stats and acquisition latencies.
type BenchResult struct {
	Recipe       string
	Contenders   int
	Acquisitions int64
	Stats        Stats // summed over contenders
	// Overlaps counts acquisitions that found another contender inside the
	// critical section: a mutual-exclusion violation, which must be 0.
	Overlaps int64
	// TokenRegressions counts acquisitions whose fencing token was not larger
	// than the previous holder's: must be 0.
	TokenRegressions int64
	P50, P99, Max    time.Duration
	Elapsed          time.Duration
}

// WatchesPerAcq is watch notifications delivered per acquisition.
func (r BenchResult) WatchesPerAcq() float64 { return per(r.Stats.Watches, r.Acquisitions) }

// RequestsPerAcq is ZooKeeper requests per acquisition (guard and release
// included).
func (r BenchResult) RequestsPerAcq() float64 { return per(r.Stats.Requests, r.Acquisitions) }

func per(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

type locker interface {
	Lock(ctx context.Context) (int64, error)
	Unlock() error
	Stats() Stats
}

// RunBench runs one benchmark against a live ZooKeeper.
func RunBench(ctx context.Context, cfg BenchConfig) (BenchResult, error) {
	if cfg.Contenders < 1 || cfg.Rounds < 1 {
		return BenchResult{}, fmt.Errorf("zkrecipes: bench needs contenders and rounds >= 1")
	}
	if cfg.SessionTimeout == 0 {
		cfg.SessionTimeout = 10 * time.Second
	}
	if cfg.Path == "" {
		cfg.Path = fmt.Sprintf("/chainraft/lockbench/%s-%d-%s", cfg.Recipe, cfg.Contenders, newGUID()[:8])
	}
	conns := make([]*zk.Conn, 0, cfg.Contenders)
	defer func() {
		// In parallel: a Close while the server is unreachable waits about
		// a second for its close request, which one by one adds up.
		var wg sync.WaitGroup
		for _, c := range conns {
			wg.Add(1)
			go func() { defer wg.Done(); c.Close() }()
		}
		wg.Wait()
	}()
	lockers := make([]locker, 0, cfg.Contenders)
	for i := 0; i < cfg.Contenders; i++ {
		c, _, err := ConnectContext(ctx, cfg.Addrs, cfg.SessionTimeout)
		if err != nil {
			return BenchResult{}, err
		}
		conns = append(conns, c)
		switch cfg.Recipe {
		case "naive":
			lockers = append(lockers, NewNaiveLock(c, cfg.Path))
		case "recipe":
			lockers = append(lockers, NewLock(c, cfg.Path))
		default:
			return BenchResult{}, fmt.Errorf("zkrecipes: unknown recipe %q (naive, recipe)", cfg.Recipe)
		}
	}
	// Create the parent before the clock starts, so no contender's first
	// acquisition pays for it.
	if err := ensurePath(ctx, conns[0], &counters{}, parentOf(cfg.Path)); err != nil {
		return BenchResult{}, err
	}

	var (
		inside    atomic.Int64
		overlaps  atomic.Int64
		regress   atomic.Int64
		lastToken = int64(-1) // sequence numbers start at 0
		lastMu    sync.Mutex
		latMu     sync.Mutex
		lats      = make([]time.Duration, 0, cfg.Contenders*cfg.Rounds)
		wg        sync.WaitGroup
		errOnce   sync.Once
		firstErr  error
	)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := make(chan struct{})
	for _, l := range lockers {
		wg.Add(1)
		go func(l locker) {
			defer wg.Done()
			<-start
			for r := 0; r < cfg.Rounds; r++ {
				t0 := time.Now()
				tok, err := l.Lock(runCtx)
				if err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					return
				}
				d := time.Since(t0)
				if inside.Add(1) != 1 {
					overlaps.Add(1)
				}
				lastMu.Lock()
				if tok <= lastToken {
					regress.Add(1)
				}
				lastToken = tok
				lastMu.Unlock()
				if cfg.Hold > 0 {
					time.Sleep(cfg.Hold)
				}
				inside.Add(-1)
				if err := l.Unlock(); err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					return
				}
				latMu.Lock()
				lats = append(lats, d)
				latMu.Unlock()
			}
		}(l)
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	res := BenchResult{Recipe: cfg.Recipe, Contenders: cfg.Contenders, Elapsed: time.Since(t0)}
	if firstErr != nil {
		return res, firstErr
	}
	for _, l := range lockers {
		s := l.Stats()
		res.Stats.Requests += s.Requests
		res.Stats.Watches += s.Watches
		res.Stats.Guard += s.Guard
		res.Stats.Acquisitions += s.Acquisitions
	}
	res.Acquisitions = res.Stats.Acquisitions
	res.Overlaps = overlaps.Load()
	res.TokenRegressions = regress.Load()
	slices.Sort(lats)
	if n := len(lats); n > 0 {
		res.P50 = lats[n/2]
		res.P99 = lats[min(n-1, n*99/100)]
		res.Max = lats[n-1]
	}
	return res, nil
}
