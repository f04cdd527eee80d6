package proccluster

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/internal/powerfs"
	"github.com/chainraft/chainraft/nemesis"
)

// A node's data directory on powerfs: what it wrote survives a kill,
// loses what was not synced to a power cut, and Close leaves no mount and
// the files back in place.
func TestPowerCutLosesUnsyncedAndCloseUnmounts(t *testing.T) {
	if err := powerfs.Available(); err != nil {
		t.Skipf("powerfs unavailable: %v", err)
	}
	dir := t.TempDir()
	c, err := New(Config{Store: "sh", Dir: dir, Nodes: 1, PowerFS: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close(0) })
	data := c.DataDir(1)
	// The "node" writes a file (no fsync of it or of its directory) and
	// waits to be killed.
	script := `echo written > "$0/f"; exec sleep 60`
	require.NoError(t, c.Start(1, "/bin/sh", []string{"-c", script, data}, nil))
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(filepath.Join(data, "f"))
		return err == nil && string(b) == "written\n"
	}, 10*time.Second, 20*time.Millisecond)

	m, err := powerfs.Mounted()
	require.NoError(t, err)
	require.Contains(t, m, data)
	tg := &Target{C: c}
	var _ nemesis.PowerCutter = tg
	require.Error(t, tg.LoseUnsynced(context.Background(), 1), "a running node cannot lose power without a kill")

	// A kill keeps the file (the page cache survives a process).
	require.NoError(t, c.Kill(1))
	_, err = os.Stat(filepath.Join(data, "f"))
	require.NoError(t, err)
	// A power cut does not: neither its data nor its name was synced.
	require.NoError(t, tg.LoseUnsynced(context.Background(), 1))
	_, err = os.Stat(filepath.Join(data, "f"))
	require.ErrorIs(t, err, os.ErrNotExist)

	require.NoError(t, c.Restart(1))
	require.Eventually(t, func() bool {
		// The whole line, not just the name: `echo >` creates the file
		// before it writes, and Close kills the writer.
		b, err := os.ReadFile(filepath.Join(data, "f"))
		return err == nil && string(b) == "written\n"
	}, 10*time.Second, 20*time.Millisecond)
	require.NoError(t, c.Close(0))
	m, err = powerfs.Mounted()
	require.NoError(t, err)
	require.NotContains(t, m, data)
	b, err := os.ReadFile(filepath.Join(data, "f"))
	require.NoError(t, err)
	require.Equal(t, "written\n", string(b))
	_, err = os.Stat(data + ".disk")
	require.ErrorIs(t, err, os.ErrNotExist)
}

// Without PowerFS a power cut is unsupported, so the nemesis skips it.
func TestPowerCutUnsupportedWithoutPowerFS(t *testing.T) {
	c, err := New(Config{Store: "sh", Dir: t.TempDir(), Nodes: 1})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close(0) })
	require.NoError(t, c.Start(1, "/bin/sh", []string{"-c", "exec sleep 60"}, nil))
	require.NoError(t, c.Kill(1))
	require.ErrorIs(t, c.LoseUnsynced(1), nemesis.ErrUnsupported)
}
