package sim

import (
	"context"
	"runtime"
	"sync"
)

// SeedsResult is what a batch of seeds came to.
type SeedsResult struct {
	// Ran counts the seeds that ran to their end.
	Ran int
	// Failed is the lowest failing seed's result, or nil when every seed
	// passed.
	Failed *Result
	// Failures counts the failing seeds by failure kind (RunAllSeeds; with
	// RunSeeds only those that ran before the stop).
	Failures map[string]int
}

// RunSeeds runs seeds first, first+1, ..., first+n-1 of base (its Seed
// replaced) on workers goroutines (0: GOMAXPROCS), each seed on one
// goroutine from start to end. It stops at the first failure: seeds above a
// failing one are not started, seeds below it finish, and the lowest
// failing seed is reported, so the answer does not depend on which worker
// was faster. progress, if set, is called after each seed (from the
// workers, serialized).
func RunSeeds(ctx context.Context, base Options, first int64, n, workers int, progress func(*Result)) SeedsResult {
	return runSeeds(ctx, base, first, n, workers, false, progress)
}

// RunAllSeeds is RunSeeds without the stop: every seed runs, and Failures
// counts how many failed, for a detection rate.
func RunAllSeeds(ctx context.Context, base Options, first int64, n, workers int, progress func(*Result)) SeedsResult {
	return runSeeds(ctx, base, first, n, workers, true, progress)
}

func runSeeds(ctx context.Context, base Options, first int64, n, workers int, all bool, progress func(*Result)) SeedsResult {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	var (
		mu     sync.Mutex
		next   = first
		end    = first + int64(n)
		out    = SeedsResult{Failures: map[string]int{}}
		failed *Result
	)
	take := func() (int64, bool) {
		mu.Lock()
		defer mu.Unlock()
		if ctx.Err() != nil || next >= end || (!all && failed != nil && next > failed.Options.Seed) {
			return 0, false
		}
		s := next
		next++
		return s, true
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				seed, ok := take()
				if !ok {
					return
				}
				o := base
				o.Seed = seed
				res := Run(o)
				mu.Lock()
				out.Ran++
				if !res.Passed() {
					out.Failures[res.Failure]++
					if failed == nil || seed < failed.Options.Seed {
						failed = res
					}
				}
				if progress != nil {
					progress(res)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	out.Failed = failed
	return out
}
