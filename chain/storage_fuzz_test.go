package chain

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	pb "github.com/chainraft/chainraft/chain/chainpb"
	"github.com/chainraft/chainraft/internal/wal"
	"github.com/chainraft/chainraft/internal/wal/waltest"
)

// fuzzRecord is a log record of the pristine directory: where it is, and
// the entry it holds if that entry is live (replayed on open).
type fuzzRecord struct {
	waltest.Extent
	seq uint64 // 0: a dead record
}

// FuzzStorageReplay writes a chain's log over several segments (and maybe
// a snapshot), damages one file — a flipped byte, a truncation, or both —
// and opens the storage. The promise: the exact entries before the damage,
// with only a torn tail of the open segment cut, or a refusal naming the
// file and offset; never a silent loss of an entry with a valid record
// after it, and a snapshot is exact or refused.
func FuzzStorageReplay(f *testing.F) {
	f.Add(uint8(5), uint16(60), uint8(0), uint8(1), uint8(1), uint32(5), uint8(1), uint32(0))
	f.Fuzz(func(t *testing.T, nEnt uint8, segMax uint16, snapAt uint8, file uint8, op uint8, pos uint32, mask uint8, cut uint32) {
		n := 1 + int(nEnt)%10
		snap := int(snapAt) % (n + 1) // 0: no snapshot
		dir := t.TempDir()
		s, _, err := OpenStorage(dir, 1, true)
		require.NoError(t, err)
		s.segMax = wal.LogHeaderSize + int64(segMax%300)
		for i := 1; i <= n; i++ {
			require.NoError(t, s.Save([]Persist{{Chain: 0, Entries: []*pb.Entry{entry(uint64(i), strconv.Itoa(i))}}}))
			if i == snap {
				data := ""
				for j := 1; j <= i; j++ {
					data += strconv.Itoa(j)
				}
				require.NoError(t, s.Save([]Persist{{Chain: 0, Snapshot: &pb.Snapshot{LastSeq: uint64(i), Data: map[string]string{"k": data}}}}))
			}
		}
		require.NoError(t, s.Close())

		segs := segmentFiles(t, dir)
		slices.SortStableFunc(segs, func(a, b string) int { return len(a) - len(b) }) // wal-9 before wal-10
		recs := map[string][]fuzzRecord{}
		gen := uint64(0)
		if snap > 0 {
			gen = 1
		}
		for _, name := range segs {
			b, err := os.ReadFile(filepath.Join(dir, name))
			require.NoError(t, err)
			rs, _, sealed, err := wal.Scan(name, b, false)
			require.NoError(t, err)
			require.Equal(t, name != segs[len(segs)-1], sealed, "only the open segment is unsealed")
			for _, r := range rs {
				fr := fuzzRecord{Extent: waltest.Extent{Start: int(r.Offset), End: int(r.Offset) + wal.RecordHeaderSize + len(r.Body)}}
				e := &pb.Entry{}
				require.NoError(t, proto.Unmarshal(r.Body[recordHeader:], e))
				if binary.LittleEndian.Uint64(r.Body[4:]) == gen && e.Seq > uint64(snap) {
					fr.seq = e.Seq
				}
				recs[name] = append(recs[name], fr)
			}
		}
		files := slices.Clone(segs)
		if snap > 0 {
			files = append(files, "chain-0.snap")
		}
		target := files[int(file)%len(files)]
		d := waltest.DamageFile(t, filepath.Join(dir, target), op, pos, mask, cut)
		var extents []waltest.Extent
		for _, r := range recs[target] {
			extents = append(extents, r.Extent)
		}
		firstBad, _ := d.Cut(extents)
		isLast := target == segs[len(segs)-1] // only the open segment may end in a torn write

		s, rec, err := OpenStorage(dir, 1, true)
		if err != nil {
			d.RequireRefusal(t, err, ErrCorrupt, isLast, extents)
			return
		}
		defer s.Close()
		d.RequireAcceptable(t, isLast, extents)
		var want []uint64
		for _, name := range segs {
			for i, r := range recs[name] {
				if r.seq != 0 && (name != target || i < firstBad) {
					want = append(want, r.seq)
				}
			}
		}
		var got []uint64
		for _, e := range rec.Chains[0].Entries {
			got = append(got, e.Seq)
		}
		require.Equal(t, want, got, "not the exact entries before the damage")
		if snap > 0 {
			require.Equal(t, uint64(snap), rec.Chains[0].Snapshot.GetLastSeq())
		}
	})
}
