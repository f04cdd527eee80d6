package chain

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	pb "github.com/chainraft/chainraft/chain/chainpb"
	"github.com/chainraft/chainraft/internal/wal"
	"github.com/chainraft/chainraft/internal/wal/waltest"
)

func entry(seq uint64, v string) *pb.Entry {
	return &pb.Entry{Seq: seq, Update: &pb.Update{Client: 1, ClientSeq: seq, Op: pb.Op_OP_APPEND, Key: "k", Value: v}}
}

func TestStorageRestoresSnapshotAndLog(t *testing.T) {
	dir := t.TempDir()
	s, rec, err := OpenStorage(dir, 2, false)
	require.NoError(t, err)
	require.Nil(t, rec.Chains[0].Snapshot)
	require.Empty(t, rec.Chains[0].Entries)

	require.NoError(t, s.Save([]Persist{{Chain: 0, Entries: []*pb.Entry{entry(1, "a"), entry(2, "b")}}}))
	require.NoError(t, s.Save([]Persist{
		{Chain: 1, Snapshot: &pb.Snapshot{LastSeq: 10, Data: map[string]string{"x": "y"}}},
		{Chain: 1, Entries: []*pb.Entry{entry(11, "c")}},
	}))
	require.NoError(t, s.Close())

	s, rec, err = OpenStorage(dir, 2, false)
	require.NoError(t, err)
	require.Len(t, rec.Chains[0].Entries, 2)
	require.Equal(t, uint64(10), rec.Chains[1].Snapshot.LastSeq)
	require.Equal(t, "y", rec.Chains[1].Snapshot.Data["x"])
	require.Len(t, rec.Chains[1].Entries, 1)

	c := newTestCore(t, 2, rec)
	require.Equal(t, map[string]string{"k": "ab"}, c.Data(0))
	require.Equal(t, map[string]string{"x": "y", "k": "c"}, c.Data(1))
	require.Equal(t, uint64(11), c.Status()[1].LastSeq)

	// A wipe leaves an empty chain behind, also after a reopen.
	require.NoError(t, s.Save([]Persist{{Chain: 0, Wipe: true}, {Chain: 0, Entries: []*pb.Entry{entry(1, "z")}}}))
	require.NoError(t, s.Close())
	s, rec, err = OpenStorage(dir, 2, false)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"k": "z"}, newTestCore(t, 2, rec).Data(0))
	require.NoError(t, s.Close())
}

func TestStorageCutsTornTail(t *testing.T) {
	dir := t.TempDir()
	s, _, err := OpenStorage(dir, 1, false)
	require.NoError(t, err)
	require.NoError(t, s.Save([]Persist{{Chain: 0, Entries: []*pb.Entry{entry(1, "a"), entry(2, "b")}}}))
	require.NoError(t, s.Close())

	// A crash mid-append leaves half a record.
	path := filepath.Join(dir, "wal-1.log")
	info, err := os.Stat(path)
	require.NoError(t, err)
	require.NoError(t, os.Truncate(path, info.Size()-3))

	s, rec, err := OpenStorage(dir, 1, false)
	require.NoError(t, err)
	require.Len(t, rec.Chains[0].Entries, 1, "the torn record is dropped")
	require.NoError(t, s.Save([]Persist{{Chain: 0, Entries: []*pb.Entry{entry(2, "c")}}}))
	require.NoError(t, s.Close())
	s, rec, err = OpenStorage(dir, 1, false)
	require.NoError(t, err)
	defer s.Close()
	require.Equal(t, map[string]string{"k": "ac"}, newTestCore(t, 1, rec).Data(0), "appends continue after the cut")
}

// writeEntries saves entries 1..n to chain 0 of a fresh directory and
// returns the log's path and the offset where each record starts.
func writeEntries(t *testing.T, n int) (string, string, []int64) {
	dir := t.TempDir()
	s, _, err := OpenStorage(dir, 1, false)
	require.NoError(t, err)
	path := filepath.Join(dir, "wal-1.log")
	var offs []int64
	for i := 1; i <= n; i++ {
		info, err := os.Stat(path)
		require.NoError(t, err)
		offs = append(offs, info.Size())
		require.NoError(t, s.Save([]Persist{{Chain: 0, Entries: []*pb.Entry{entry(uint64(i), "v")}}}))
	}
	require.NoError(t, s.Close())
	return dir, path, offs
}

// Damage before the log's last record is not a torn write: the entries
// after it were durable (and perhaps acknowledged), so the node refuses to
// start instead of silently forgetting them.
func TestStorageRefusesMidLogCorruption(t *testing.T) {
	dir, path, offs := writeEntries(t, 3)
	waltest.Flip(t, path, offs[1]+20, 0xff) // inside the second record's body
	_, _, err := OpenStorage(dir, 1, false)
	require.ErrorIs(t, err, ErrCorrupt)
	require.ErrorContains(t, err, fmt.Sprintf("wal-1.log: offset %d: ", offs[1]))

	// The same damage in the last record is a torn write: cut, no error.
	dir, path, offs = writeEntries(t, 3)
	waltest.Flip(t, path, offs[2]+20, 0xff)
	s, rec, err := OpenStorage(dir, 1, false)
	require.NoError(t, err)
	require.Len(t, rec.Chains[0].Entries, 2)
	require.NoError(t, s.Close())
	info, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, offs[2], info.Size(), "the torn record is cut off the file")
}

// A length field no record of ours can have is judged like a bad checksum:
// corruption mid-log, a torn write at the end; it never sizes an allocation.
func TestStorageImplausibleLength(t *testing.T) {
	dir, path, offs := writeEntries(t, 3)
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	binary.LittleEndian.PutUint32(b[offs[1]:], 0xfffffff0)
	require.NoError(t, os.WriteFile(path, b, 0o644))
	_, _, err = OpenStorage(dir, 1, false)
	require.ErrorIs(t, err, ErrCorrupt)
	require.ErrorContains(t, err, fmt.Sprintf("wal-1.log: offset %d: ", offs[1]))

	dir, path, offs = writeEntries(t, 2)
	b, err = os.ReadFile(path)
	require.NoError(t, err)
	b = append(b[:offs[1]], 0xf0, 0xff, 0xff, 0xff, 1, 2, 3, 4) // a garbled header with nothing after it
	require.NoError(t, os.WriteFile(path, b, 0o644))
	s, rec, err := OpenStorage(dir, 1, false)
	require.NoError(t, err)
	require.Len(t, rec.Chains[0].Entries, 1)
	require.NoError(t, s.Close())
}

// Zeros past the end (a file extended but not written before a crash) are
// a torn tail.
func TestStorageZeroTailCut(t *testing.T) {
	dir, path, offs := writeEntries(t, 2)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o644)
	require.NoError(t, err)
	_, err = f.Write(make([]byte, 100))
	require.NoError(t, err)
	require.NoError(t, f.Close())
	s, rec, err := OpenStorage(dir, 1, false)
	require.NoError(t, err)
	require.Len(t, rec.Chains[0].Entries, 2)
	require.NoError(t, s.Close())
	info, err := os.Stat(path)
	require.NoError(t, err)
	require.Greater(t, info.Size(), offs[1])
	require.Less(t, info.Size(), offs[1]+100)
}

// segmentFiles lists the log segments in dir.
func segmentFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "wal-*.log"))
	require.NoError(t, err)
	for i := range m {
		m[i] = filepath.Base(m[i])
	}
	return m
}

// The chains share one log; a segment is deleted once every chain with
// records in it has a newer snapshot, and not before.
func TestStorageSharedLogSegments(t *testing.T) {
	dir := t.TempDir()
	s, _, err := OpenStorage(dir, 2, false)
	require.NoError(t, err)
	s.segMax = 1 // every Save after the first starts a new segment
	require.NoError(t, s.Save([]Persist{{Chain: 1, Entries: []*pb.Entry{entry(1, "x")}}}))
	for i := 1; i <= 3; i++ {
		require.NoError(t, s.Save([]Persist{{Chain: 0, Entries: []*pb.Entry{entry(uint64(i), strconv.Itoa(i))}}}))
	}
	require.Equal(t, []string{"wal-1.log", "wal-2.log", "wal-3.log", "wal-4.log"}, segmentFiles(t, dir))

	// This Save seals wal-4 and writes entry 4 to wal-5. Chain 0's
	// snapshot covers its entries 1..3: wal-2, wal-3 and wal-4 hold nothing
	// else and go; wal-1 still holds chain 1's only entry.
	require.NoError(t, s.Save([]Persist{
		{Chain: 0, Snapshot: &pb.Snapshot{LastSeq: 3, Data: map[string]string{"k": "123"}}},
		{Chain: 0, Entries: []*pb.Entry{entry(4, "4")}},
	}))
	require.Equal(t, []string{"wal-1.log", "wal-5.log"}, segmentFiles(t, dir))
	require.NoError(t, s.Close())

	s, rec, err := OpenStorage(dir, 2, false)
	require.NoError(t, err)
	c := newTestCore(t, 2, rec)
	require.Equal(t, map[string]string{"k": "1234"}, c.Data(0))
	require.Equal(t, map[string]string{"k": "x"}, c.Data(1))

	// Once chain 1 is snapshotted too, wal-1 goes at the next opportunity.
	require.NoError(t, s.Save([]Persist{{Chain: 1, Snapshot: &pb.Snapshot{LastSeq: 1, Data: map[string]string{"k": "x"}}}}))
	require.NotContains(t, segmentFiles(t, dir), "wal-1.log")
	require.NoError(t, s.Close())
	s, rec, err = OpenStorage(dir, 2, false)
	require.NoError(t, err)
	defer s.Close()
	require.Equal(t, map[string]string{"k": "x"}, newTestCore(t, 2, rec).Data(1))
}

// A wipe makes the chain's older records dead, even those whose sequence
// numbers the new history reuses or passes.
func TestStorageWipeKillsOlderRecords(t *testing.T) {
	dir := t.TempDir()
	s, _, err := OpenStorage(dir, 1, false)
	require.NoError(t, err)
	require.NoError(t, s.Save([]Persist{{Chain: 0, Entries: []*pb.Entry{entry(1, "a"), entry(2, "b"), entry(3, "c")}}}))
	require.NoError(t, s.Save([]Persist{{Chain: 0, Wipe: true}}))
	require.NoError(t, s.Close())
	s, rec, err := OpenStorage(dir, 1, false)
	require.NoError(t, err)
	require.Empty(t, rec.Chains[0].Entries)
	require.Empty(t, newTestCore(t, 1, rec).Data(0))

	require.NoError(t, s.Save([]Persist{{Chain: 0, Snapshot: &pb.Snapshot{LastSeq: 1, Data: map[string]string{"k": "p"}}}}))
	require.NoError(t, s.Save([]Persist{{Chain: 0, Entries: []*pb.Entry{entry(2, "q"), entry(3, "r"), entry(4, "s")}}}))
	require.NoError(t, s.Close())
	s, rec, err = OpenStorage(dir, 1, false)
	require.NoError(t, err)
	defer s.Close()
	require.Equal(t, map[string]string{"k": "pqrs"}, newTestCore(t, 1, rec).Data(0))
}

func TestStorageRefusesRecordsItCannotPlace(t *testing.T) {
	// A record of a generation whose snapshot is gone.
	dir := t.TempDir()
	s, _, err := OpenStorage(dir, 1, false)
	require.NoError(t, err)
	require.NoError(t, s.Save([]Persist{
		{Chain: 0, Snapshot: &pb.Snapshot{LastSeq: 1}},
		{Chain: 0, Entries: []*pb.Entry{entry(2, "b")}},
	}))
	require.NoError(t, s.Close())
	require.NoError(t, os.Remove(filepath.Join(dir, "chain-0.snap")))
	_, _, err = OpenStorage(dir, 1, false)
	require.ErrorIs(t, err, ErrCorrupt)

	// A record of a chain the node does not have.
	dir = t.TempDir()
	s, _, err = OpenStorage(dir, 2, false)
	require.NoError(t, err)
	require.NoError(t, s.Save([]Persist{{Chain: 1, Entries: []*pb.Entry{entry(1, "a")}}}))
	require.NoError(t, s.Close())
	_, _, err = OpenStorage(dir, 1, false)
	require.ErrorIs(t, err, ErrCorrupt)
	require.ErrorContains(t, err, "chain 1")
}

// Only the open segment may end torn: a sealed one was synced whole.
func TestStorageTornSealedSegmentIsCorrupt(t *testing.T) {
	dir, path := writeSealedSegment(t)
	info, err := os.Stat(path)
	require.NoError(t, err)
	require.NoError(t, os.Truncate(path, info.Size()-3))
	_, _, err = OpenStorage(dir, 1, false)
	require.ErrorIs(t, err, ErrCorrupt)
	require.ErrorContains(t, err, "wal-1.log")
}

// A chain that writes rarely pins the oldest segment; past sealedMax sealed
// segments Storage names it, and its snapshot lets the segment go.
func TestStoragePinningNamesChainsHoldingOldSegments(t *testing.T) {
	dir := t.TempDir()
	s, _, err := OpenStorage(dir, 2, false)
	require.NoError(t, err)
	defer s.Close()
	s.segMax = 1
	require.NoError(t, s.Save([]Persist{{Chain: 1, Entries: []*pb.Entry{entry(1, "x")}}}))
	for i := 1; i <= sealedMax; i++ {
		require.NoError(t, s.Save([]Persist{{Chain: 0, Entries: []*pb.Entry{entry(uint64(i), "v")}}}))
		require.Nil(t, s.Pinning(), "%d sealed segments", len(s.sealed))
	}
	require.NoError(t, s.Save([]Persist{{Chain: 0, Entries: []*pb.Entry{entry(sealedMax+1, "v")}}}))
	require.Equal(t, []int{1}, s.Pinning(), "chain 1's only entry holds wal-1")

	require.NoError(t, s.Save([]Persist{{Chain: 1, Snapshot: &pb.Snapshot{LastSeq: 1, Data: map[string]string{"k": "x"}}}}))
	require.NotContains(t, segmentFiles(t, dir), "wal-1.log")
	// Chain 1's snapshot is larger than the sealed log now (segMax is 1
	// byte): compaction waits until the log outgrows it.
	require.Nil(t, s.Pinning())
	for i := uint64(sealedMax + 2); s.Pinning() == nil; i++ {
		require.Less(t, i, uint64(1000))
		require.NoError(t, s.Save([]Persist{{Chain: 0, Entries: []*pb.Entry{entry(i, "v")}}}))
	}
	require.Equal(t, []int{0}, s.Pinning(), "now chain 0's entries hold the oldest")
}

// The power-loss issue's finding: one flipped bit in the length of a record
// mid-log kept 1 of 5 entries. A length is now covered by its header's
// checksum, and a bad record with valid ones after it is refused, naming
// the file and the offset; the file is left as it was.
func TestStorageFlippedLengthMidLogRefused(t *testing.T) {
	for bit := range 32 {
		dir, path, offs := writeEntries(t, 5)
		b := waltest.Flip(t, path, offs[1]+int64(bit/8), 1<<(bit%8))
		_, _, err := OpenStorage(dir, 1, false)
		waltest.RequireRefusedAt(t, err, ErrCorrupt, path, offs[1], "bit %d", bit)
		waltest.RequireUnchanged(t, path, b)
	}
}

// The power-loss issue's finding: a flipped byte in a snapshot changed a
// restored value (w3-41 became w3-91). Snapshots now carry a checksum; any
// flipped byte is refused, naming the file and offset.
func TestStorageSnapshotDamageRefused(t *testing.T) {
	dir := t.TempDir()
	s, _, err := OpenStorage(dir, 1, false)
	require.NoError(t, err)
	require.NoError(t, s.Save([]Persist{{Chain: 0, Snapshot: &pb.Snapshot{LastSeq: 41, Data: map[string]string{"k": "w3-41"}}}}))
	require.NoError(t, s.Close())
	path := filepath.Join(dir, "chain-0.snap")
	good, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Positive(t, bytes.Index(good, []byte("w3-41")))
	for i := range good {
		b := bytes.Clone(good)
		b[i] ^= 0x08
		require.NoError(t, os.WriteFile(path, b, 0o644))
		_, _, err = OpenStorage(dir, 1, false)
		require.ErrorIs(t, err, ErrCorrupt, "byte %d", i)
		require.ErrorContains(t, err, path+": offset ")
	}
	require.NoError(t, os.WriteFile(path, good[:len(good)-1], 0o644))
	_, _, err = OpenStorage(dir, 1, false)
	require.ErrorIs(t, err, ErrCorrupt, "a truncated snapshot")

	require.NoError(t, os.WriteFile(path, good, 0o644))
	s, rec, err := OpenStorage(dir, 1, false)
	require.NoError(t, err)
	require.NoError(t, s.Close())
	require.Equal(t, "w3-41", rec.Chains[0].Snapshot.Data["k"])
}

// A segment is sealed only after it was synced whole, so damage anywhere
// in it is refused even with nothing valid after it in the segment, while
// the open segment after it may still end torn.
func TestStorageSegmentAfterDamagedOne(t *testing.T) {
	build := func() string {
		dir := t.TempDir()
		s, _, err := OpenStorage(dir, 1, false)
		require.NoError(t, err)
		s.segMax = 1
		for i := 1; i <= 3; i++ {
			require.NoError(t, s.Save([]Persist{{Chain: 0, Entries: []*pb.Entry{entry(uint64(i), strconv.Itoa(i))}}}))
		}
		require.NoError(t, s.Close())
		require.Equal(t, []string{"wal-1.log", "wal-2.log", "wal-3.log"}, segmentFiles(t, dir))
		return dir
	}
	flipLast := func(path string) {
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		b[len(b)-1] ^= 1
		require.NoError(t, os.WriteFile(path, b, 0o644))
	}

	dir := build()
	flipLast(filepath.Join(dir, "wal-2.log"))
	_, _, err := OpenStorage(dir, 1, false)
	require.ErrorIs(t, err, ErrCorrupt)
	require.ErrorContains(t, err, "wal-2.log: offset ")
	require.ErrorContains(t, err, "synced whole")

	dir = build()
	flipLast(filepath.Join(dir, "wal-3.log"))
	s, rec, err := OpenStorage(dir, 1, false)
	require.NoError(t, err)
	require.NoError(t, s.Close())
	require.Equal(t, map[string]string{"k": "12"}, newTestCore(t, 1, rec).Data(0), "the open segment's torn record is cut")
}

// Files of an older format are refused, never read as empty or torn.
func TestStorageOlderFormatRefused(t *testing.T) {
	dir := t.TempDir()
	// The old layout: a bare generation and protobuf snapshot.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "chain-0.snap"), []byte{1, 0, 0, 0, 0, 0, 0, 0}, 0o644))
	_, _, err := OpenStorage(dir, 1, false)
	require.ErrorIs(t, err, ErrCorrupt)
	require.ErrorContains(t, err, "chain-0.snap: offset 0")

	dir = t.TempDir()
	// The old record framing: [len][crc][chain][gen][entry].
	require.NoError(t, os.WriteFile(filepath.Join(dir, "wal-1.log"), []byte{12, 0, 0, 0, 9, 9, 9, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 0o644))
	_, _, err = OpenStorage(dir, 1, false)
	require.ErrorIs(t, err, ErrCorrupt)
	require.ErrorContains(t, err, "wal-1.log: offset 0")
}

// Only sealed segments are ever deleted: a snapshot with no segment beside
// it means the log is gone, and the node refuses to start.
func TestStorageMissingLogRefused(t *testing.T) {
	dir := t.TempDir()
	s, _, err := OpenStorage(dir, 1, false)
	require.NoError(t, err)
	require.NoError(t, s.Save([]Persist{{Chain: 0, Snapshot: &pb.Snapshot{LastSeq: 1}}, {Chain: 0, Entries: []*pb.Entry{entry(2, "b")}}}))
	require.NoError(t, s.Close())
	require.NoError(t, os.Remove(filepath.Join(dir, "wal-1.log")))
	_, _, err = OpenStorage(dir, 1, false)
	require.ErrorIs(t, err, ErrCorrupt)
	require.ErrorContains(t, err, "no log segment")
}

// A sealed segment cut at a record boundary reads as a valid shorter log;
// only its missing seal shows that synced records were lost, and the node
// refuses to start. A crash after the seal, before the next segment was
// created, leaves a sealed last segment: a new one is started after it.
func TestStorageSealedSegmentCutAtBoundary(t *testing.T) {
	dir, path := writeSealedSegment(t)
	full, err := os.ReadFile(path)
	require.NoError(t, err)
	// wal-1 is the header, two records of 40 bytes, the seal.
	cut := int64(len(full)) - wal.RecordHeaderSize - 40
	require.NoError(t, os.WriteFile(path, full[:cut], 0o644))
	_, _, err = OpenStorage(dir, 1, false)
	waltest.RequireRefusedAt(t, err, ErrCorrupt, path, cut)

	// wal-1 whole and sealed, wal-2 never created.
	require.NoError(t, os.WriteFile(path, full, 0o644))
	require.NoError(t, os.Remove(filepath.Join(dir, "wal-2.log")))
	s, rec, err := OpenStorage(dir, 1, false)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"k": "ab"}, newTestCore(t, 1, rec).Data(0))
	require.NoError(t, s.Save([]Persist{{Chain: 0, Entries: []*pb.Entry{entry(3, "d")}}}))
	require.NoError(t, s.Close())
	require.Equal(t, []string{"wal-1.log", "wal-2.log"}, segmentFiles(t, dir))
	s, rec, err = OpenStorage(dir, 1, false)
	require.NoError(t, err)
	defer s.Close()
	require.Equal(t, map[string]string{"k": "abd"}, newTestCore(t, 1, rec).Data(0))
}

// writeSealedSegment writes entries 1 and 2 into a segment that a third
// entry's write then seals (wal-1.log, its path), with entry 3 in wal-2.
func writeSealedSegment(t *testing.T) (dir, path string) {
	t.Helper()
	dir = t.TempDir()
	s, _, err := OpenStorage(dir, 1, false)
	require.NoError(t, err)
	s.segMax = 1
	require.NoError(t, s.Save([]Persist{{Chain: 0, Entries: []*pb.Entry{entry(1, "a"), entry(2, "b")}}}))
	require.NoError(t, s.Save([]Persist{{Chain: 0, Entries: []*pb.Entry{entry(3, "c")}}}))
	require.NoError(t, s.Close())
	return dir, filepath.Join(dir, "wal-1.log")
}

// A compaction is written apart from the chain's entries (the persister
// writes a large state while every chain's entries go on): it keeps the
// chain's generation, so the entries saved while it was written, past its
// last sequence, are replayed after it, and the segments holding only
// entries it covers go.
func TestStorageCompactionWrittenApart(t *testing.T) {
	dir := t.TempDir()
	s, _, err := OpenStorage(dir, 1, false)
	require.NoError(t, err)
	s.segMax = 1
	for i := uint64(1); i <= 3; i++ {
		require.NoError(t, s.Save([]Persist{{Chain: 0, Entries: []*pb.Entry{entry(i, strconv.Itoa(int(i)))}}}))
	}
	w := s.BeginSnapshot(Persist{Chain: 0, Snapshot: &pb.Snapshot{LastSeq: 3, Data: map[string]string{"k": "123"}}, Compact: true})
	require.NoError(t, s.Save([]Persist{{Chain: 0, Entries: []*pb.Entry{entry(4, "4")}}}))
	require.NoError(t, w.Write())
	require.NoError(t, s.Save([]Persist{{Chain: 0, Entries: []*pb.Entry{entry(5, "5")}}}))
	s.EndSnapshot(w)
	require.Equal(t, []string{"wal-4.log", "wal-5.log"}, segmentFiles(t, dir), "the segments of entries 1..3 are dead")
	require.NoError(t, s.Close())

	s, rec, err := OpenStorage(dir, 1, false)
	require.NoError(t, err)
	defer s.Close()
	require.Equal(t, map[string]string{"k": "12345"}, newTestCore(t, 1, rec).Data(0))
}

// Compaction costs in proportion to the data: a chain is asked for a
// snapshot only once the sealed log outgrows the snapshot it would write.
// With large values every chain's whole state was written every few
// segments, on every node at once.
func TestStoragePinningWaitsForTheLogToOutgrowTheSnapshot(t *testing.T) {
	dir := t.TempDir()
	s, _, err := OpenStorage(dir, 1, false)
	require.NoError(t, err)
	defer s.Close()
	s.segMax = 1024
	big := &pb.Snapshot{LastSeq: 1, Data: map[string]string{"k": string(make([]byte, 10*1024))}}
	require.NoError(t, s.Save([]Persist{{Chain: 0, Snapshot: big, Compact: true}}))
	seq := uint64(1)
	for len(s.sealed) < 10 {
		seq++
		require.NoError(t, s.Save([]Persist{{Chain: 0, Entries: []*pb.Entry{entry(seq, string(make([]byte, 1024)))}}}))
		require.Nil(t, s.Pinning(), "%d sealed segments of about 1 KiB against a 10 KiB snapshot", len(s.sealed))
	}
	for len(s.sealed) <= 12 {
		seq++
		require.NoError(t, s.Save([]Persist{{Chain: 0, Entries: []*pb.Entry{entry(seq, string(make([]byte, 1024)))}}}))
	}
	require.Equal(t, []int{0}, s.Pinning())
}
