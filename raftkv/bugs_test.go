package raftkv

import (
	"testing"

	"github.com/stretchr/testify/require"

	pb "github.com/chainraft/chainraft/raftkv/raftkvpb"
)

func TestParseBug(t *testing.T) {
	for _, name := range append(KnownBugs(), "") {
		got, err := ParseBug(name)
		require.NoError(t, err)
		require.Equal(t, name, got)
	}
	got, err := ParseBug(BugStaleRead)
	require.NoError(t, err)
	require.Equal(t, BugLocalRead, got, "the old name is an alias")
	_, err = ParseBug("head-read")
	require.ErrorIs(t, err, ErrUnknownBug)
	for _, name := range KnownBugs() {
		require.Contains(t, err.Error(), name, "the error lists the known bugs")
	}
	_, err = StartNode(NodeConfig{ID: 1, DataDir: t.TempDir(), Bug: "nope"})
	require.ErrorIs(t, err, ErrUnknownBug, "a node refuses an unknown bug before touching its disk")
}

// TestNoDedupAppliesRetriesTwice shows the seeded bug does what it says and
// that the correct state machine does not.
func TestNoDedupAppliesRetriesTwice(t *testing.T) {
	cmd := &pb.Command{Client: 7, Seq: 1, Op: pb.Op_OP_APPEND, Key: "k", Value: "x"}
	for _, tc := range []struct {
		noDedup bool
		want    string
	}{{false, "x"}, {true, "xx"}} {
		f := newFSM()
		for range 2 {
			_, err := f.apply(cmd, tc.noDedup)
			require.NoError(t, err)
		}
		require.Equal(t, tc.want, f.get("k").GetValue(), "noDedup=%v", tc.noDedup)
	}
}
