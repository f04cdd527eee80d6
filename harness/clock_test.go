package harness

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/histories"
	"github.com/chainraft/chainraft/kv"
)

// slowStart is a memory store whose cluster takes a second to start, as a
// real one does.
var slowStart = funcDriver{"test-slow-start", func(ctx context.Context, _ Env) (Cluster, error) {
	select {
	case <-time.After(time.Second):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return &memCluster{m: kv.NewMemory()}, nil
}}

// TestOneClockFromTheWorkloadsStart: the history (and so the nemesis log,
// the charts and the summary) counts from the workload's start; the
// cluster's start-up is reported on its own, not hidden in the first
// second of the history.
func TestOneClockFromTheWorkloadsStart(t *testing.T) {
	cfg := baseConfig(t, "")
	cfg.Driver = slowStart
	cfg.TimeLimit = 300 * time.Millisecond
	res, err := Run(context.Background(), cfg)
	require.NoError(t, err)
	s := res.Summary
	require.GreaterOrEqual(t, s.StartupS, 1.0, "the start-up is reported")
	f, err := histories.ReadFile(filepath.Join(res.Dir, "history.jsonl"))
	require.NoError(t, err)
	first := f[0].Call
	for _, o := range f {
		first = min(first, o.Call)
	}
	require.Less(t, float64(first)/1e9, s.StartupS, "the history's clock starts after the start-up, with the workload")
	require.NotNil(t, s.Availability)
	require.NotNil(t, s.Availability.HealthyThroughput, "no faults: the whole run is healthy")
	require.InDelta(t, s.DurationS, s.Availability.HealthyS, 1e-9)
}
