package raftkv

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// A node whose log has a flipped length mid-way does not start: StartNode
// fails before anything else happens, naming the file and offset.
func TestStorageNodeRefusesToStart(t *testing.T) {
	dir := t.TempDir()
	path, _ := writeLog(t, dir)
	offs := recordOffsets(t, path)
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	b[offs[3]+1] ^= 0x80
	require.NoError(t, os.WriteFile(path, b, 0o644))
	_, err = StartNode(NodeConfig{ID: 1, DataDir: dir, Peers: []Member{{ID: 1, Addr: "127.0.0.1:1"}}})
	require.ErrorIs(t, err, ErrCorrupt)
	require.ErrorContains(t, err, fmt.Sprintf("%s: offset %d: ", filepath.Join(dir, walName), offs[3]))
}
