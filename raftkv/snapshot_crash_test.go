package raftkv

import (
	"testing"

	"github.com/stretchr/testify/require"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

func testSnapshot(index, term uint64) *raftpb.Snapshot {
	return &raftpb.Snapshot{Data: newFSM().marshal(), Metadata: &raftpb.SnapshotMetadata{
		Index: proto.Uint64(index), Term: proto.Uint64(term), ConfState: &raftpb.ConfState{Voters: []uint64{1, 2, 3}}}}
}

func concat(parts ...[]*raftpb.Entry) []*raftpb.Entry {
	var out []*raftpb.Entry
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// craft writes a log and then a snapshot file without rewriting the log:
// the state a crash leaves between Save's rename and its log rewrite
// (or, for a log that continues the snapshot, a normal one).
func craft(t *testing.T, hs *raftpb.HardState, ents []*raftpb.Entry, snap *raftpb.Snapshot) string {
	dir := t.TempDir()
	s, _, err := OpenStorage(dir, true)
	require.NoError(t, err)
	require.NoError(t, s.Append(hs, ents, false))
	require.NoError(t, s.SaveSnapshot(snap))
	require.NoError(t, s.Close())
	return dir
}

func lastIndexTerm(t *testing.T, c *Core) (uint64, uint64) {
	li, err := c.ms.LastIndex()
	require.NoError(t, err)
	lt, err := c.ms.Term(li)
	require.NoError(t, err)
	return li, lt
}

// A crash after a leader's snapshot (index 10, term 3) replaced the
// snapshot file but before the log was rewritten leaves the old log, whose
// entries 9..12 are of term 2: a branch the snapshot superseded. Restoring
// them would put term-2 entries after a term-3 snapshot (terms going
// backwards), and this node could then vote for or acknowledge on a log it
// does not have.
func TestRestoreDropsStaleLogBehindLeaderSnapshot(t *testing.T) {
	hs := hardState(2, 2, 5)
	dir := craft(t, hs, concat(testEntries(1, 8, 1), testEntries(9, 12, 2)), testSnapshot(10, 3))

	s, rec, err := OpenStorage(dir, true)
	require.NoError(t, err)
	require.Empty(t, rec.Entries, "entries of a superseded log after the snapshot are dropped")
	c, err := NewCore(CoreConfig{ID: 1}, rec)
	require.NoError(t, err)
	li, lt := lastIndexTerm(t, c)
	require.Equal(t, [2]uint64{10, 3}, [2]uint64{li, lt}, "the log ends at the snapshot")

	// The log on disk was rewritten, keeping the hard state...
	require.NoError(t, s.Close())
	s, rec, err = OpenStorage(dir, true)
	require.NoError(t, err)
	require.Empty(t, rec.Entries)
	require.True(t, proto.Equal(hs, rec.HardState), "the hard state of the old log survives the rewrite")
	// ...so raft's next appends after the snapshot replay without a gap or
	// a stale suffix.
	require.NoError(t, s.Append(hardState(3, 0, 10), testEntries(11, 11, 3), true))
	require.NoError(t, s.Close())
	_, rec, err = OpenStorage(dir, true)
	require.NoError(t, err)
	require.Len(t, rec.Entries, 1)
	require.Equal(t, uint64(11), rec.Entries[0].GetIndex())
}

// The Core applies the same rule to a Recovered it is handed directly.
func TestCoreRestoreIgnoresStaleEntriesAfterSnapshot(t *testing.T) {
	rec := &Recovered{Snapshot: testSnapshot(10, 3), HardState: hardState(2, 2, 5),
		Entries: concat(testEntries(1, 8, 1), testEntries(9, 12, 2))}
	c, err := NewCore(CoreConfig{ID: 1}, rec)
	require.NoError(t, err)
	li, lt := lastIndexTerm(t, c)
	require.Equal(t, [2]uint64{10, 3}, [2]uint64{li, lt})
}

func TestLogMatchesSnapshot(t *testing.T) {
	snap := testSnapshot(10, 3)
	for _, tc := range []struct {
		name string
		ents []*raftpb.Entry
		keep bool
	}{
		{"own log through the snapshot", concat(testEntries(5, 10, 3), testEntries(11, 14, 4)), true},
		{"rewrite behind a leader snapshot", testEntries(11, 13, 3), true},
		{"no entries", nil, true},
		{"old log lacks the snapshot index", testEntries(1, 8, 1), false},
		{"old log has the snapshot index at another term", testEntries(1, 12, 2), false},
		{"terms go backwards after the snapshot", concat(testEntries(8, 11, 3), testEntries(12, 12, 2)), false},
		{"rewrite starting below the snapshot's term", testEntries(11, 12, 2), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := logMatchesSnapshot(snap, tc.ents)
			require.Equal(t, tc.keep, ok)
			if ok {
				require.Equal(t, tc.ents, got)
			} else {
				require.Empty(t, got)
			}
		})
	}
	got, ok := logMatchesSnapshot(nil, testEntries(1, 3, 1))
	require.True(t, ok, "without a snapshot the log stands alone")
	require.Len(t, got, 3)
}
