package raftkv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/chainraft/chainraft/internal/wal"
	pb "github.com/chainraft/chainraft/raftkv/raftkvpb"
)

// A snapshot job holds the state at its index while the loop applies more,
// and raft's storage gets the snapshot without its data.
func TestCoreSnapshotJobHoldsItsIndex(t *testing.T) {
	tn := newTestNet(t, 3, CoreConfig{SnapshotEvery: 1 << 30, SnapshotKeep: 1 << 20, SnapshotBytes: 64 << 10})
	l := tn.leader()
	c := tn.cores[l]
	big := strings.Repeat("x", 4<<10)
	for i := uint64(1); i <= 3; i++ {
		require.NoError(t, tn.write(l, put(5, i, "k", big+string(rune('a'+i)))).Err)
	}
	require.Nil(t, c.StartSnapshot(), "neither the count nor the bytes are due")
	for i := uint64(4); i <= 20; i++ {
		require.NoError(t, tn.write(l, put(5, i, "k", big+string(rune('a'+i)))).Err)
	}
	// testNet takes snapshots in one go after every Ready; start one by
	// hand and hold it while more writes apply.
	snapBefore := c.snapIndex
	require.Greater(t, c.sinceSnapBytes, uint64(0))
	c.sinceSnapBytes = c.cfg.SnapshotBytes
	j := c.StartSnapshot()
	require.NotNil(t, j, "due by bytes")
	at := j.Index()
	require.Equal(t, c.Applied(), at)
	require.NoError(t, tn.write(l, put(5, 21, "k", "later")).Err)
	require.Greater(t, c.Applied(), at)
	require.Nil(t, c.StartSnapshot(), "one job at a time")
	require.Equal(t, snapBefore, c.snapIndex, "testNet's own snapshots wait for the job")

	snap := j.Build()
	got := newFSM()
	require.NoError(t, got.restore(snap.GetData()))
	require.Equal(t, big+string(rune('a'+20)), got.get("k").GetValue(), "the job has the state at its index, not the later write")
	require.Equal(t, "later", c.Get("k").GetValue())

	require.NoError(t, tn.stores[l].PrepareSnapshot(snap))
	require.False(t, c.SnapshotSuperseded(j))
	require.NoError(t, tn.stores[l].CommitSnapshot())
	cp := c.FinishSnapshot(j)
	require.NotNil(t, cp)
	require.Equal(t, at, c.snapIndex)
	ms, err := c.ms.Snapshot()
	require.NoError(t, err)
	require.Equal(t, at, ms.GetMetadata().GetIndex())
	require.Empty(t, ms.GetData(), "raft's storage holds no second copy of the state")
	var kept uint64
	for _, e := range cp.Entries {
		if e.GetIndex() <= at {
			kept += uint64(len(e.GetData()))
		}
	}
	require.LessOrEqual(t, kept, c.cfg.SnapshotBytes/8, "the log behind the snapshot is bounded by bytes")
	first, _ := c.ms.FirstIndex()
	require.Greater(t, first, uint64(10), "and compacted")

	disk, err := tn.stores[l].LoadSnapshot()
	require.NoError(t, err)
	require.True(t, proto.Equal(snap, disk), "the durable snapshot is the job's")
}

// A job overtaken by a snapshot from the leader is dropped, and a node
// added by a conf change is offered no snapshot older than the change.
func TestCoreSnapshotJobSupersededAndConfHold(t *testing.T) {
	tn := newTestNet(t, 3, CoreConfig{SnapshotEvery: 10, SnapshotKeep: 2})
	l := tn.leader()
	f := tn.follower(l)
	require.NoError(t, tn.write(l, put(5, 1, "k", "a")).Err)
	fc := tn.cores[f]
	fc.confSinceSnap = true // due, whatever the count
	j := fc.StartSnapshot()
	require.NotNil(t, j)
	tn.isolate(f)
	tn.writes(l, 5, 2, 40)
	tn.heal()
	tn.tick(5)
	require.Equal(t, 1, fc.installed, "the follower was brought up by the leader's snapshot")
	require.True(t, fc.SnapshotSuperseded(j))
	require.Nil(t, fc.FinishSnapshot(j))

	// Hold the leader's snapshots with a job of its own, then add a node:
	// the only snapshot raft has predates the change, and is not offered.
	lc := tn.cores[l]
	lc.confSinceSnap = true
	hold := lc.StartSnapshot()
	require.NotNil(t, hold)
	tn.members = append(tn.members, Member{ID: 4, Addr: "node4"})
	tn.dirs[4] = t.TempDir()
	tn.start(4, nil)
	require.NoError(t, lc.AddNode(79, Member{ID: 4, Addr: "node4"}))
	tn.tick(3)
	require.Contains(t, tn.takeReplies(l), Reply{Conf: 79})
	_, err := coreStorage{lc.ms, lc}.Snapshot()
	require.ErrorIs(t, err, raft.ErrSnapshotTemporarilyUnavailable)
	require.Zero(t, tn.cores[4].installed, "no snapshot without the new node in its ConfState")

	require.NotNil(t, lc.FinishSnapshot(hold), "a job older than the change still finishes")
	_, err = coreStorage{lc.ms, lc}.Snapshot()
	require.ErrorIs(t, err, raft.ErrSnapshotTemporarilyUnavailable, "it does not cover the change")
	tn.tick(5) // the next Ready takes one that does
	snap, err := coreStorage{lc.ms, lc}.Snapshot()
	require.NoError(t, err)
	require.Contains(t, snap.GetMetadata().GetConfState().GetVoters(), uint64(4))
	require.Equal(t, 1, tn.cores[4].installed)
	require.Equal(t, lc.Get("k"), tn.cores[4].Get("k"))
}

// The snapshot file's encoding leaves the data in the file's buffer, and
// reads back exactly what proto.Unmarshal would.
func TestStorageSnapshotEncodingMatchesProto(t *testing.T) {
	snap := &raftpb.Snapshot{Data: []byte("state"), Metadata: &raftpb.SnapshotMetadata{
		Index: proto.Uint64(7), Term: proto.Uint64(2), ConfState: &raftpb.ConfState{Voters: []uint64{1, 2, 3}}}}
	for _, s := range []*raftpb.Snapshot{snap, {Metadata: snap.GetMetadata()}} {
		parts, err := snapshotParts(s)
		require.NoError(t, err)
		var body []byte
		for _, p := range parts {
			body = append(body, p...)
		}
		var viaProto raftpb.Snapshot
		require.NoError(t, proto.Unmarshal(body, &viaProto))
		require.True(t, proto.Equal(s, &viaProto))
		got, err := decodeSnapshot(body)
		require.NoError(t, err)
		require.True(t, proto.Equal(s, got))
		whole, err := proto.Marshal(s)
		require.NoError(t, err)
		got, err = decodeSnapshot(whole)
		require.NoError(t, err)
		require.True(t, proto.Equal(s, got), "a snapshot marshalled whole decodes too")
	}
	_, err := decodeSnapshot([]byte{0x0a, 0x10, 'x'})
	require.Error(t, err, "data shorter than its length")
}

// A snapshot prepared but never committed (the node crashed first) is not
// state: the storage reopens with the old one and drops the file.
func TestStoragePreparedSnapshotDroppedOnOpen(t *testing.T) {
	dir := t.TempDir()
	s, _, err := OpenStorage(dir, false)
	require.NoError(t, err)
	old := &raftpb.Snapshot{Data: []byte("old"), Metadata: &raftpb.SnapshotMetadata{Index: proto.Uint64(3), Term: proto.Uint64(1)}}
	require.NoError(t, s.SaveSnapshot(old))
	require.NoError(t, s.Rewrite(hardState(1, 1, 3), nil))
	require.NoError(t, s.PrepareSnapshot(&raftpb.Snapshot{Data: []byte("new"), Metadata: &raftpb.SnapshotMetadata{Index: proto.Uint64(5), Term: proto.Uint64(1)}}))
	require.NoError(t, s.Close())

	s, rec, err := OpenStorage(dir, false)
	require.NoError(t, err)
	defer s.Close()
	require.True(t, proto.Equal(old, rec.Snapshot))
	require.Error(t, s.CommitSnapshot(), "the prepared file is gone")
}

// rotated writes entries 1-10, starts a snapshot at 6 by rotating the log
// (the new log starts with 7-10, as Core.LogAfter gives), and appends 11-12
// to the new log. It returns the storage, still open.
func rotated(t *testing.T, dir string) *Storage {
	s, _, err := OpenStorage(dir, false)
	require.NoError(t, err)
	require.NoError(t, s.Append(hardState(1, 1, 10), testEntries(1, 10, 1), true))
	require.NoError(t, s.Rotate(hardState(1, 1, 10), testEntries(7, 10, 1)))
	require.FileExists(t, filepath.Join(dir, oldWalName))
	require.NoError(t, s.Append(hardState(1, 1, 12), testEntries(11, 12, 1), true))
	return s
}

func indexes(ents []*raftpb.Entry) []uint64 {
	var out []uint64
	for _, e := range ents {
		out = append(out, e.GetIndex())
	}
	return out
}

// restarted closes s and recovers dir, as a node restarting would.
func restarted(t *testing.T, s *Storage, dir string) *Recovered {
	require.NoError(t, s.Close())
	s2, rec, err := OpenStorage(dir, false)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s2.Close() })
	return rec
}

func TestStorageRotationSurvivesCrashes(t *testing.T) {
	all := indexes(testEntries(1, 12, 1))
	snap6 := &raftpb.Snapshot{Data: []byte("s"), Metadata: &raftpb.SnapshotMetadata{Index: proto.Uint64(6), Term: proto.Uint64(1)}}

	t.Run("before the snapshot is in place", func(t *testing.T) {
		dir := t.TempDir()
		require.NoError(t, rotated(t, dir).Close())
		s, rec, err := OpenStorage(dir, false)
		require.NoError(t, err)
		require.Equal(t, all, indexes(rec.Entries), "the old log, then the new one")
		require.Equal(t, uint64(12), rec.HardState.GetCommit())
		require.NoFileExists(t, filepath.Join(dir, oldWalName), "made one log again")
		require.Equal(t, all, indexes(restarted(t, s, dir).Entries))
	})
	t.Run("snapshot in place, old log not yet dropped", func(t *testing.T) {
		dir := t.TempDir()
		s := rotated(t, dir)
		require.NoError(t, s.PrepareSnapshot(snap6))
		require.NoError(t, s.CommitSnapshot())
		rec := restarted(t, s, dir)
		require.True(t, proto.Equal(snap6, rec.Snapshot))
		require.Equal(t, all, indexes(rec.Entries), "the entries below the snapshot are the Core's to skip")
	})
	t.Run("old log dropped", func(t *testing.T) {
		dir := t.TempDir()
		s := rotated(t, dir)
		require.NoError(t, s.SaveSnapshot(snap6))
		require.NoError(t, s.DropOldLog())
		require.Equal(t, indexes(testEntries(7, 12, 1)), indexes(restarted(t, s, dir).Entries))
	})
	t.Run("sealed, not yet renamed", func(t *testing.T) {
		dir := t.TempDir()
		s, _, err := OpenStorage(dir, false)
		require.NoError(t, err)
		require.NoError(t, s.Append(hardState(1, 1, 10), testEntries(1, 10, 1), true))
		require.NoError(t, s.log.Seal())
		require.NoError(t, s.Close())
		s, rec, err := OpenStorage(dir, false)
		require.NoError(t, err)
		require.Equal(t, indexes(testEntries(1, 10, 1)), indexes(rec.Entries))
		require.NoError(t, s.Append(nil, testEntries(11, 11, 1), true), "appends go on after a sealed log")
		require.NoError(t, s.Close())
	})
	t.Run("renamed, no new log yet", func(t *testing.T) {
		dir := t.TempDir()
		s, _, err := OpenStorage(dir, false)
		require.NoError(t, err)
		require.NoError(t, s.Append(hardState(1, 1, 10), testEntries(1, 10, 1), true))
		require.NoError(t, s.log.Seal())
		require.NoError(t, s.Close())
		require.NoError(t, os.Rename(filepath.Join(dir, walName), filepath.Join(dir, oldWalName)))
		_, rec, err := OpenStorage(dir, false)
		require.NoError(t, err)
		require.Equal(t, indexes(testEntries(1, 10, 1)), indexes(rec.Entries))
		require.Equal(t, uint64(10), rec.HardState.GetCommit())
	})
	t.Run("a leader's snapshot rewrote the log, old log not yet dropped", func(t *testing.T) {
		dir := t.TempDir()
		s := rotated(t, dir)
		old, err := os.ReadFile(filepath.Join(dir, oldWalName))
		require.NoError(t, err)
		snap20 := &raftpb.Snapshot{Data: []byte("l"), Metadata: &raftpb.SnapshotMetadata{Index: proto.Uint64(20), Term: proto.Uint64(2)}}
		require.NoError(t, s.Save(hardState(2, 0, 20), testEntries(21, 22, 2), snap20, true))
		require.NoFileExists(t, filepath.Join(dir, oldWalName))
		require.NoError(t, s.Close())
		// The crash came between the rewrite and the removal.
		require.NoError(t, os.WriteFile(filepath.Join(dir, oldWalName), old, 0o644))
		_, rec, err := OpenStorage(dir, false)
		require.NoError(t, err, "a stale old log is no damage")
		require.Equal(t, indexes(testEntries(21, 22, 2)), indexes(rec.Entries))
	})
	t.Run("a torn old log is refused", func(t *testing.T) {
		dir := t.TempDir()
		require.NoError(t, rotated(t, dir).Close())
		path := filepath.Join(dir, oldWalName)
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(path, b[:len(b)-5], 0o644))
		_, _, err = OpenStorage(dir, false)
		require.ErrorIs(t, err, ErrCorrupt)
		require.ErrorContains(t, err, path)
	})
}

// While a snapshot travels to a follower, the leader keeps the entries
// after it, so that the follower continues from there by appends instead
// of needing another snapshot.
func TestCoreLeaderKeepsEntriesAfterSnapshotInFlight(t *testing.T) {
	tn := newTestNet(t, 3, CoreConfig{SnapshotEvery: 10, SnapshotKeep: 2})
	l := tn.leader()
	f := tn.follower(l)
	tn.crash(f)
	tn.writes(l, 5, 1, 30)
	tn.holdSnaps = true
	tn.restart(f)
	tn.tick(3)
	require.Len(t, tn.held, 1, "the follower is sent a snapshot")
	pending := tn.held[0].GetSnapshot().GetMetadata().GetIndex()
	tn.writes(l, 5, 31, 80)
	lc := tn.cores[l]
	require.Greater(t, lc.snapIndex, pending+20, "the leader snapshotted since")
	first, _ := lc.ms.FirstIndex()
	require.LessOrEqual(t, first, pending+1, "but kept the entries after the snapshot in flight")

	tn.holdSnaps = false
	m := tn.held[0]
	tn.held = nil
	require.NotEmpty(t, m.GetSnapshot().GetData())
	require.NoError(t, tn.cores[f].Step(m))
	require.Empty(t, m.GetSnapshot().GetData(), "raft got the snapshot without its data, which the Core kept")
	require.Len(t, tn.cores[f].snapData, 1)
	lc.ReportSnapshot(f, true)
	tn.tick(5)
	require.Equal(t, 1, tn.cores[f].installed, "one snapshot, then appends")
	require.Empty(t, tn.cores[f].snapData, "handed out and let go")
	require.Equal(t, lc.Applied(), tn.cores[f].Applied())
	require.Equal(t, lc.Get("k"), tn.cores[f].Get("k"))
	first, _ = lc.ms.FirstIndex()
	for i := uint64(81); i <= 100; i++ {
		require.NoError(t, tn.write(l, put(5, i, "k", "y")).Err)
	}
	after, _ := lc.ms.FirstIndex()
	require.Greater(t, after, first, "with the follower caught up, compaction goes on")
}

// A snapshot streamed to its file decodes to the state marshal gives.
func TestStoragePrepareJobStreamsTheState(t *testing.T) {
	f := newFSM()
	f.data["k"] = strings.Repeat("v", 200<<10) // longer than the copy buffer
	f.data["empty"] = ""
	f.data["ключ"] = "значение"
	f.sessions[7] = &pb.Session{Client: 7, Seq: 3, Result: &pb.Result{Swapped: true}}
	f.members[1] = "n1"
	f.removed[2] = true
	meta := &raftpb.SnapshotMetadata{Index: proto.Uint64(9), Term: proto.Uint64(2), ConfState: &raftpb.ConfState{Voters: []uint64{1}}}
	for _, state := range []*fsm{f, newFSM()} {
		dir := t.TempDir()
		s, _, err := OpenStorage(dir, false)
		require.NoError(t, err)
		j := &SnapshotJob{meta: meta, state: state}
		require.NoError(t, s.PrepareJob(j))
		require.NoError(t, s.CommitSnapshot())
		got, err := s.LoadSnapshot()
		require.NoError(t, err)
		require.True(t, proto.Equal(meta, got.GetMetadata()))
		var streamed, marshalled pb.StateSnapshot
		require.NoError(t, proto.Unmarshal(got.GetData(), &streamed))
		require.NoError(t, proto.Unmarshal(j.Build().GetData(), &marshalled))
		require.True(t, proto.Equal(&marshalled, &streamed), "streamed and marshalled state differ")
		back := newFSM()
		require.NoError(t, back.restore(got.GetData()))
		require.Equal(t, state.digest(), back.digest())
		require.NoError(t, s.Close())
	}
}

// readAll drains a snapshot source in pieces of n bytes.
func readAll(t *testing.T, src snapSource, n int) ([]byte, error) {
	t.Helper()
	var out []byte
	for left := src.Size(); left > 0; {
		piece, err := src.Next(int(min(int64(n), left)))
		if err != nil {
			return out, err
		}
		out = append(out, piece...)
		left -= int64(len(piece))
	}
	return out, nil
}

// The sender reads a snapshot from its file piece by piece; a damaged file
// never yields its last piece.
func TestStorageSnapshotReadInPieces(t *testing.T) {
	dir := t.TempDir()
	s, _, err := OpenStorage(dir, true)
	require.NoError(t, err)
	defer s.Close()
	data := []byte(strings.Repeat("0123456789abcdef", 20000))
	meta := &raftpb.SnapshotMetadata{Index: proto.Uint64(5), Term: proto.Uint64(1), ConfState: &raftpb.ConfState{Voters: []uint64{1, 2}}}
	require.NoError(t, s.SaveSnapshot(&raftpb.Snapshot{Data: data, Metadata: meta}))

	src, err := s.snapshotSource()
	require.NoError(t, err)
	require.IsType(t, &SnapshotReader{}, src, "streamed from the file")
	require.True(t, proto.Equal(meta, src.Metadata()))
	got, err := readAll(t, src, 4096)
	require.NoError(t, err)
	require.Equal(t, data, got)
	require.NoError(t, src.Close())

	path := filepath.Join(dir, snapName)
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	b[len(b)-100] ^= 1 // in the data's last piece
	require.NoError(t, os.WriteFile(path, b, 0o644))
	src, err = s.snapshotSource()
	require.NoError(t, err)
	got, err = readAll(t, src, 4096)
	require.ErrorIs(t, err, ErrCorrupt)
	require.Less(t, len(got), len(data), "the last piece is held back")
	require.NoError(t, src.Close())

	// A file with the data before the metadata (proto.Marshal's order) is
	// sent from memory.
	whole, err := proto.Marshal(&raftpb.Snapshot{Data: data, Metadata: meta})
	require.NoError(t, err)
	require.NoError(t, wal.WriteFile(path, whole, true))
	src, err = s.snapshotSource()
	require.NoError(t, err)
	require.IsType(t, &memSnapshot{}, src)
	got, err = readAll(t, src, 4096)
	require.NoError(t, err)
	require.Equal(t, data, got)

	// No data at all.
	require.NoError(t, s.SaveSnapshot(&raftpb.Snapshot{Metadata: meta}))
	src, err = s.snapshotSource()
	require.NoError(t, err)
	require.Zero(t, src.Size())
	require.True(t, proto.Equal(meta, src.Metadata()))
	require.NoError(t, src.Close())
}

// The state machine knows its size, keys and values, through every kind of
// write and a restore: StartSnapshot weighs the log against it.
func TestFSMCountsItsBytes(t *testing.T) {
	f := newFSM()
	seq := uint64(0)
	apply := func(op pb.Op, key, value, expect string) {
		seq++
		_, err := f.apply(&pb.Command{Client: 1, Seq: seq, Op: op, Key: key, Value: value, Expect: expect}, false)
		require.NoError(t, err)
	}
	apply(pb.Op_OP_PUT, "k", "12345", "")
	require.Equal(t, uint64(1+5), f.bytes)
	apply(pb.Op_OP_APPEND, "k", "678", "")
	apply(pb.Op_OP_APPEND, "new", "ab", "")
	require.Equal(t, uint64(1+8+3+2), f.bytes)
	apply(pb.Op_OP_CAS, "k", "x", "wrong")
	apply(pb.Op_OP_CAS, "absent", "x", "")
	require.Equal(t, uint64(1+8+3+2), f.bytes, "a failed swap changes nothing")
	apply(pb.Op_OP_CAS, "k", "x", "12345678")
	require.Equal(t, uint64(1+1+3+2), f.bytes)
	g := newFSM()
	require.NoError(t, g.restore(f.marshal()))
	require.Equal(t, f.bytes, g.bytes)
	require.Equal(t, f.bytes, f.clone().bytes)
}

// A snapshot is due after SnapshotEvery entries only once they carry as
// many bytes as the state (or after snapshotEntriesCap times as many), and
// at once after SnapshotBytes of entries or a conf change.
func TestSnapshotDueWeighsTheState(t *testing.T) {
	c := &Core{cfg: CoreConfig{SnapshotEvery: 10, SnapshotBytes: 1 << 20}, fsm: newFSM()}
	c.fsm.bytes = 64 << 10
	c.applied, c.snapIndex = 110, 100
	c.sinceSnapBytes = 1000
	require.False(t, c.snapshotDue(), "10 small entries do not rewrite a big state")
	c.sinceSnapBytes = 64 << 10
	require.True(t, c.snapshotDue(), "entries as big as the state")
	c.applied, c.sinceSnapBytes = 105, 1<<20
	require.True(t, c.snapshotDue(), "SnapshotBytes of entries, whatever their count")
	c.sinceSnapBytes = 1000
	require.False(t, c.snapshotDue())
	c.confSinceSnap = true
	require.True(t, c.snapshotDue(), "a conf change")
	c.confSinceSnap = false
	c.applied = 100 + snapshotEntriesCap*10
	require.True(t, c.snapshotDue(), "the cap on entries")
	c.fsm.bytes = 10
	c.applied = 109
	require.False(t, c.snapshotDue(), "fewer than SnapshotEvery")
	c.applied = 110
	require.True(t, c.snapshotDue(), "a small state: the count alone, as before")
}
