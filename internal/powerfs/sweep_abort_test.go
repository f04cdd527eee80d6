package powerfs

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// mountMinor finds a mount's device minor, the name of its FUSE
// connection, by mountpoint; an unknown mountpoint has none.
func TestMountMinor(t *testing.T) {
	_, ok := mountMinor("/")
	require.True(t, ok, "the root mount is in mountinfo")
	_, ok = mountMinor("/no/such/mountpoint")
	require.False(t, ok)
}
