package report

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestIndexLinksCompareDirectories(t *testing.T) {
	runs := t.TempDir()
	cmp := filepath.Join(runs, "20261126T194759Z-compare")
	require.NoError(t, os.MkdirAll(cmp, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(cmp, "compare.html"), []byte("<html></html>"), 0o644))
	require.NoError(t, os.MkdirAll(filepath.Join(runs, "not-a-run"), 0o755))

	require.NoError(t, WriteIndex(runs))
	b, err := os.ReadFile(filepath.Join(runs, "index.html"))
	require.NoError(t, err)
	require.Contains(t, string(b), `href="20261126T194759Z-compare/compare.html"`)
	require.NotContains(t, string(b), "not-a-run/compare.html")
}
