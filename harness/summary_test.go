package harness

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLatencyPercentiles(t *testing.T) {
	var ds []int64
	for i := 1; i <= 1000; i++ {
		ds = append(ds, int64(i)*1e6) // 1..1000 ms, shuffled below
	}
	for i := range ds {
		j := (i * 7919) % len(ds)
		ds[i], ds[j] = ds[j], ds[i]
	}
	l := latencyOf(ds)
	require.Equal(t, 1000, l.Count)
	require.InDelta(t, 500, l.P50MS, 1e-9)
	require.InDelta(t, 990, l.P99MS, 1e-9)
	require.InDelta(t, 999, l.P999MS, 1e-9)
	require.InDelta(t, 1000, l.MaxMS, 1e-9)
	require.InDelta(t, 500.5, l.MeanMS, 1e-9)
}
