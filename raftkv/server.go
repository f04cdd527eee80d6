package raftkv

import (
	"context"
	"errors"
	"io"
	"net"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	pb "github.com/chainraft/chainraft/raftkv/raftkvpb"
)

// Serve serves the node's client, admin and peer APIs on lis until the
// returned server is stopped (the caller owns it); the channel gets the
// error that ended serving.
func Serve(n *Node, lis net.Listener) (*grpc.Server, <-chan error) {
	gs := grpc.NewServer(grpc.MaxRecvMsgSize(maxMsgSize), grpc.MaxSendMsgSize(maxMsgSize))
	pb.RegisterKVServer(gs, &kvServer{n: n})
	pb.RegisterRaftServer(gs, &raftServer{n: n})
	errc := make(chan error, 1)
	go func() { errc <- gs.Serve(lis) }()
	return gs, errc
}

type kvServer struct {
	pb.UnimplementedKVServer
	n *Node
}

func (s *kvServer) Do(ctx context.Context, req *pb.Request) (*pb.Response, error) {
	cmd := req.GetCmd()
	var res *pb.Result
	var err error
	if cmd.GetOp() == pb.Op_OP_GET {
		res, err = s.n.Read(ctx, cmd.GetKey())
	} else {
		res, err = s.n.Write(ctx, cmd)
	}
	resp := &pb.Response{NodeId: s.n.cfg.ID}
	if err != nil {
		resp.Code, resp.LeaderId, resp.LeaderAddr = errorCode(err)
		resp.Error = err.Error()
		return resp, nil
	}
	resp.Result = res
	return resp, nil
}

func (s *kvServer) AddNode(ctx context.Context, req *pb.AddNodeRequest) (*pb.AdminResponse, error) {
	return adminResponse(s.n.AddNode(ctx, req.GetId(), req.GetAddr())), nil
}

func (s *kvServer) RemoveNode(ctx context.Context, req *pb.RemoveNodeRequest) (*pb.AdminResponse, error) {
	return adminResponse(s.n.RemoveNode(ctx, req.GetId())), nil
}

func adminResponse(err error) *pb.AdminResponse {
	if err == nil {
		return &pb.AdminResponse{}
	}
	r := &pb.AdminResponse{Error: err.Error()}
	r.Code, r.LeaderId, r.LeaderAddr = errorCode(err)
	return r
}

func (s *kvServer) Status(ctx context.Context, _ *pb.StatusRequest) (*pb.StatusResponse, error) {
	st, err := s.n.Status(ctx)
	if err != nil {
		return nil, err
	}
	r := &pb.StatusResponse{Id: st.ID, LeaderId: st.Leader, Term: st.Term, Commit: st.Commit, Applied: st.Applied, Role: st.Role, Digest: st.Digest,
		PeerMessagesSent: s.n.transport.MessagesSent()}
	for _, m := range st.Members {
		r.Members = append(r.Members, &pb.Member{Id: m.ID, Addr: m.Addr})
	}
	return r, nil
}

// errorCode maps a node error to its wire code. The order matters: anything
// wrapping ErrUnknown is indeterminate whatever else it wraps.
func errorCode(err error) (pb.Code, uint64, string) {
	var nl *NotLeaderError
	switch {
	case errors.Is(err, ErrUnknown):
		return pb.Code_CODE_UNKNOWN, 0, ""
	case errors.As(err, &nl):
		return pb.Code_CODE_NOT_LEADER, nl.Leader, nl.Addr
	case errors.Is(err, ErrProposalDropped):
		return pb.Code_CODE_DROPPED, 0, ""
	case errors.Is(err, ErrOverloaded), errors.Is(err, ErrReadLost), errors.Is(err, ErrLeadershipLost), errors.Is(err, ErrStopped):
		// Reads and not-yet-queued requests: nothing was proposed.
		return pb.Code_CODE_OVERLOADED, 0, ""
	case errors.Is(err, ErrRejected):
		return pb.Code_CODE_REJECTED, 0, ""
	case errors.Is(err, ErrBadRequest):
		return pb.Code_CODE_BAD_REQUEST, 0, ""
	default:
		return pb.Code_CODE_UNKNOWN, 0, ""
	}
}

type raftServer struct {
	pb.UnimplementedRaftServer
	n *Node
}

// Stream receives one peer's batches for as long as the peer keeps the
// stream open; decoding happens here, off the node's loop.
func (s *raftServer) Stream(stream grpc.ClientStreamingServer[pb.MessageBatch, pb.Empty]) error {
	for {
		b, err := stream.Recv()
		if err == io.EOF {
			return stream.SendAndClose(&pb.Empty{})
		}
		if err != nil {
			return err
		}
		for _, data := range b.GetMessages() {
			m := &raftpb.Message{}
			if err := proto.Unmarshal(data, m); err != nil {
				s.n.logger.Printf("node %d: undecodable message from %d: %v", s.n.cfg.ID, b.GetFrom(), err)
				continue
			}
			s.n.deliver(m)
		}
	}
}
