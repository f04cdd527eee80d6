package harness

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Preload is data written to the store before the workload starts, so
// that what the run measures — above all a new replica's catch-up, a
// snapshot install or a chain's state transfer, whose cost grows with the
// data — happens on a store that holds Bytes of it. The keys ("pre/N") are
// the workload's none, so the checked history does not contain them; the
// end-of-run replica digests do, which is how a run knows a fresh replica
// got them all.
type Preload struct {
	// Bytes is how much to write (0: nothing).
	Bytes int64
	// ValueSize is each value's size (default 64 KiB, at most
	// MaxValueSize).
	ValueSize int
}

// DefaultPreloadValue is Preload.ValueSize's default.
const DefaultPreloadValue = 64 << 10

// preloadClients write the preload in parallel; preloadTries bounds one
// key's attempts (an indeterminate put is simply written again).
const (
	preloadClients = 8
	preloadTries   = 5
)

func (p Preload) withDefaults() Preload {
	if p.ValueSize == 0 {
		p.ValueSize = DefaultPreloadValue
	}
	return p
}

func (p Preload) validate() error {
	p = p.withDefaults()
	switch {
	case p.Bytes < 0:
		return fmt.Errorf("preload of %d bytes: must not be negative", p.Bytes)
	case p.ValueSize < 1 || p.ValueSize > MaxValueSize:
		return fmt.Errorf("preload value size %d: want 1 to %d bytes", p.ValueSize, MaxValueSize)
	}
	return nil
}

// PreloadSummary is what the preload wrote (summary.json "preload").
type PreloadSummary struct {
	Bytes    int64   `json:"bytes"`
	Keys     int     `json:"keys"`
	Seconds  float64 `json:"seconds"`
	MBPerSec float64 `json:"mb_per_s"`
}

// preload writes p to the cluster through its own clients, before the
// recorder starts.
func preload(ctx context.Context, c Cluster, p Preload, timeout time.Duration, log io.Writer) (*PreloadSummary, error) {
	p = p.withDefaults()
	keys := int((p.Bytes + int64(p.ValueSize) - 1) / int64(p.ValueSize))
	value := strings.Repeat("p", p.ValueSize)
	began := time.Now()
	fmt.Fprintf(log, "preload: %d keys of %d bytes (%.1f MiB)\n", keys, p.ValueSize, float64(int64(keys)*int64(p.ValueSize))/(1<<20))
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, preloadClients)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range min(preloadClients, keys) {
		store, err := c.NewClient()
		if err != nil {
			cancel()
			wg.Wait()
			return nil, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if cl, ok := store.(io.Closer); ok {
				defer cl.Close()
			}
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(keys) {
					return
				}
				key := fmt.Sprintf("pre/%07d", i)
				var err error
				for range preloadTries {
					pctx, pcancel := context.WithTimeout(ctx, timeout)
					err = store.Put(pctx, key, value)
					pcancel()
					if err == nil || ctx.Err() != nil {
						break
					}
				}
				if err != nil {
					errs <- fmt.Errorf("preload %s: %w", key, err)
					cancel()
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		return nil, err
	default:
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s := &PreloadSummary{Bytes: int64(keys) * int64(p.ValueSize), Keys: keys, Seconds: time.Since(began).Seconds()}
	s.MBPerSec = float64(s.Bytes) / (1 << 20) / s.Seconds
	fmt.Fprintf(log, "preload: done in %.1fs (%.1f MiB/s)\n", s.Seconds, s.MBPerSec)
	return s, nil
}
