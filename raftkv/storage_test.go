package raftkv

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/chainraft/chainraft/internal/wal"
	"github.com/chainraft/chainraft/internal/wal/waltest"
)

func testEntries(lo, hi, term uint64) []*raftpb.Entry {
	var out []*raftpb.Entry
	for i := lo; i <= hi; i++ {
		out = append(out, &raftpb.Entry{Index: proto.Uint64(i), Term: proto.Uint64(term), Data: []byte{byte(i)}})
	}
	return out
}

func hardState(term, vote, commit uint64) *raftpb.HardState {
	return &raftpb.HardState{Term: proto.Uint64(term), Vote: proto.Uint64(vote), Commit: proto.Uint64(commit)}
}

// writeLog saves two batches and returns the WAL's path and the offset
// where the second batch starts.
func writeLog(t *testing.T, dir string) (string, int64) {
	s, rec, err := OpenStorage(dir, false)
	require.NoError(t, err)
	require.True(t, rec.empty())
	require.NoError(t, s.Append(hardState(1, 1, 0), testEntries(1, 3, 1), true))
	path := filepath.Join(dir, walName)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.NoError(t, s.Append(hardState(1, 1, 3), testEntries(4, 5, 1), true))
	require.NoError(t, s.Close())
	return path, fi.Size()
}

func TestStorageReplaysAndOverwritesSuffix(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, dir)
	s, rec, err := OpenStorage(dir, false)
	require.NoError(t, err)
	require.Len(t, rec.Entries, 5)
	require.Equal(t, uint64(3), rec.HardState.GetCommit())
	// A new leader overwrote entries from 4 on.
	require.NoError(t, s.Append(hardState(2, 2, 3), testEntries(4, 4, 2), true))
	require.NoError(t, s.Close())
	_, rec, err = OpenStorage(dir, false)
	require.NoError(t, err)
	require.Len(t, rec.Entries, 4, "an entry at index i drops the old entries from i on")
	require.Equal(t, uint64(2), rec.Entries[3].GetTerm())
}

func TestStorageTornTailTruncated(t *testing.T) {
	dir := t.TempDir()
	path, mid := writeLog(t, dir)
	full, err := os.ReadFile(path)
	require.NoError(t, err)
	// A crash mid-write: the second batch only partly on disk.
	require.NoError(t, os.WriteFile(path, full[:mid+11], 0o644))
	s, rec, err := OpenStorage(dir, false)
	require.NoError(t, err)
	require.Len(t, rec.Entries, 3, "the torn record and everything after it are gone")
	require.Equal(t, uint64(0), rec.HardState.GetCommit())
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, mid, fi.Size(), "the torn tail was truncated on disk")
	// The log continues cleanly after the truncation.
	require.NoError(t, s.Append(nil, testEntries(4, 4, 1), true))
	require.NoError(t, s.Close())
	_, rec, err = OpenStorage(dir, false)
	require.NoError(t, err)
	require.Len(t, rec.Entries, 4)
}

func TestStorageZeroFilledTailTruncated(t *testing.T) {
	dir := t.TempDir()
	path, mid := writeLog(t, dir)
	full, err := os.ReadFile(path)
	require.NoError(t, err)
	// The file grew but the data never reached the disk: zeros.
	for i := mid; i < int64(len(full)); i++ {
		full[i] = 0
	}
	require.NoError(t, os.WriteFile(path, full, 0o644))
	_, rec, err := OpenStorage(dir, false)
	require.NoError(t, err)
	require.Len(t, rec.Entries, 3)
}

func TestStorageCorruptLastRecordTruncated(t *testing.T) {
	dir := t.TempDir()
	path, _ := writeLog(t, dir)
	waltest.Flip(t, path, -1, 0xff) // inside the last record (the hard state)
	_, rec, err := OpenStorage(dir, false)
	require.NoError(t, err)
	require.Len(t, rec.Entries, 5)
	require.Equal(t, uint64(0), rec.HardState.GetCommit(), "the corrupt hard state is not applied; the older one stands")
}

func TestStorageCorruptMiddleRefused(t *testing.T) {
	dir := t.TempDir()
	path, _ := writeLog(t, dir)
	waltest.Flip(t, path, wal.LogHeaderSize+wal.RecordHeaderSize+2, 0xff) // inside the first record, valid ones follow
	_, _, err := OpenStorage(dir, false)
	waltest.RequireRefusedAt(t, err, ErrCorrupt, path, wal.LogHeaderSize)
}

func TestStorageSnapshotAndRewrite(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, dir)
	s, _, err := OpenStorage(dir, false)
	require.NoError(t, err)
	snap := &raftpb.Snapshot{Data: []byte("state"), Metadata: &raftpb.SnapshotMetadata{
		Index: proto.Uint64(4), Term: proto.Uint64(1), ConfState: &raftpb.ConfState{Voters: []uint64{1, 2, 3}}}}
	require.NoError(t, s.SaveSnapshot(snap))
	require.NoError(t, s.Rewrite(hardState(1, 1, 4), testEntries(3, 5, 1)))
	require.NoError(t, s.Append(nil, testEntries(6, 6, 1), true))
	require.NoError(t, s.Close())

	s, rec, err := OpenStorage(dir, false)
	require.NoError(t, err)
	require.True(t, proto.Equal(snap, rec.Snapshot))
	require.Equal(t, uint64(3), rec.Entries[0].GetIndex())
	require.Equal(t, uint64(6), rec.Entries[len(rec.Entries)-1].GetIndex())
	require.Equal(t, uint64(4), rec.HardState.GetCommit())

	// A snapshot from a leader replaces the log, keeping the hard state.
	snap2 := proto.Clone(snap).(*raftpb.Snapshot)
	snap2.Metadata.Index = proto.Uint64(10)
	require.NoError(t, s.Save(nil, nil, snap2, true))
	require.NoError(t, s.Close())
	_, rec, err = OpenStorage(dir, false)
	require.NoError(t, err)
	require.Equal(t, uint64(10), rec.Snapshot.GetMetadata().GetIndex())
	require.Empty(t, rec.Entries)
	require.Equal(t, uint64(1), rec.HardState.GetVote(), "the vote survives the log rewrite")

	// A damaged snapshot file is refused, not ignored.
	sp := filepath.Join(dir, snapName)
	waltest.Flip(t, sp, -1, 1)
	_, _, err = OpenStorage(dir, false)
	require.ErrorIs(t, err, ErrCorrupt)
	require.ErrorContains(t, err, sp+": offset ")
}

// recordOffsets lists where each record of the log at path starts.
func recordOffsets(t *testing.T, path string) []int64 {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	recs, _, _, err := wal.Scan(path, data, false)
	require.NoError(t, err)
	var offs []int64
	for _, r := range recs {
		offs = append(offs, r.Offset)
	}
	return offs
}

// The power-loss issue's finding: zeroing the first record's header, with
// six valid records after it, started a node with no entries, no term and
// no vote, and fsynced the cut. Now it is refused, naming the file and the
// offset, and the log is left as it was.
func TestStorageZeroedFirstHeaderRefused(t *testing.T) {
	dir := t.TempDir()
	path, _ := writeLog(t, dir)
	offs := recordOffsets(t, path)
	require.Len(t, offs, 7, "5 entries and 2 hard states")
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	clear(b[offs[0] : offs[0]+wal.RecordHeaderSize])
	require.NoError(t, os.WriteFile(path, b, 0o644))
	_, _, err = OpenStorage(dir, false)
	waltest.RequireRefusedAt(t, err, ErrCorrupt, path, offs[0])
	waltest.RequireUnchanged(t, path, b)
}

// A flipped bit in any length field mid-log is refused, never taken for a
// torn tail.
func TestStorageFlippedLengthMidLogRefused(t *testing.T) {
	dir := t.TempDir()
	path, _ := writeLog(t, dir)
	good, err := os.ReadFile(path)
	require.NoError(t, err)
	offs := recordOffsets(t, path)
	for _, off := range offs[:len(offs)-1] {
		for bit := range 32 {
			b := bytes.Clone(good)
			b[off+int64(bit/8)] ^= 1 << (bit % 8)
			require.NoError(t, os.WriteFile(path, b, 0o644))
			_, _, err = OpenStorage(dir, false)
			waltest.RequireRefusedAt(t, err, ErrCorrupt, path, off, "record at %d, bit %d", off, bit)
		}
	}
}

// Term and vote live in the vote file too, so cutting a torn last record
// (here a hard state) never takes them, and a damaged vote file is
// refused.
func TestStorageTermAndVoteNeverLostSilently(t *testing.T) {
	dir := t.TempDir()
	s, _, err := OpenStorage(dir, false)
	require.NoError(t, err)
	require.NoError(t, s.Append(hardState(1, 1, 0), testEntries(1, 2, 1), true))
	require.NoError(t, s.Append(hardState(3, 2, 2), nil, true)) // a new term and vote
	require.NoError(t, s.Close())
	path := filepath.Join(dir, walName)
	waltest.Flip(t, path, -1, 0x40) // the last record, the hard state of term 3, reads as torn
	s, rec, err := OpenStorage(dir, false)
	require.NoError(t, err)
	require.NoError(t, s.Close())
	require.Equal(t, uint64(3), rec.HardState.GetTerm())
	require.Equal(t, uint64(2), rec.HardState.GetVote())
	require.Equal(t, uint64(0), rec.HardState.GetCommit(), "the commit index is the log's, from the older hard state")
	require.Len(t, rec.Entries, 2)

	vp := filepath.Join(dir, voteName)
	good, err := os.ReadFile(vp)
	require.NoError(t, err)
	for i := range good {
		v := bytes.Clone(good)
		v[i] ^= 1
		require.NoError(t, os.WriteFile(vp, v, 0o644))
		_, _, err = OpenStorage(dir, false)
		require.ErrorIs(t, err, ErrCorrupt, "byte %d", i)
		require.ErrorContains(t, err, vp+": offset ")
	}

	// A vote file that lost the log's vote: missing, or older.
	require.NoError(t, os.Remove(vp))
	_, _, err = OpenStorage(dir, false)
	require.ErrorIs(t, err, ErrCorrupt)
	require.ErrorContains(t, err, vp)
	require.NoError(t, wal.WriteFile(vp, binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, 1), 2), false))
	_, _, err = OpenStorage(dir, false)
	require.ErrorIs(t, err, ErrCorrupt, "term 1 vote 2 against the log's term 1 vote 1")
}

// The log is created before anything else; a snapshot or vote without it
// means its entries are gone.
func TestStorageMissingLogRefused(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, dir)
	require.NoError(t, os.Remove(filepath.Join(dir, walName)))
	_, _, err := OpenStorage(dir, false)
	require.ErrorIs(t, err, ErrCorrupt)
	require.ErrorContains(t, err, filepath.Join(dir, walName)+": offset 0")
}
