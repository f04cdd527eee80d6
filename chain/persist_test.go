package chain

import (
	"testing"

	"github.com/stretchr/testify/require"

	pb "github.com/chainraft/chainraft/chain/chainpb"
)

// seqsOf lists the sequences of chain ch's entries in ps.
func seqsOf(ps []Persist, ch int) []uint64 {
	var out []uint64
	for _, p := range ps {
		if p.Chain != ch {
			continue
		}
		for _, e := range p.Entries {
			out = append(out, e.Seq)
		}
	}
	return out
}

// A snapshot installed in one chain holds up that chain's later entries,
// messages and replies until it is durable, and nothing of the other
// chains': writing a chain's whole state takes seconds at hundreds of
// megabytes, and the other chains' appends and tail acks waiting for it
// had the node's neighbours suspect it. A compaction holds up nothing: the
// chain's history goes on from it on disk.
func TestPersisterHoldsOnlyTheSnapshotsChain(t *testing.T) {
	n, err := newNode(NodeConfig{ID: 1, DataDir: t.TempDir(), Chains: 2})
	require.NoError(t, err)
	defer n.storage.Close()
	p := &persistPipe{n: n, queued: make([][]*chainPart, 2), writing: make([]*SnapshotWrite, 2), done: make(chan snapDone, 2)}
	msg := func(ch int) *pb.Message { return &pb.Message{Type: pb.MessageType_MSG_APPEND, Chain: uint32(ch)} }

	r := &persistRound{}
	b1 := &batchOut{
		persist: []Persist{
			{Chain: 0, Snapshot: &pb.Snapshot{LastSeq: 10, Data: map[string]string{"k": "v"}}},
			{Chain: 0, Entries: []*pb.Entry{entry(11, "a")}},
			{Chain: 1, Entries: []*pb.Entry{entry(1, "x")}},
		},
		messages: []*pb.Message{msg(0), msg(1)},
	}
	p.split(b1, r)
	require.Len(t, r.launch, 1, "the install's write starts")
	require.Equal(t, []uint64{1}, seqsOf(r.entries, 1), "chain 1's entry is saved at once")
	require.Empty(t, seqsOf(r.entries, 0), "chain 0's entry after the snapshot waits for it")
	require.Equal(t, []*pb.Message{b1.messages[1]}, r.messages, "only chain 1's append goes")
	require.Empty(t, r.finished)
	require.NoError(t, n.storage.Save(r.entries))

	r = &persistRound{}
	b2 := &batchOut{persist: []Persist{{Chain: 0, Entries: []*pb.Entry{entry(12, "b")}}, {Chain: 1, Entries: []*pb.Entry{entry(2, "y")}}}}
	p.split(b2, r)
	require.Equal(t, []uint64{2}, seqsOf(r.entries, 1))
	require.Empty(t, seqsOf(r.entries, 0), "chain 0 still waits for its snapshot")
	require.NoError(t, n.storage.Save(r.entries))

	w := p.writing[0]
	require.NoError(t, w.Write())
	p.running++
	r = &persistRound{}
	require.True(t, p.finish(snapDone{w: w}, r))
	require.Equal(t, []uint64{11, 12}, seqsOf(r.entries, 0), "once durable, chain 0's entries follow in order")
	require.Equal(t, []*pb.Message{b1.messages[0]}, r.messages)
	require.Equal(t, []*batchOut{b1, b2}, r.finished)
	require.NoError(t, n.storage.Save(r.entries))

	// A compaction of chain 0 lets its own entries go on too.
	r = &persistRound{}
	p.split(&batchOut{persist: []Persist{
		{Chain: 0, Snapshot: &pb.Snapshot{LastSeq: 12, Data: map[string]string{"k": "vab"}}, Compact: true},
		{Chain: 0, Entries: []*pb.Entry{entry(13, "c")}},
	}, messages: []*pb.Message{msg(0)}}, r)
	require.Len(t, r.launch, 1)
	require.Equal(t, []uint64{13}, seqsOf(r.entries, 0))
	require.Len(t, r.messages, 1)
	require.NoError(t, n.storage.Save(r.entries))
	w = p.writing[0]
	require.NoError(t, w.Write())
	p.running++
	require.True(t, p.finish(snapDone{w: w}, &persistRound{}))
	require.NoError(t, n.storage.Close())

	_, rec, err := OpenStorage(n.cfg.DataDir, 2, false)
	require.NoError(t, err)
	c := newTestCore(t, 2, rec)
	require.Equal(t, map[string]string{"k": "vabc"}, c.Data(0))
	require.Equal(t, map[string]string{"k": "xy"}, c.Data(1))
}
