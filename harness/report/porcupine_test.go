package report

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPorcupinePagesGetATitleABackLinkZoomAndFaultJumps(t *testing.T) {
	dir := defaultSynth().write(t, t.TempDir())
	page := filepath.Join(dir, "porcupine", "k0.html")
	require.NoError(t, os.WriteFile(page, []byte("<!doctype html><html><head><title>Porcupine</title></head><body><div id=\"legend\"></div><div id=\"canvas\"></div></body></html>"), 0o644))
	for range 2 { // a second report replaces what the first added
		require.NoError(t, WriteRun(dir))
	}
	b, err := os.ReadFile(page)
	require.NoError(t, err)
	html := string(b)
	require.Contains(t, html, "<title>k0 · raft · kill-leader · chainraft</title>")
	require.NotContains(t, html, "<title>Porcupine</title>")
	require.Equal(t, 1, strings.Count(html, `id="chainraft-bar"`), "decorated once, however often redrawn")
	require.Contains(t, html, `<a href="../report.html">← report</a>`)
	require.Contains(t, html, `data-z="fit"`)
	require.Contains(t, html, `>8.0s kill n1 (leader)</button>`, "a jump to each fault")
	require.Contains(t, html, `>16.0s partition isolate n2,n3 (follower)</button>`)
	require.NotContains(t, html, "member (tail)</button>", "a fault that was not applied has nothing to jump to")
	require.NotRegexp(t, externalRef, html)
}
