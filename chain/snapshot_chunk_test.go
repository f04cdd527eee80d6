package chain

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/chainraft/chainraft/chain/chainpb"
)

// testChunk is the piece size the tests set: a snapshot of a few dozen
// kilobytes then travels in many pieces.
const testChunk = 4 << 10

// logBuffer collects a node's log lines for a test to search.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func listenLocal(t *testing.T) net.Listener {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	return lis
}

// serveChain serves srv's chain service on lis until the test ends.
func serveChain(t *testing.T, lis net.Listener, srv pb.ChainServiceServer) {
	gs := grpc.NewServer()
	pb.RegisterChainServiceServer(gs, srv)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
}

// servedNode starts a node (no ZooKeeper: a session and a long lease are
// given by hand) with its gRPC server on lis, both stopped when the test
// ends.
func servedNode(t *testing.T, id uint64, lis net.Listener, logger *log.Logger) *Node {
	n, err := StartNode(NodeConfig{ID: id, DataDir: t.TempDir(), Chains: 1, TickInterval: 10 * time.Millisecond, Logger: logger})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, n.Stop()) })
	gs, _ := Serve(n, lis)
	t.Cleanup(gs.Stop)
	n.transport.chunk.Store(testChunk)
	n.SetSession(true)
	n.ExtendLease(time.Now(), time.Hour)
	return n
}

// loadedTail starts node 1 as the only member of chain 0 holding about
// 60 KB: its Sent list is trimmed to what it committed, so a joiner gets
// the state as a snapshot, in ~15 pieces.
func loadedTail(t *testing.T, lis net.Listener, logger *log.Logger) *Node {
	n := servedNode(t, 1, lis, logger)
	n.SetConfig(Config{Chain: 0, Epoch: 1, Members: []Member{{ID: 1, Addr: lis.Addr().String()}}})
	require.Eventually(t, func() bool {
		st, err := n.Status(context.Background())
		return err == nil && st[0].Epoch == 1
	}, 5*time.Second, time.Millisecond)
	value := strings.Repeat("v", 1000)
	for i := range 60 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		r := n.do(ctx, request{write: true, chain: 0, epoch: 1, update: &pb.Update{Client: 7, ClientSeq: uint64(i + 1), Op: pb.Op_OP_PUT,
			Key: fmt.Sprintf("k%d", i), Value: value}})
		cancel()
		require.Equal(t, pb.Status_STATUS_OK, r.Status, r.Err)
	}
	return n
}

// join makes the node at joinAddr chain 0's joiner behind node 1 (epoch 2)
// on both nodes; node 1 reaches it at joinAddr.
func join(n1, n2 *Node, addr1, joinAddr string) {
	c := Config{Chain: 0, Epoch: 2, Members: []Member{{ID: 1, Addr: addr1}}, Joining: &Member{ID: 2, Addr: joinAddr}}
	n2.SetConfig(c)
	n1.SetConfig(c)
}

func digest(t *testing.T, n *Node) *pb.DigestResponse {
	d, err := server{n: n}.Digest(context.Background(), &pb.DigestRequest{Chain: 0})
	require.NoError(t, err)
	return d
}

// caughtUp reports whether n2 holds n1's state of chain 0.
func caughtUp(t *testing.T, n1, n2 *Node) bool {
	d1, d2 := digest(t, n1), digest(t, n2)
	return d2.LastSeq == d1.LastSeq && d2.Digest == d1.Digest
}

// A snapshot larger than one piece is sent in pieces, reassembled by the
// joiner and installed: it ends with the tail's data, both sides count the
// bytes, and what follows the snapshot arrives after it.
func TestChunkedSnapshotBringsUpJoiner(t *testing.T) {
	l1, l2 := listenLocal(t), listenLocal(t)
	var log1, log2 logBuffer
	n1 := loadedTail(t, l1, log.New(&log1, "", 0))
	n2 := servedNode(t, 2, l2, log.New(&log2, "", 0))
	join(n1, n2, l1.Addr().String(), l2.Addr().String())

	require.Eventually(t, func() bool { return caughtUp(t, n1, n2) }, 20*time.Second, 10*time.Millisecond, "the joiner holds the tail's data")
	require.Eventually(t, func() bool { return digest(t, n1).SnapshotsSent == 1 }, 5*time.Second, 10*time.Millisecond, "the sender heard back")
	d1, d2 := digest(t, n1), digest(t, n2)
	require.Equal(t, int64(60), d2.Keys)
	require.Equal(t, uint64(1), d1.SnapshotsSent, "one transfer")
	require.Equal(t, uint64(1), d2.SnapshotsReceived)
	require.Greater(t, d2.SnapshotBytesReceived, uint64(60_000), "the snapshot holds the data")
	require.Equal(t, d2.SnapshotBytesReceived, d1.SnapshotBytesSent, "every byte sent arrived")
	require.Contains(t, log2.String(), fmt.Sprintf("%d bytes received", d2.SnapshotBytesReceived))
	require.Contains(t, log1.String(), fmt.Sprintf("%d bytes sent in %d chunks", d1.SnapshotBytesSent, (d1.SnapshotBytesSent+testChunk-1)/testChunk))

	// The counters alone come without the loop: with node 2's loop held,
	// a counts-only request still answers, the same counts and no digest.
	release := make(chan struct{})
	held := make(chan struct{})
	n2.inspectc <- func(*Core) { close(held); <-release }
	<-held
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	c, err := server{n: n2}.Digest(ctx, &pb.DigestRequest{CountsOnly: true})
	cancel()
	close(release)
	require.NoError(t, err)
	require.Empty(t, c.Digest)
	require.Equal(t, d2.SnapshotBytesReceived, c.SnapshotBytesReceived)
	require.Equal(t, d2.SnapshotsReceived, c.SnapshotsReceived)

	// The joiner goes on with the writes after the snapshot.
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r := n1.do(ctx, request{write: true, chain: 0, epoch: 2, update: &pb.Update{Client: 7, ClientSeq: 100, Op: pb.Op_OP_PUT, Key: "after", Value: "x"}})
	require.Equal(t, pb.Status_STATUS_OK, r.Status, r.Err)
	require.Eventually(t, func() bool { return caughtUp(t, n1, n2) }, 10*time.Second, 10*time.Millisecond)
}

// tapPeer sits between node 1 and node 2, which node 1 knows at the tap's
// address: batches pass through, and so do snapshot transfers, except
// that the first transfer breaks off after cutAfter > 0 pieces (the link
// cut midway), and with record every transfer is kept (the first whole
// one) and refused, never passed on.
type tapPeer struct {
	pb.UnimplementedChainServiceServer
	to       pb.ChainServiceClient
	cutAfter int
	record   bool
	mu       sync.Mutex
	cut      bool
	whole    []*pb.SnapshotChunk
	done     chan struct{} // closed at the first cut or recorded transfer
}

func (p *tapPeer) Stream(stream grpc.ClientStreamingServer[pb.Batch, pb.StepResponse]) error {
	out, err := p.to.Stream(stream.Context())
	if err != nil {
		return err
	}
	for {
		b, err := stream.Recv()
		if err != nil {
			return err
		}
		if err := out.Send(b); err != nil {
			return err
		}
	}
}

func (p *tapPeer) Snapshot(stream grpc.ClientStreamingServer[pb.SnapshotChunk, pb.StepResponse]) error {
	p.mu.Lock()
	cut := p.cutAfter > 0 && !p.cut
	p.cut = p.cut || cut
	p.mu.Unlock()
	var got []*pb.SnapshotChunk
	var out grpc.ClientStreamingClient[pb.SnapshotChunk, pb.StepResponse]
	if !cut && !p.record {
		var err error
		if out, err = p.to.Snapshot(stream.Context()); err != nil {
			return err
		}
	}
	for {
		c, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		got = append(got, c)
		if cut && len(got) == p.cutAfter {
			close(p.done)
			return errors.New("cut midway")
		}
		if out != nil {
			if err := out.Send(c); err != nil {
				return err
			}
		}
	}
	if out != nil {
		if _, err := out.CloseAndRecv(); err != nil {
			return err
		}
		return stream.SendAndClose(&pb.StepResponse{})
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.whole == nil {
		p.whole = got
		close(p.done)
	}
	return errors.New("recorded, not passed on")
}

// tappedJoiner makes node 2 (listening on l2) chain 0's joiner behind n1,
// which reaches it through the tap on lt.
func tappedJoiner(t *testing.T, n1 *Node, l1, lt, l2 net.Listener, tap *tapPeer, logger *log.Logger) *Node {
	conn, err := grpc.NewClient(l2.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	tap.to, tap.done = pb.NewChainServiceClient(conn), make(chan struct{})
	serveChain(t, lt, tap)
	n2 := servedNode(t, 2, l2, logger)
	join(n1, n2, l1.Addr().String(), lt.Addr().String())
	select {
	case <-tap.done:
	case <-time.After(20 * time.Second):
		t.Fatal("no snapshot transfer reached the tap")
	}
	return n2
}

// A transfer cut midway is never applied; the tail sends the snapshot
// again, and that one arrives whole and is installed.
func TestChunkedSnapshotCutMidwayIsSentAgain(t *testing.T) {
	l1, lt, l2 := listenLocal(t), listenLocal(t), listenLocal(t)
	var log1 logBuffer
	n1 := loadedTail(t, l1, log.New(&log1, "", 0))
	n2 := tappedJoiner(t, n1, l1, lt, l2, &tapPeer{cutAfter: 2}, nil)
	require.Eventually(t, func() bool { return strings.Contains(log1.String(), "failed after") },
		10*time.Second, 10*time.Millisecond, "the sender saw the cut")
	require.Eventually(t, func() bool { return caughtUp(t, n1, n2) }, 20*time.Second, 10*time.Millisecond, "the joiner holds the tail's data")
	// The sender counts the transfer once the receiver's answer is back.
	require.Eventually(t, func() bool { return digest(t, n1).SnapshotsSent == 1 }, 5*time.Second, 10*time.Millisecond, "one transfer completed")
	d1, d2 := digest(t, n1), digest(t, n2)
	require.Equal(t, uint64(1), d1.SnapshotsSent, "one transfer completed")
	require.Equal(t, uint64(1), d2.SnapshotsReceived, "and only that one was received")
	require.GreaterOrEqual(t, d1.SnapshotBytesSent, d2.SnapshotBytesReceived+2*testChunk, "the cut transfer's pieces count as sent")
}

// A receiver given part of a transfer by a sender that then vanishes
// discards it, applies nothing, gives back its budget, and installs the
// next whole transfer.
func TestPartialSnapshotDiscarded(t *testing.T) {
	l1, lt, l2 := listenLocal(t), listenLocal(t), listenLocal(t)
	n1 := loadedTail(t, l1, nil)
	var log2 logBuffer
	tap := &tapPeer{record: true}
	n2 := tappedJoiner(t, n1, l1, lt, l2, tap, log.New(&log2, "", 0))
	tap.mu.Lock()
	whole := tap.whole
	tap.mu.Unlock()
	require.Greater(t, len(whole), 2)
	require.Greater(t, whole[0].GetSize(), uint64(60_000))

	conn, err := grpc.NewClient(l2.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	client := pb.NewChainServiceClient(conn)
	send := func(pieces []*pb.SnapshotChunk, finish bool) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stream, err := client.Snapshot(ctx)
		require.NoError(t, err)
		for _, c := range pieces {
			require.NoError(t, stream.Send(c))
		}
		if !finish {
			time.Sleep(100 * time.Millisecond) // let the pieces arrive before the sender vanishes
			return nil                         // cancel: the stream is reset, as by a dead sender
		}
		_, err = stream.CloseAndRecv()
		return err
	}
	require.NoError(t, send(whole[:len(whole)/2], false))
	require.Eventually(t, func() bool { return strings.Contains(log2.String(), "discarded") }, 10*time.Second, 10*time.Millisecond)
	d2 := digest(t, n2)
	require.Zero(t, d2.LastSeq, "nothing of the broken transfer was applied")
	require.Zero(t, d2.Keys)
	require.Zero(t, d2.SnapshotBytesReceived)
	require.Zero(t, d2.SnapshotsReceived)
	require.Zero(t, n2.transport.recv.Held(), "the budget is back")

	require.NoError(t, send(whole, true))
	require.Eventually(t, func() bool { return caughtUp(t, n1, n2) }, 10*time.Second, 10*time.Millisecond, "the whole transfer is installed")
	d2 = digest(t, n2)
	require.Equal(t, whole[0].GetSize(), d2.SnapshotBytesReceived)
	require.Equal(t, uint64(1), d2.SnapshotsReceived)
}

// slowPeer records, in arrival order, the messages its stream gets and the
// snapshot transfers it completes; a transfer waits after its first piece
// until release is closed.
type slowPeer struct {
	pb.UnimplementedChainServiceServer
	started, release chan struct{}
	mu               sync.Mutex
	events           []string
}

func (p *slowPeer) record(e string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events = append(p.events, e)
}

func (p *slowPeer) seen() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.events...)
}

func (p *slowPeer) Stream(stream grpc.ClientStreamingServer[pb.Batch, pb.StepResponse]) error {
	for {
		b, err := stream.Recv()
		if err != nil {
			return err
		}
		for _, m := range b.Messages {
			p.record(fmt.Sprintf("%v chain %d", m.Type, m.Chain))
		}
	}
}

func (p *slowPeer) Snapshot(stream grpc.ClientStreamingServer[pb.SnapshotChunk, pb.StepResponse]) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	close(p.started)
	<-p.release
	for {
		if _, err := stream.Recv(); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return err
		}
	}
	p.record(fmt.Sprintf("snapshot chain %d", first.GetMessage().GetChain()))
	return stream.SendAndClose(&pb.StepResponse{})
}

// While one chain's snapshot travels, the other chains' messages to the
// same peer go on, and that chain's own later messages wait until the
// snapshot is through, so each chain's link stays FIFO.
func TestChunkedSnapshotHoldsOnlyItsChain(t *testing.T) {
	lis := listenLocal(t)
	peer := &slowPeer{started: make(chan struct{}), release: make(chan struct{})}
	serveChain(t, lis, peer)

	tr := newTransport(nil)
	defer tr.Stop()
	tr.chunk.Store(testChunk)
	tr.SetPeer(2, lis.Addr().String())
	data := map[string]string{}
	for i := range 10 {
		data[fmt.Sprint(i)] = strings.Repeat("v", 1000)
	}
	require.NoError(t, tr.Send(&pb.Message{Type: pb.MessageType_MSG_SNAPSHOT, Chain: 0, Epoch: 1, From: 1, To: 2,
		Snapshot: &pb.Snapshot{LastSeq: 5, Data: data}}))
	select {
	case <-peer.started:
	case <-time.After(10 * time.Second):
		t.Fatal("the snapshot transfer did not start")
	}
	require.NoError(t, tr.Send(&pb.Message{Type: pb.MessageType_MSG_APPEND, Chain: 0, Epoch: 1, From: 1, To: 2, Received: 6}))
	require.NoError(t, tr.Send(&pb.Message{Type: pb.MessageType_MSG_ACK, Chain: 1, Epoch: 1, From: 1, To: 2}))
	require.Eventually(t, func() bool { return len(peer.seen()) > 0 }, 10*time.Second, 10*time.Millisecond, "chain 1's ack goes past the snapshot")
	time.Sleep(100 * time.Millisecond) // room for a wrongly sent append to arrive
	require.Equal(t, []string{"MSG_ACK chain 1"}, peer.seen(), "chain 0's append waits behind chain 0's snapshot")

	close(peer.release)
	require.Eventually(t, func() bool { return len(peer.seen()) == 3 }, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, []string{"MSG_ACK chain 1", "snapshot chain 0", "MSG_APPEND chain 0"}, peer.seen())
	require.Equal(t, uint64(3), tr.MessagesSent())
}
