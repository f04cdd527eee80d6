package chain

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"

	pb "github.com/chainraft/chainraft/chain/chainpb"
	"github.com/chainraft/chainraft/kv"
)

// Server is the node's gRPC face: client writes and reads, peer messages.
type server struct {
	pb.UnimplementedChainServiceServer
	n *Node
}

func (s server) Step(_ context.Context, b *pb.Batch) (*pb.StepResponse, error) {
	for _, m := range b.Messages {
		if m.Type == pb.MessageType_MSG_SNAPSHOT {
			s.n.transport.recv.Count(proto.Size(m.Snapshot))
		}
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

// Snapshot receives one chunked snapshot message (Transport.sendChunked)
// and hands it to the Core only once it is whole; package chunk bounds
// what is accepted. A transfer that breaks off (the sender died, the link
// was cut, the deadline passed) is dropped here with its pieces; the
// sender's Core sends the snapshot again. The answer goes only after the
// message is on the node's queue, so the sender's next batch follows it.
func (s server) Snapshot(st pb.ChainService_SnapshotServer) error {
	first, err := st.Recv()
	if err != nil {
		return err
	}
	m := first.GetMessage()
	if m.GetType() != pb.MessageType_MSG_SNAPSHOT || m.GetSnapshot() != nil || m.GetTo() != s.n.cfg.ID {
		return fmt.Errorf("node %d: chunked snapshot without a snapshot message's header for it (%v to %d)", s.n.cfg.ID, m.GetType(), m.GetTo())
	}
	began := time.Now()
	tr := s.n.transport
	tr.copyBegin()
	defer tr.copyEnd()
	data, done, err := tr.recv.Assemble(st.Context(), first.GetSize(), first.GetData(), func() ([]byte, error) {
		c, err := st.Recv()
		return c.GetData(), err
	})
	if err != nil {
		s.n.logger.Printf("node %d: snapshot of chain %d (epoch %d) from %d discarded after %v: %v",
			s.n.cfg.ID, m.Chain, m.Epoch, m.From, time.Since(began).Round(time.Millisecond), err)
		return err
	}
	snap := &pb.Snapshot{}
	err = proto.Unmarshal(data, snap)
	if err == nil {
		m.Snapshot = snap
		err = s.n.deliverSnapshot(st.Context(), m)
	}
	done(err == nil)
	if err != nil {
		s.n.logger.Printf("node %d: snapshot of chain %d (epoch %d) from %d not delivered: %v", s.n.cfg.ID, m.Chain, m.Epoch, m.From, err)
		return err
	}
	s.n.logger.Printf("node %d: snapshot of chain %d (epoch %d, seq %d) from %d: %d bytes received in %v",
		s.n.cfg.ID, m.Chain, m.Epoch, snap.LastSeq, m.From, len(data), time.Since(began).Round(time.Millisecond))
	return st.SendAndClose(&pb.StepResponse{})
}

func (s server) Digest(ctx context.Context, r *pb.DigestRequest) (*pb.DigestResponse, error) {
	if int(r.Chain) >= s.n.cfg.Chains {
		return nil, fmt.Errorf("no chain %d", r.Chain)
	}
	resp := &pb.DigestResponse{PeerMessagesSent: s.n.transport.MessagesSent()}
	resp.SnapshotBytesSent, resp.SnapshotsSent = s.n.transport.SnapshotsSent()
	resp.SnapshotBytesReceived, resp.SnapshotsReceived = s.n.transport.SnapshotsReceived()
	if r.CountsOnly {
		return resp, nil
	}
	// The loop lends a copy of the chain's map (its strings are shared,
	// never changed in place) and the hash is taken here, off the loop: a
	// chain of hundreds of megabytes takes seconds to hash.
	type view struct {
		st   Status
		data map[string]string
	}
	out := make(chan view, 1)
	f := func(c *Core) { out <- view{st: c.Status()[r.Chain], data: c.Data(int(r.Chain))} }
	select {
	case s.n.inspectc <- f:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.n.donec:
		return nil, ErrStopped
	}
	select {
	case v := <-out:
		resp.Epoch, resp.Member, resp.LastSeq, resp.Committed = v.st.Epoch, v.st.Member, v.st.LastSeq, v.st.Committed
		resp.Digest, resp.Keys = kv.Digest(v.data), int64(len(v.data))
		return resp, nil
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
