package chain

import (
	"testing"

	"github.com/chainraft/chainraft/internal/wal/waltest"
)

// A node whose log has a flipped length mid-way does not start: the
// refusal reaches StartNode's caller (chainraft node exits with it), naming
// the file and offset.
func TestStorageNodeRefusesToStart(t *testing.T) {
	dir, path, offs := writeEntries(t, 5)
	waltest.Flip(t, path, offs[2], 0x01)
	_, err := StartNode(NodeConfig{ID: 1, DataDir: dir, Chains: 1})
	waltest.RequireRefusedAt(t, err, ErrCorrupt, path, offs[2])
}
