package chain

import (
	"fmt"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// A node whose log has a flipped length mid-way does not start: the
// refusal reaches StartNode's caller (chainraft node exits with it), naming
// the file and offset.
func TestStorageNodeRefusesToStart(t *testing.T) {
	dir, path, offs := writeEntries(t, 5)
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	b[offs[2]] ^= 0x01
	require.NoError(t, os.WriteFile(path, b, 0o644))
	_, err = StartNode(NodeConfig{ID: 1, DataDir: dir, Chains: 1})
	require.ErrorIs(t, err, ErrCorrupt)
	require.ErrorContains(t, err, fmt.Sprintf("%s: offset %d: ", path, offs[2]))
}
