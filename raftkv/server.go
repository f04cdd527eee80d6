package raftkv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	pb "github.com/chainraft/chainraft/raftkv/raftkvpb"
)

// Serve serves the node's client, admin and peer APIs on lis until the
// returned server is stopped (the caller owns it); the channel gets the
// error that ended serving.
func Serve(n *Node, lis net.Listener) (*grpc.Server, <-chan error) {
	h := &Host{id: n.cfg.ID, logger: n.logger, transport: n.transport, nodes: map[uint32]*Node{n.cfg.Group: n}}
	h.ready.Store(&h.nodes)
	return ServeHost(h, lis)
}

// ServeHost is Serve for every group a Host runs: a request goes to the
// node of the group it names, a peer message to the node of its group.
func ServeHost(h *Host, lis net.Listener) (*grpc.Server, <-chan error) {
	gs := grpc.NewServer(grpc.MaxRecvMsgSize(maxMsgSize), grpc.MaxSendMsgSize(maxMsgSize))
	pb.RegisterKVServer(gs, &kvServer{h: h})
	pb.RegisterRaftServer(gs, &raftServer{h: h})
	errc := make(chan error, 1)
	go func() { errc <- gs.Serve(lis) }()
	return gs, errc
}

type kvServer struct {
	pb.UnimplementedKVServer
	h *Host
}

// errNotMember answers a request for a group this process has no replica of.
var errNotMember = errors.New("raftkv: not a member of the request's group")

func (s *kvServer) Do(ctx context.Context, req *pb.Request) (*pb.Response, error) {
	n := s.h.Node(req.GetGroup())
	if n == nil {
		return &pb.Response{NodeId: s.h.id, Code: pb.Code_CODE_NOT_MEMBER,
			Error: fmt.Sprintf("%v (group %d)", errNotMember, req.GetGroup())}, nil
	}
	cmd := req.GetCmd()
	var res *pb.Result
	var err error
	if cmd.GetOp() == pb.Op_OP_GET {
		res, err = n.Read(ctx, cmd.GetKey())
	} else {
		res, err = n.Write(ctx, cmd)
	}
	resp := &pb.Response{NodeId: s.h.id}
	if err != nil {
		resp.Code, resp.LeaderId, resp.LeaderAddr = errorCode(err)
		resp.Error = err.Error()
		return resp, nil
	}
	resp.Result = res
	return resp, nil
}

// AddNode and RemoveNode change group 0's membership: membership changes
// are for a single-group store (a multi-raft process refuses them).
func (s *kvServer) AddNode(ctx context.Context, req *pb.AddNodeRequest) (*pb.AdminResponse, error) {
	n, err := s.singleGroup()
	if err != nil {
		return adminResponse(err), nil
	}
	return adminResponse(n.AddNode(ctx, req.GetId(), req.GetAddr())), nil
}

func (s *kvServer) RemoveNode(ctx context.Context, req *pb.RemoveNodeRequest) (*pb.AdminResponse, error) {
	n, err := s.singleGroup()
	if err != nil {
		return adminResponse(err), nil
	}
	return adminResponse(n.RemoveNode(ctx, req.GetId())), nil
}

func (s *kvServer) singleGroup() (*Node, error) {
	if n := s.h.Node(0); n != nil && len(s.h.nodes) == 1 {
		return n, nil
	}
	return nil, fmt.Errorf("%w: membership changes need a single raft group", ErrRejected)
}

func adminResponse(err error) *pb.AdminResponse {
	if err == nil {
		return &pb.AdminResponse{}
	}
	r := &pb.AdminResponse{Error: err.Error()}
	r.Code, r.LeaderId, r.LeaderAddr = errorCode(err)
	return r
}

// Status answers for the group asked about; peer_messages_sent is the
// process's, every group's messages (they share the transport).
func (s *kvServer) Status(ctx context.Context, req *pb.StatusRequest) (*pb.StatusResponse, error) {
	n := s.h.Node(req.GetGroup())
	if n == nil {
		return &pb.StatusResponse{Id: s.h.id, Role: RoleNone, PeerMessagesSent: s.h.transport.MessagesSent()}, nil
	}
	st, err := n.Status(ctx, req.GetDigest())
	if err != nil {
		return nil, err
	}
	r := &pb.StatusResponse{Id: st.ID, LeaderId: st.Leader, Term: st.Term, Commit: st.Commit, Applied: st.Applied, Role: st.Role, Digest: st.Digest,
		PeerMessagesSent: s.h.transport.MessagesSent()}
	r.SnapshotBytesSent, r.SnapshotsSent = s.h.transport.SnapshotsSent()
	r.SnapshotBytesReceived, r.SnapshotsReceived = s.h.transport.SnapshotsReceived()
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
	case errors.Is(err, errNotMember):
		return pb.Code_CODE_NOT_MEMBER, 0, ""
	case errors.Is(err, ErrBadRequest):
		return pb.Code_CODE_BAD_REQUEST, 0, ""
	default:
		return pb.Code_CODE_UNKNOWN, 0, ""
	}
}

type raftServer struct {
	pb.UnimplementedRaftServer
	h *Host
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
		groups := b.GetGroups()
		if len(groups) != 0 && len(groups) != len(b.GetMessages()) {
			s.h.logger.Printf("node %d: batch from %d has %d messages and %d groups: dropped", s.h.id, b.GetFrom(), len(b.GetMessages()), len(groups))
			continue
		}
		for i, data := range b.GetMessages() {
			var g uint32
			if len(groups) > 0 {
				g = groups[i]
			}
			n := s.h.Node(g)
			if n == nil {
				continue // a group this process is not in: a misrouted message raft can lose
			}
			m := &raftpb.Message{}
			if err := proto.Unmarshal(data, m); err != nil {
				s.h.logger.Printf("node %d: undecodable message from %d: %v", s.h.id, b.GetFrom(), err)
				continue
			}
			if m.GetType() == raftpb.MsgSnap {
				s.h.transport.recv.Count(len(m.GetSnapshot().GetData()))
			}
			n.deliver(m)
		}
	}
}

// Snapshot receives one chunked MsgSnap (Transport.sendChunked) and hands
// it to its group's node only once it is whole; package chunk bounds what
// is accepted. A transfer that breaks off (the sender died, the link was
// cut, the deadline passed) is dropped here with its pieces, and raft,
// told by the sender that the snapshot failed, sends another.
func (s *raftServer) Snapshot(stream grpc.ClientStreamingServer[pb.SnapshotChunk, pb.Empty]) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	from, g := first.GetFrom(), first.GetGroup()
	m := &raftpb.Message{}
	if err := proto.Unmarshal(first.GetMessage(), m); err != nil || m.GetType() != raftpb.MsgSnap || m.GetSnapshot() == nil {
		return fmt.Errorf("node %d: chunked snapshot from %d has no MsgSnap header (%v)", s.h.id, from, err)
	}
	n := s.h.Node(g)
	if n == nil {
		return fmt.Errorf("%w (group %d)", errNotMember, g)
	}
	began := time.Now()
	data, done, err := s.h.transport.recv.Assemble(stream.Context(), first.GetSize(), first.GetData(), func() ([]byte, error) {
		c, err := stream.Recv()
		return c.GetData(), err
	})
	index := m.GetSnapshot().GetMetadata().GetIndex()
	if err != nil {
		s.h.logger.Printf("node %d: snapshot from %d (group %d, index %d) discarded after %v: %v",
			s.h.id, from, g, index, time.Since(began).Round(time.Millisecond), err)
		return err
	}
	m.Snapshot.Data = data
	err = n.deliverSnapshot(stream.Context(), m)
	done(err == nil)
	if err != nil {
		s.h.logger.Printf("node %d: snapshot from %d (group %d, index %d) not delivered: %v", s.h.id, from, g, index, err)
		return err
	}
	s.h.logger.Printf("node %d: snapshot from %d (group %d, index %d): %d bytes received in %v",
		s.h.id, from, g, index, len(data), time.Since(began).Round(time.Millisecond))
	return stream.SendAndClose(&pb.Empty{})
}
