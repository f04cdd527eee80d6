package raftkv

import (
	"io"
	"log"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	pb "github.com/chainraft/chainraft/raftkv/raftkvpb"
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

// countingRaft is a peer that counts the raft messages its stream receives.
type countingRaft struct {
	pb.UnimplementedRaftServer
	got atomic.Int64
}

func (s *countingRaft) Stream(stream grpc.ClientStreamingServer[pb.MessageBatch, pb.Empty]) error {
	for {
		b, err := stream.Recv()
		if err != nil {
			return stream.SendAndClose(&pb.Empty{})
		}
		s.got.Add(int64(len(b.GetMessages())))
	}
}

// MessagesSent counts one per raft message a stream accepted: what a live
// peer received, and nothing for a peer nobody listens at.
func TestTransportCountsMessagesSent(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	peer := &countingRaft{}
	gs := grpc.NewServer()
	pb.RegisterRaftServer(gs, peer)
	go func() { _ = gs.Serve(lis) }()
	defer gs.Stop()

	tr := newTransport(1, log.New(io.Discard, "", 0), func(report) {})
	defer tr.Stop()
	tr.SetPeers([]Member{{ID: 2, Addr: lis.Addr().String()}, {ID: 3, Addr: "127.0.0.1:1"}})
	const n = 500
	for range n {
		require.NoError(t, tr.Send(appendOf(10)))
	}
	dead := appendOf(10)
	dead.To = proto.Uint64(3)
	require.NoError(t, tr.Send(dead), "queued for the unreachable peer")
	require.Eventually(t, func() bool { return peer.got.Load() == n && tr.MessagesSent() >= n },
		10*time.Second, 10*time.Millisecond, "sent %d, received %d", tr.MessagesSent(), peer.got.Load())
	require.Equal(t, uint64(n), tr.MessagesSent(), "the unreachable peer's message is not counted")
}
