package raftkv

import (
	"path/filepath"
	"testing"

	"github.com/chainraft/chainraft/internal/wal/waltest"
)

// A node whose log has a flipped length mid-way does not start: StartNode
// fails before anything else happens, naming the file and offset.
func TestStorageNodeRefusesToStart(t *testing.T) {
	dir := t.TempDir()
	path, _ := writeLog(t, dir)
	offs := recordOffsets(t, path)
	waltest.Flip(t, path, offs[3]+1, 0x80)
	_, err := StartNode(NodeConfig{ID: 1, DataDir: dir, Peers: []Member{{ID: 1, Addr: "127.0.0.1:1"}}})
	waltest.RequireRefusedAt(t, err, ErrCorrupt, filepath.Join(dir, walName), offs[3])
}
