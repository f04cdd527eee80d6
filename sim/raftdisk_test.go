package sim

import (
	"testing"

	"github.com/stretchr/testify/require"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

func ent(i, term uint64) *raftpb.Entry {
	return &raftpb.Entry{Index: proto.Uint64(i), Term: proto.Uint64(term), Type: raftpb.EntryNormal.Enum()}
}

func hs(term, vote, commit uint64) *raftpb.HardState {
	return &raftpb.HardState{Term: proto.Uint64(term), Vote: proto.Uint64(vote), Commit: proto.Uint64(commit)}
}

// A kill keeps what was written; a power loss keeps what was synced and
// then some prefix of the rest.
func TestRaftDiskPowerLossKeepsSynced(t *testing.T) {
	d := &raftDisk{}
	d.save(hs(1, 1, 0), []*raftpb.Entry{ent(1, 1), ent(2, 1)}, true)
	d.save(hs(1, 1, 2), []*raftpb.Entry{ent(3, 1)}, false)
	rec, err := d.open()
	require.NoError(t, err)
	require.Len(t, rec.Entries, 3, "a kill keeps the page cache")
	require.Equal(t, uint64(2), rec.HardState.GetCommit())

	d.powerLoss(func(int) int { return 0 })
	rec, err = d.open()
	require.NoError(t, err)
	require.Len(t, rec.Entries, 2)
	require.Equal(t, uint64(0), rec.HardState.GetCommit())
	require.Equal(t, uint64(1), rec.HardState.GetVote(), "the vote file is synced first")
}

// The torn write: one of two unsynced records survives.
func TestRaftDiskTornTail(t *testing.T) {
	d := &raftDisk{}
	d.save(hs(2, 2, 0), []*raftpb.Entry{ent(1, 2)}, true)
	d.save(nil, []*raftpb.Entry{ent(2, 2), ent(3, 2)}, false)
	d.powerLoss(func(n int) int {
		require.Equal(t, 2, n)
		return 1
	})
	rec, err := d.open()
	require.NoError(t, err)
	require.Len(t, rec.Entries, 2)
}

// Without fsync a power loss can take a vote the log already carries: the
// node refuses to start, as raftkv.OpenStorage does.
func TestRaftDiskNoFsyncLosesVote(t *testing.T) {
	d := &raftDisk{noFsync: true}
	d.save(hs(3, 1, 0), nil, true)
	d.synced = len(d.log) // the log reached the platter, the vote file did not
	d.powerLoss(func(int) int { return 0 })
	_, err := d.open()
	require.ErrorContains(t, err, "lost a vote")
}

// A leader's snapshot replaces the log; a crash between the snapshot file
// and the rewrite leaves a log that OpenStorage's rule discards.
func TestRaftDiskSnapshotWithoutRewrite(t *testing.T) {
	d := &raftDisk{}
	d.save(hs(1, 1, 1), []*raftpb.Entry{ent(1, 1), ent(2, 1)}, true)
	d.saveSnapshot(&raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{Index: proto.Uint64(5), Term: proto.Uint64(3), ConfState: &raftpb.ConfState{Voters: []uint64{1}}}})
	rec, err := d.open()
	require.NoError(t, err)
	require.Empty(t, rec.Entries, "the old log does not reach the snapshot")
	require.Len(t, d.log, 1, "and is rewritten to the hard state alone")
}
