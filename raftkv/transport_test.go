package raftkv

import (
	"io"
	"log"
	"testing"

	"github.com/stretchr/testify/require"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// appendOf is a MsgApp to node 2 carrying size bytes of entry data.
func appendOf(size int) *raftpb.Message {
	return &raftpb.Message{
		Type: raftpb.MsgApp.Enum(), To: proto.Uint64(2), From: proto.Uint64(1),
		Entries: []*raftpb.Entry{{Index: proto.Uint64(1), Term: proto.Uint64(1), Data: make([]byte, size)}},
	}
}

// A peer that takes nothing (nothing listens at its address) holds at most
// peerQueueBytes of queued messages, whatever their count; a single message
// larger than that (a snapshot) still goes into an empty queue.
func TestTransportQueueBoundedInBytes(t *testing.T) {
	tr := newTransport(1, log.New(io.Discard, "", 0), func(report) {})
	defer tr.Stop()
	tr.SetPeers([]Member{{ID: 1, Addr: "127.0.0.1:1"}, {ID: 2, Addr: "127.0.0.1:1"}})

	require.NoError(t, tr.Send(appendOf(peerQueueBytes+1)), "an oversized message into an empty queue")
	require.Error(t, tr.Send(appendOf(10)), "nothing more while it waits")

	tr.mu.Lock()
	p := tr.peers[2]
	tr.mu.Unlock()
	<-p.q
	p.queued.Store(0)
	sent := 0
	for tr.Send(appendOf(1<<20)) == nil {
		sent++
		require.Less(t, sent, peerQueue, "the queue never fills by bytes")
	}
	size, err := proto.Marshal(appendOf(1 << 20))
	require.NoError(t, err)
	require.Equal(t, peerQueueBytes/len(size), sent, "1 MiB appends queued before the byte bound")
}
