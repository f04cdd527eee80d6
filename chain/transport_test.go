package chain

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"

	pb "github.com/chainraft/chainraft/chain/chainpb"
)

// countingPeer is a peer that counts the chain messages its stream receives.
type countingPeer struct {
	pb.UnimplementedChainServiceServer
	got atomic.Int64
}

func (s *countingPeer) Stream(stream grpc.ClientStreamingServer[pb.Batch, pb.StepResponse]) error {
	for {
		b, err := stream.Recv()
		if err != nil {
			return stream.SendAndClose(&pb.StepResponse{})
		}
		s.got.Add(int64(len(b.GetMessages())))
	}
}

// MessagesSent counts one per chain message a stream accepted: what a live
// peer received, and nothing for a peer nobody listens at.
func TestTransportCountsMessagesSent(t *testing.T) {
	lis := listenLocal(t)
	peer := &countingPeer{}
	serveChain(t, lis, peer)

	tr := newTransport(nil)
	defer tr.Stop()
	tr.SetPeer(2, lis.Addr().String())
	tr.SetPeer(3, "127.0.0.1:1")
	const n = 500
	for i := range n {
		require.NoError(t, tr.Send(&pb.Message{Type: pb.MessageType_MSG_ACK, From: 1, To: 2, Received: uint64(i)}))
	}
	require.NoError(t, tr.Send(&pb.Message{Type: pb.MessageType_MSG_ACK, From: 1, To: 3}), "queued for the unreachable peer")
	require.Eventually(t, func() bool { return peer.got.Load() == n && tr.MessagesSent() >= n },
		10*time.Second, 10*time.Millisecond, "sent %d, received %d", tr.MessagesSent(), peer.got.Load())
	require.Equal(t, uint64(n), tr.MessagesSent(), "the unreachable peer's message is not counted")
}
