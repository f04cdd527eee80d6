package raftkv

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/chainraft/chainraft/internal/wal"
	"github.com/chainraft/chainraft/internal/wal/waltest"
)

// FuzzStorageReplay writes a raft log in batches (new terms and votes on
// the way, maybe a snapshot and the log rewritten behind it), damages one
// file — a flipped byte, a truncation, or both — and opens the storage.
// The promise: the exact entries and commit index before the damage, with
// only a torn tail of the log cut, and the term and vote last saved; or a
// refusal naming the file and offset. Never a silent loss of a record with
// a valid record after it, of a term or vote, or a damaged snapshot.
func FuzzStorageReplay(f *testing.F) {
	f.Add(uint8(4), uint8(0x5a), uint8(0), uint8(0), uint8(1), uint32(40), uint8(1), uint32(0))
	f.Fuzz(func(t *testing.T, nBatch uint8, shape uint8, snapAt uint8, file uint8, op uint8, pos uint32, mask uint8, cut uint32) {
		batches := 1 + int(nBatch)%6
		snapBatch := int(snapAt) % (batches + 1) // 0: no snapshot
		dir := t.TempDir()
		s, _, err := OpenStorage(dir, true)
		require.NoError(t, err)
		term, vote, next := uint64(1), uint64(1), uint64(1)
		for i := 1; i <= batches; i++ {
			if shape>>(i%8)&1 != 0 {
				term++
				vote = term%3 + 1
			}
			k := 1 + uint64(shape>>((i+3)%8))%3
			require.NoError(t, s.Append(hardState(term, vote, next-1), testEntries(next, next+k-1, term), true))
			next += k
			if i == snapBatch {
				si := next - 1
				snap := &raftpb.Snapshot{Data: []byte("state"), Metadata: &raftpb.SnapshotMetadata{
					Index: proto.Uint64(si), Term: proto.Uint64(term), ConfState: &raftpb.ConfState{Voters: []uint64{1, 2, 3}}}}
				require.NoError(t, s.SaveSnapshot(snap))
				require.NoError(t, s.Rewrite(hardState(term, vote, si), testEntries(si, si, term)))
			}
		}
		require.NoError(t, s.Close())

		walPath := filepath.Join(dir, walName)
		type record struct {
			waltest.Extent
			ent *raftpb.Entry
			hs  *raftpb.HardState
		}
		var recs []record
		pristine, err := os.ReadFile(walPath)
		require.NoError(t, err)
		rs, _, _, err := wal.Scan(walPath, pristine, false)
		require.NoError(t, err)
		for _, r := range rs {
			rc := record{Extent: waltest.Extent{Start: int(r.Offset), End: int(r.Offset) + wal.RecordHeaderSize + len(r.Body)}}
			if r.Body[0] == recEntry {
				rc.ent = &raftpb.Entry{}
				require.NoError(t, proto.Unmarshal(r.Body[1:], rc.ent))
			} else {
				rc.hs = &raftpb.HardState{}
				require.NoError(t, proto.Unmarshal(r.Body[1:], rc.hs))
			}
			recs = append(recs, rc)
		}
		files := []string{walName, voteName}
		if snapBatch > 0 {
			files = append(files, snapName)
		}
		target := files[int(file)%len(files)]
		d := waltest.DamageFile(t, filepath.Join(dir, target), op, pos, mask, cut)
		isLog := target == walName   // only the log may end in a torn write
		var extents []waltest.Extent // the records the damage can reach
		firstBad := len(recs)        // damage elsewhere spares every record
		if isLog {
			for _, r := range recs {
				extents = append(extents, r.Extent)
			}
			firstBad, _ = d.Cut(extents)
		}

		s, rec, err := OpenStorage(dir, true)
		if err != nil {
			d.RequireRefusal(t, err, ErrCorrupt, isLog, extents)
			return
		}
		defer s.Close()
		d.RequireAcceptable(t, isLog, extents)
		var want []uint64
		var commit uint64
		for _, r := range recs[:firstBad] {
			if r.ent != nil {
				want = append(want, r.ent.GetIndex())
			} else {
				commit = r.hs.GetCommit()
			}
		}
		var got []uint64
		for _, e := range rec.Entries {
			got = append(got, e.GetIndex())
		}
		require.Equal(t, want, got, "not the exact entries before the damage")
		require.Equal(t, term, rec.HardState.GetTerm(), "the term was lost")
		require.Equal(t, vote, rec.HardState.GetVote(), "the vote was lost")
		require.Equal(t, commit, rec.HardState.GetCommit())
		if snapBatch > 0 {
			require.Equal(t, "state", string(rec.Snapshot.GetData()))
		}
	})
}
