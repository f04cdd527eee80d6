package raftkv

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

	pb "github.com/chainraft/chainraft/raftkv/raftkvpb"
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

// serveNode starts a node and its gRPC server on lis, both stopped when
// the test ends.
func serveNode(t *testing.T, cfg NodeConfig, lis net.Listener) *Node {
	if cfg.TickInterval == 0 {
		cfg.TickInterval = 20 * time.Millisecond
	}
	n, err := StartNode(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, n.Stop()) })
	gs, _ := Serve(n, lis)
	t.Cleanup(gs.Stop)
	return n
}

// loadedLeader starts node 1 as a one-member cluster whose snapshot holds
// about 60 KB (so it travels in ~15 pieces) and whose log is compacted
// past its start, so a node added now is brought up by the snapshot.
func loadedLeader(t *testing.T, lis net.Listener, logger *log.Logger) *Node {
	n := serveNode(t, NodeConfig{ID: 1, Peers: []Member{{ID: 1, Addr: lis.Addr().String()}}, DataDir: t.TempDir(), SnapshotEvery: 10, Logger: logger}, lis)
	n.transport.chunk.Store(testChunk)
	ctx := context.Background()
	require.Eventually(t, func() bool {
		st, err := n.Status(ctx, true)
		return err == nil && st.Role == "StateLeader"
	}, 10*time.Second, 10*time.Millisecond)
	value := strings.Repeat("v", 1000)
	for i := range 60 {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := n.Write(wctx, put(7, uint64(i+1), fmt.Sprintf("k%d", i), value))
		cancel()
		require.NoError(t, err)
	}
	return n
}

func status(t *testing.T, n *Node) Status {
	st, err := n.Status(context.Background(), true)
	require.NoError(t, err)
	return st
}

// A snapshot larger than one piece is sent in pieces, reassembled by the
// joiner and installed: it ends with the leader's data, and both sides
// count the bytes.
func TestChunkedSnapshotBringsUpJoiner(t *testing.T) {
	l1, l2 := listenLocal(t), listenLocal(t)
	var log1, log2 logBuffer
	n1 := loadedLeader(t, l1, log.New(&log1, "", 0))
	members := []Member{{ID: 1, Addr: l1.Addr().String()}, {ID: 2, Addr: l2.Addr().String()}}
	require.NoError(t, n1.AddNode(context.Background(), 2, members[1].Addr))
	n2 := serveNode(t, NodeConfig{ID: 2, Peers: members, Join: true, DataDir: t.TempDir(), Logger: log.New(&log2, "", 0)}, l2)

	require.Eventually(t, func() bool {
		st1, st2 := status(t, n1), status(t, n2)
		return st2.Applied >= st1.Commit && st2.Digest == st1.Digest
	}, 20*time.Second, 20*time.Millisecond, "the joiner holds the leader's data")
	// The sender counts the transfer once the receiver's answer is back.
	require.Eventually(t, func() bool { _, sent := n1.transport.SnapshotsSent(); return sent == 1 }, 5*time.Second, 10*time.Millisecond)
	sentBytes, sent := n1.transport.SnapshotsSent()
	gotBytes, got := n2.transport.SnapshotsReceived()
	require.Equal(t, uint64(1), sent, "one transfer")
	require.Equal(t, uint64(1), got)
	require.Greater(t, gotBytes, uint64(60_000), "the snapshot holds the data")
	require.Equal(t, gotBytes, sentBytes, "every byte sent arrived")
	require.Contains(t, log2.String(), fmt.Sprintf("%d bytes received", gotBytes))
	require.Contains(t, log1.String(), fmt.Sprintf("%d bytes sent in %d chunks", sentBytes, (sentBytes+testChunk-1)/testChunk))

	// The joiner goes on with the log after the snapshot.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := n1.Write(ctx, put(7, 100, "after", "x"))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return status(t, n2).Digest == status(t, n1).Digest }, 10*time.Second, 20*time.Millisecond)
}

// tapPeer sits between node 1 and node 2, which node 1 knows at the tap's
// address: messages pass through, and so do snapshot transfers, except
// that the first cutAfter > 0 transfer breaks off after that many pieces
// (the link cut midway), and with record every transfer is kept (the
// first whole one) and refused, never passed on.
type tapPeer struct {
	pb.UnimplementedRaftServer
	to       pb.RaftClient
	cutAfter int
	record   bool
	mu       sync.Mutex
	cut      bool
	whole    []*pb.SnapshotChunk
	done     chan struct{} // closed at the first cut or recorded transfer
}

func (p *tapPeer) Stream(stream grpc.ClientStreamingServer[pb.MessageBatch, pb.Empty]) error {
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

func (p *tapPeer) Snapshot(stream grpc.ClientStreamingServer[pb.SnapshotChunk, pb.Empty]) error {
	p.mu.Lock()
	cut := p.cutAfter > 0 && !p.cut
	p.cut = p.cut || cut
	p.mu.Unlock()
	var got []*pb.SnapshotChunk
	var out grpc.ClientStreamingClient[pb.SnapshotChunk, pb.Empty]
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
		return stream.SendAndClose(&pb.Empty{})
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.whole == nil {
		p.whole = got
		close(p.done)
	}
	return errors.New("recorded, not passed on")
}

// tappedJoiner adds node 2 to n1's cluster behind a tap: node 2 listens on
// l2, node 1 reaches it through the tap on lt.
func tappedJoiner(t *testing.T, n1 *Node, l1, lt, l2 net.Listener, tap *tapPeer, logger *log.Logger) *Node {
	conn, err := grpc.NewClient(l2.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	tap.to, tap.done = pb.NewRaftClient(conn), make(chan struct{})
	gs := grpc.NewServer()
	pb.RegisterRaftServer(gs, tap)
	go func() { _ = gs.Serve(lt) }()
	t.Cleanup(gs.Stop)
	members := []Member{{ID: 1, Addr: l1.Addr().String()}, {ID: 2, Addr: l2.Addr().String()}}
	n2 := serveNode(t, NodeConfig{ID: 2, Peers: members, Join: true, DataDir: t.TempDir(), Logger: logger}, l2)
	require.NoError(t, n1.AddNode(context.Background(), 2, lt.Addr().String()))
	select {
	case <-tap.done:
	case <-time.After(20 * time.Second):
		t.Fatal("no snapshot transfer reached the tap")
	}
	return n2
}

// A transfer cut midway is reported failed and never applied, and raft
// sends the snapshot again; that one arrives whole and is installed.
func TestChunkedSnapshotCutMidwayIsSentAgain(t *testing.T) {
	l1, lt, l2 := listenLocal(t), listenLocal(t), listenLocal(t)
	var log1 logBuffer
	n1 := loadedLeader(t, l1, log.New(&log1, "", 0))
	n2 := tappedJoiner(t, n1, l1, lt, l2, &tapPeer{cutAfter: 2}, nil)
	require.Eventually(t, func() bool { return strings.Contains(log1.String(), "failed after") },
		10*time.Second, 10*time.Millisecond, "the sender saw the cut")
	require.Eventually(t, func() bool {
		st1, st2 := status(t, n1), status(t, n2)
		return st2.Applied >= st1.Commit && st2.Digest == st1.Digest
	}, 20*time.Second, 20*time.Millisecond, "the joiner holds the leader's data")
	// The sender counts the transfer once the receiver's answer is back.
	require.Eventually(t, func() bool { _, sent := n1.transport.SnapshotsSent(); return sent == 1 }, 5*time.Second, 10*time.Millisecond)
	sentBytes, sent := n1.transport.SnapshotsSent()
	gotBytes, got := n2.transport.SnapshotsReceived()
	require.Equal(t, uint64(1), sent, "one transfer completed")
	require.Equal(t, uint64(1), got, "and only that one was received")
	require.GreaterOrEqual(t, sentBytes, gotBytes+2*testChunk, "the cut transfer's pieces count as sent")
}

// A receiver given part of a transfer by a sender that then vanishes
// discards it, applies nothing, gives back its budget, and installs the
// next whole transfer.
func TestPartialSnapshotDiscarded(t *testing.T) {
	l1, lt, l2 := listenLocal(t), listenLocal(t), listenLocal(t)
	n1 := loadedLeader(t, l1, nil)
	// The tap keeps node 1's transfers from node 2, and records one to
	// replay.
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
	client := pb.NewRaftClient(conn)
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
	require.Zero(t, status(t, n2).Applied, "nothing of the broken transfer was applied")
	bytes, transfers := n2.transport.SnapshotsReceived()
	require.Zero(t, bytes)
	require.Zero(t, transfers)
	require.Zero(t, n2.transport.recv.Held(), "the budget is back")

	require.NoError(t, send(whole, true))
	require.Eventually(t, func() bool {
		st1, st2 := status(t, n1), status(t, n2)
		return st2.Applied > 0 && st2.Digest == st1.Digest
	}, 10*time.Second, 10*time.Millisecond, "the whole transfer is installed")
	bytes, transfers = n2.transport.SnapshotsReceived()
	require.Equal(t, whole[0].GetSize(), bytes)
	require.Equal(t, uint64(1), transfers)
}
