package chain

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	pb "github.com/chainraft/chainraft/chain/chainpb"
)

func entry(seq uint64, v string) *pb.Entry {
	return &pb.Entry{Seq: seq, Update: &pb.Update{Client: 1, ClientSeq: seq, Op: pb.Op_OP_APPEND, Key: "k", Value: v}}
}

func TestStorageRestoresSnapshotAndLog(t *testing.T) {
	dir := t.TempDir()
	s, restored, err := OpenStorage(dir, 2, false)
	require.NoError(t, err)
	require.Nil(t, restored[0].Snapshot)
	require.Empty(t, restored[0].Entries)

	require.NoError(t, s.Save([]Persist{{Chain: 0, Entries: []*pb.Entry{entry(1, "a"), entry(2, "b")}}}))
	require.NoError(t, s.Save([]Persist{
		{Chain: 1, Snapshot: &pb.Snapshot{LastSeq: 10, Data: map[string]string{"x": "y"}}},
		{Chain: 1, Entries: []*pb.Entry{entry(11, "c")}},
	}))
	require.NoError(t, s.Close())

	s, restored, err = OpenStorage(dir, 2, false)
	require.NoError(t, err)
	require.Len(t, restored[0].Entries, 2)
	require.Equal(t, uint64(10), restored[1].Snapshot.LastSeq)
	require.Equal(t, "y", restored[1].Snapshot.Data["x"])
	require.Len(t, restored[1].Entries, 1)

	c := NewCore(1, 2, restored)
	require.Equal(t, map[string]string{"k": "ab"}, c.Data(0))
	require.Equal(t, map[string]string{"x": "y", "k": "c"}, c.Data(1))
	require.Equal(t, uint64(11), c.Status()[1].LastSeq)

	// A wipe leaves an empty chain behind, also after a reopen.
	require.NoError(t, s.Save([]Persist{{Chain: 0, Wipe: true}, {Chain: 0, Entries: []*pb.Entry{entry(1, "z")}}}))
	require.NoError(t, s.Close())
	s, restored, err = OpenStorage(dir, 2, false)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"k": "z"}, NewCore(1, 2, restored).Data(0))
	require.NoError(t, s.Close())
}

func TestStorageCutsTornTail(t *testing.T) {
	dir := t.TempDir()
	s, _, err := OpenStorage(dir, 1, false)
	require.NoError(t, err)
	require.NoError(t, s.Save([]Persist{{Chain: 0, Entries: []*pb.Entry{entry(1, "a"), entry(2, "b")}}}))
	require.NoError(t, s.Close())

	// A crash mid-append leaves half a record.
	path := filepath.Join(dir, "chain-0.log")
	info, err := os.Stat(path)
	require.NoError(t, err)
	require.NoError(t, os.Truncate(path, info.Size()-3))

	s, restored, err := OpenStorage(dir, 1, false)
	require.NoError(t, err)
	require.Len(t, restored[0].Entries, 1, "the torn record is dropped")
	require.NoError(t, s.Save([]Persist{{Chain: 0, Entries: []*pb.Entry{entry(2, "c")}}}))
	require.NoError(t, s.Close())
	s, restored, err = OpenStorage(dir, 1, false)
	require.NoError(t, err)
	defer s.Close()
	require.Equal(t, map[string]string{"k": "ac"}, NewCore(1, 1, restored).Data(0), "appends continue after the cut")
}
