package harness

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestPreloadWritesBeforeTheWorkload: the preload's keys are written
// before the workload, reported in the summary, and kept out of the
// checked history.
func TestPreloadWritesBeforeTheWorkload(t *testing.T) {
	rc := baseConfig(t, "memory")
	rc.TimeLimit = 300 * time.Millisecond
	rc.Preload = Preload{Bytes: 1 << 20, ValueSize: 4096}
	res, err := Run(context.Background(), rc)
	require.NoError(t, err)
	p := res.Summary.Preload
	require.NotNil(t, p)
	require.Equal(t, 256, p.Keys)
	require.Equal(t, int64(1<<20), p.Bytes)
	require.Equal(t, "ok", res.Summary.Verdict)
	h, err := os.ReadFile(filepath.Join(res.Dir, "history.jsonl"))
	require.NoError(t, err)
	require.NotEmpty(t, h)
	require.NotContains(t, string(h), `"pre/`, "the preload is not in the checked history")

	rc.Preload = Preload{Bytes: 1, ValueSize: MaxValueSize + 1}
	require.ErrorIs(t, rc.Validate(), ErrInvalidConfig)
}
