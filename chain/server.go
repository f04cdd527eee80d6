package chain

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	pb "github.com/chainraft/chainraft/chain/chainpb"
)

// Server is the node's gRPC face: client writes and reads, peer messages.
type server struct {
	pb.UnimplementedChainServiceServer
	n *Node
}

func (s server) Step(_ context.Context, b *pb.Batch) (*pb.StepResponse, error) {
	for _, m := range b.Messages {
		select {
		case s.n.recvc <- m:
		default:
			// Full: drop; the sender resends what the acks show missing.
		}
	}
	return &pb.StepResponse{}, nil
}

func (s server) Stream(st pb.ChainService_StreamServer) error {
	for {
		b, err := st.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return st.SendAndClose(&pb.StepResponse{})
			}
			return err
		}
		if _, err := s.Step(st.Context(), b); err != nil {
			return err
		}
	}
}

func (s server) Digest(ctx context.Context, r *pb.DigestRequest) (*pb.DigestResponse, error) {
	if int(r.Chain) >= s.n.cfg.Chains {
		return nil, fmt.Errorf("no chain %d", r.Chain)
	}
	out := make(chan *pb.DigestResponse, 1)
	f := func(c *Core) {
		st, d, keys := c.Digest(int(r.Chain))
		out <- &pb.DigestResponse{Epoch: st.Epoch, Member: st.Member, LastSeq: st.LastSeq, Committed: st.Committed, Digest: d, Keys: int64(keys),
			PeerMessagesSent: s.n.transport.MessagesSent()}
	}
	select {
	case s.n.inspectc <- f:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.n.donec:
		return nil, ErrStopped
	}
	select {
	case d := <-out:
		return d, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (s server) Write(ctx context.Context, r *pb.WriteRequest) (*pb.WriteResponse, error) {
	rep := s.n.do(ctx, request{write: true, chain: r.Chain, epoch: r.Epoch, update: r.Update})
	return &pb.WriteResponse{Status: rep.Status, Swapped: rep.Swapped, Error: rep.Err, Epoch: rep.Epoch}, nil
}

func (s server) Read(ctx context.Context, r *pb.ReadRequest) (*pb.ReadResponse, error) {
	rep := s.n.do(ctx, request{chain: r.Chain, epoch: r.Epoch, key: r.Key, craq: r.Craq})
	return &pb.ReadResponse{Status: rep.Status, Found: rep.Found, Value: rep.Value, Error: rep.Err, Epoch: rep.Epoch}, nil
}

// Serve serves the node's client and peer API on lis until the returned
// server is stopped (the caller owns it); the channel gets the error that
// ended serving.
func Serve(n *Node, lis net.Listener) (*grpc.Server, <-chan error) {
	// Peers and clients ping every keepaliveTime; the server's default
	// policy (at most every five minutes) would answer them with GOAWAY.
	gs := grpc.NewServer(grpc.MaxRecvMsgSize(maxMsgSize), grpc.MaxSendMsgSize(maxMsgSize),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: keepaliveTime / 2, PermitWithoutStream: true}))
	pb.RegisterChainServiceServer(gs, server{n: n})
	errc := make(chan error, 1)
	go func() { errc <- gs.Serve(lis) }()
	return gs, errc
}
