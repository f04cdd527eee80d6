package harness

import (
	"context"
	"io"
	"time"

	"github.com/chainraft/chainraft/kv"
)

// testOpTime is the service time every store defined in these tests takes
// per operation. Without it an in-memory store answers millions of
// operations a second, and a test's second of workload becomes a history
// whose check and report dominate the package's test time; with it, a
// client does a few thousand a second, plenty for the races the tests
// look for.
const testOpTime = 250 * time.Microsecond

// pacedKV takes testOpTime before each operation of the store it wraps.
type pacedKV struct{ kv.KV }

func paced(k kv.KV) kv.KV { return pacedKV{k} }

func wait(ctx context.Context) error {
	t := time.NewTimer(testOpTime)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p pacedKV) Get(ctx context.Context, k string) (string, bool, error) {
	if err := wait(ctx); err != nil {
		return "", false, err
	}
	return p.KV.Get(ctx, k)
}

func (p pacedKV) Put(ctx context.Context, k, v string) error {
	if err := wait(ctx); err != nil {
		return err
	}
	return p.KV.Put(ctx, k, v)
}

func (p pacedKV) Append(ctx context.Context, k, v string) error {
	if err := wait(ctx); err != nil {
		return err
	}
	return p.KV.Append(ctx, k, v)
}

func (p pacedKV) CAS(ctx context.Context, k, expect, v string) (bool, error) {
	if err := wait(ctx); err != nil {
		return false, err
	}
	return p.KV.CAS(ctx, k, expect, v)
}

// Close closes the wrapped client when it holds anything.
func (p pacedKV) Close() error {
	if c, ok := p.KV.(io.Closer); ok {
		return c.Close()
	}
	return nil
}
