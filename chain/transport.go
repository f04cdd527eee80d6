package chain

import (
	"context"
	"fmt"
	"io"
	"log"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	pb "github.com/chainraft/chainraft/chain/chainpb"
	"github.com/chainraft/chainraft/internal/chunk"
	"github.com/chainraft/chainraft/internal/redial"
)

const (
	// peerQueue bounds the messages waiting for one peer. When it is full new
	// messages are dropped: the chain protocol resends (acks show the gap).
	peerQueue = 4096
	// stepTimeout bounds one peer call.
	stepTimeout = 2 * time.Second
	// maxMsgSize bounds one gRPC message. A snapshot larger than a chunk
	// travels in pieces (sendChunked), so what comes near the bound is a
	// batch or a client request, never a chain's whole state.
	maxMsgSize = 256 << 20
)

// Connection liveness. A partition made in the kernel (an iptables DROP,
// a pulled cable) leaves a TCP connection open and silent: a stream's
// Sends fill buffers that never drain, and after the heal TCP retransmits
// only when its backed-off timer fires, tens of seconds later; a proxy
// that resets connections hides this. gRPC's keepalive sets the socket's
// TCP_USER_TIMEOUT to keepaliveTimeout on Linux, so a connection whose
// data goes unacknowledged that long is closed at once, and pings every
// keepaliveTime (gRPC's floor) find an idle one. With package redial's
// reconnect policy a link is back within about a second of the network.
const (
	keepaliveTime    = 10 * time.Second
	keepaliveTimeout = 2 * time.Second
)

// dialOptions are shared by peer and client connections (see
// keepaliveTimeout).
func dialOptions(extra ...grpc.DialOption) []grpc.DialOption {
	return redial.Options(append([]grpc.DialOption{
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: keepaliveTime, Timeout: keepaliveTimeout, PermitWithoutStream: true}),
	}, extra...)...)
}

// Transport carries chain messages to peers: one gRPC connection and one
// sender goroutine per peer, which sends queued messages in order, batched,
// over one client stream, so each link is FIFO as chain replication needs
// and a batch does not wait for the previous one's round trip. A failed send
// drops its batch and reopens the stream; the protocol's acks and resends
// repair the gap.
type Transport struct {
	mu     sync.Mutex
	peers  map[uint64]*peer
	stopc  chan struct{}
	wg     sync.WaitGroup
	closed bool

	// sent counts chain messages a stream Send accepted, since the node
	// started: the cost side of `chainraft compare` (messages between
	// nodes per client operation). Dropped messages (full queue, failed
	// stream) are not counted; one atomic add per batch keeps it cheap.
	sent atomic.Uint64

	logger *log.Logger
	// chunk is the piece size of a chunked snapshot (chunk.Size; tests set
	// it small): a snapshot message whose snapshot is larger goes in
	// pieces. snaps counts what snapshots cost the links, recv bounds and
	// counts what this node takes in (see package chunk).
	chunk atomic.Int64
	snaps chunk.Sent
	recv  *chunk.Receiver

	// copying counts the chunked transfers in progress, either way, and
	// copyingSince is when the count last rose from zero (UnixNano): see
	// Copying.
	copyMu       sync.Mutex
	copying      int
	copyingSince time.Time
}

// copyBegin and copyEnd bracket one chunked transfer, sent or received.
func (t *Transport) copyBegin() {
	t.copyMu.Lock()
	if t.copying == 0 {
		t.copyingSince = time.Now()
	}
	t.copying++
	t.copyMu.Unlock()
}

func (t *Transport) copyEnd() {
	t.copyMu.Lock()
	t.copying--
	t.copyMu.Unlock()
}

// Copying reports whether a chunked transfer has been in progress, either
// way, without a pause since no longer than d ago.
func (t *Transport) Copying(d time.Duration) bool {
	t.copyMu.Lock()
	defer t.copyMu.Unlock()
	return t.copying > 0 && time.Since(t.copyingSince) < d
}

// SnapshotsSent reports the snapshot bytes sent (every piece a stream
// accepted, and snapshots small enough to go in a batch) and the transfers
// the receiver took whole.
func (t *Transport) SnapshotsSent() (bytes, transfers uint64) { return t.snaps.Load() }

// SnapshotsReceived reports the snapshot bytes and the transfers this node
// received whole and handed to its Core.
func (t *Transport) SnapshotsReceived() (bytes, transfers uint64) { return t.recv.Received() }

// MessagesSent is the number of chain messages handed to peer streams since
// the transport started.
func (t *Transport) MessagesSent() uint64 { return t.sent.Load() }

type peer struct {
	id     uint64
	addr   string
	conn   *grpc.ClientConn
	client pb.ChainServiceClient
	q      chan *pb.Message
	stopc  chan struct{}
	// snapq carries snapshots too large for a batch from sendLoop to
	// sendSnapshots; snapDone carries back the chain of each one done
	// (sent or failed), so that sendLoop lets that chain's later messages
	// go. Both hold snapQueue, so neither side blocks the other for long.
	snapq    chan *pb.Message
	snapDone chan uint32
}

// snapQueue bounds the chunked snapshots waiting for one peer: one per
// chain of a three-chain placement and some slack. Past it a snapshot is
// dropped, like a message from a full queue; the Core sends it again.
const snapQueue = 8

// newTransport returns a transport with no peers; logger gets a line per
// chunked snapshot transfer.
func newTransport(logger *log.Logger) *Transport {
	if logger == nil {
		logger = log.New(io.Discard, "", 0)
	}
	t := &Transport{peers: map[uint64]*peer{}, stopc: make(chan struct{}), logger: logger,
		recv: chunk.NewReceiver(chunk.MaxBytes, chunk.Budget)}
	t.chunk.Store(chunk.Size)
	return t
}

// SetPeer points id at addr, replacing the connection if the address
// changed (a restarted node may listen elsewhere).
func (t *Transport) SetPeer(id uint64, addr string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	if p, ok := t.peers[id]; ok {
		if p.addr == addr {
			return
		}
		close(p.stopc)
		delete(t.peers, id)
	}
	conn, err := grpc.NewClient(addr, dialOptions(
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsgSize), grpc.MaxCallSendMsgSize(maxMsgSize)))...)
	if err != nil {
		return // malformed address: messages to id are dropped
	}
	p := &peer{id: id, addr: addr, conn: conn, client: pb.NewChainServiceClient(conn), q: make(chan *pb.Message, peerQueue), stopc: make(chan struct{}),
		snapq: make(chan *pb.Message, snapQueue), snapDone: make(chan uint32, snapQueue)}
	t.peers[id] = p
	t.wg.Add(1)
	go t.sendLoop(p)
}

// Send queues m for its receiver without blocking. An error means the
// message was dropped (unknown peer or full queue); the chain protocol's
// acks show the gap and the predecessor resends, so the node only counts on
// that.
func (t *Transport) Send(m *pb.Message) error {
	t.mu.Lock()
	p, ok := t.peers[m.To]
	t.mu.Unlock()
	if !ok {
		return fmt.Errorf("no address for node %d", m.To)
	}
	select {
	case p.q <- m:
		return nil
	default:
		return fmt.Errorf("queue to node %d full", m.To)
	}
}

// sendLoop owns one peer's stream and its queue. A snapshot larger than a
// chunk goes to the peer's snapshot sender (sendSnapshots), which carries
// it in pieces over a stream of its own while this loop goes on with the
// other chains' batches: a 300 MB copy takes seconds, and holding every
// chain's appends to the peer behind it made the data-path detector take
// the peer out. The snapshot's own chain stays FIFO, which the chain
// protocol counts on (what follows a snapshot builds on it): the batch
// before it is sent first, and that chain's later messages are held here
// until the transfer is done.
func (t *Transport) sendLoop(p *peer) {
	defer t.wg.Done()
	snapsDone := make(chan struct{})
	go func() {
		defer close(snapsDone)
		t.sendSnapshots(p)
	}()
	// The snapshot sender uses the connection too: it goes first.
	defer func() {
		<-snapsDone
		p.conn.Close()
	}()
	var stream pb.ChainService_StreamClient
	var cancel context.CancelFunc = func() {}
	defer func() { cancel() }()
	// send sends one batch on the stream, opening it if need be; a failed
	// batch is dropped (the protocol resends). It reports false when the
	// transport or the peer is stopping.
	send := func(batch *pb.Batch) bool {
		if stream == nil {
			var ctx context.Context
			ctx, cancel = context.WithCancel(context.Background())
			s, err := p.client.Stream(ctx)
			if err != nil {
				cancel()
				return t.pause(p)
			}
			stream = s
		}
		// A Send blocks only on flow control, i.e. when the peer stopped
		// reading (a paused process): the watchdog cancels the stream then,
		// which bounds every send by stepTimeout.
		watchdog := time.AfterFunc(stepTimeout, cancel)
		err := stream.Send(batch)
		watchdog.Stop()
		if err != nil {
			cancel()
			stream = nil
			return t.pause(p)
		}
		t.sent.Add(uint64(len(batch.Messages)))
		for _, m := range batch.Messages {
			if m.Type == pb.MessageType_MSG_SNAPSHOT {
				t.snaps.Piece(proto.Size(m.Snapshot))
				t.snaps.Transfer()
			}
		}
		return true
	}
	// pending counts each chain's snapshots with the snapshot sender;
	// held keeps that chain's messages queued after them, in order, at
	// most peerQueue (past it they are dropped, as from a full queue).
	pending := map[uint32]int{}
	held := map[uint32][]*pb.Message{}
	for {
		var msgs []*pb.Message
		select {
		case m := <-p.q:
			msgs = append(msgs, m)
		case c := <-p.snapDone:
			if pending[c]--; pending[c] == 0 {
				msgs = held[c]
				delete(pending, c)
				delete(held, c)
			}
		case <-p.stopc:
			return
		case <-t.stopc:
			return
		}
	drain:
		for len(msgs) < 256 {
			select {
			case m := <-p.q:
				msgs = append(msgs, m)
			default:
				break drain
			}
		}
		batch := &pb.Batch{}
		for _, m := range msgs {
			if pending[m.Chain] > 0 {
				if len(held[m.Chain]) < peerQueue {
					held[m.Chain] = append(held[m.Chain], m)
				}
				continue
			}
			if m.Type != pb.MessageType_MSG_SNAPSHOT || int64(proto.Size(m.Snapshot)) <= t.chunk.Load() {
				batch.Messages = append(batch.Messages, m)
				continue
			}
			if len(batch.Messages) > 0 {
				if !send(batch) {
					return
				}
				batch = &pb.Batch{}
			}
			select {
			case p.snapq <- m:
				pending[m.Chain]++
			default: // dropped: the Core sends the snapshot again
			}
		}
		if len(batch.Messages) > 0 && !send(batch) {
			return
		}
	}
}

// sendSnapshots owns one peer's chunked transfers, one at a time, and
// tells sendLoop as each is done; it ends when the peer or the transport
// stops, and sendLoop waits for it.
func (t *Transport) sendSnapshots(p *peer) {
	for {
		select {
		case m := <-p.snapq:
			t.copyBegin()
			err := t.sendChunked(p, m)
			t.copyEnd()
			if err == nil {
				t.sent.Add(1)
			}
			select {
			case p.snapDone <- m.Chain:
			case <-p.stopc:
				return
			case <-t.stopc:
				return
			}
		case <-p.stopc:
			return
		case <-t.stopc:
			return
		}
	}
}

// sendChunked sends one snapshot message in pieces over a stream of its
// own, whose deadline (chunk.Timeout of its size) bounds the whole
// transfer, and returns once the receiver answered that its Core has it.
// A failed transfer is dropped like a failed batch: the Core sends the
// snapshot again when it has gone unacknowledged too long (snapRetry).
func (t *Transport) sendChunked(p *peer, m *pb.Message) error {
	began := time.Now()
	data, err := proto.Marshal(m.Snapshot)
	if err != nil {
		return err
	}
	// The header is m without its snapshot, made field by field so that
	// the snapshot is not copied and m, which the node handed over, is not
	// changed.
	src := m.ProtoReflect()
	header := src.New()
	snapField := src.Descriptor().Fields().ByName("snapshot")
	src.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd != snapField {
			header.Set(fd, v)
		}
		return true
	})
	size := len(data)
	ctx, cancel := context.WithTimeout(context.Background(), chunk.Timeout(int64(size)))
	defer cancel()
	// The transfer ends early when the transport or the peer stops; the
	// watcher that sees to it is over before sendChunked returns.
	stop, watched := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case <-p.stopc:
		case <-t.stopc:
		case <-stop:
		}
		cancel()
	}()
	defer func() {
		close(stop)
		<-watched
	}()
	pieces, sent := 0, 0
	attempt := func() error {
		stream, err := p.client.Snapshot(ctx)
		if err != nil {
			return err
		}
		pieces, sent, err = t.snaps.Send(data, int(t.chunk.Load()), cancel, func(piece []byte, first bool) error {
			c := &pb.SnapshotChunk{Data: piece}
			if first {
				c.Message, c.Size = header.Interface().(*pb.Message), uint64(size)
			}
			return stream.Send(c)
		}, func() error {
			_, err := stream.CloseAndRecv()
			return err
		})
		return err
	}
	// A transfer that fails before its first byte is tried again a few
	// times: a peer that restarted at the same address leaves the old
	// connection failing its first call, and the Core would otherwise
	// wait out its retry time (10 s for 100 MB) to send the state again.
	for try := 1; ; try++ {
		err = attempt()
		if err == nil || sent > 0 || try == snapshotTries || ctx.Err() != nil {
			break
		}
		select {
		case <-time.After(snapshotTryPause):
		case <-ctx.Done():
		}
	}
	took := time.Since(began).Round(time.Millisecond)
	if err != nil {
		t.logger.Printf("transport: snapshot of chain %d (epoch %d, seq %d) to node %d failed after %d of %d bytes in %d chunks, %v: %v",
			m.Chain, m.Epoch, m.Snapshot.GetLastSeq(), p.id, sent, size, pieces, took, err)
		return err
	}
	t.logger.Printf("transport: snapshot of chain %d (epoch %d, seq %d) to node %d: %d bytes sent in %d chunks, %v",
		m.Chain, m.Epoch, m.Snapshot.GetLastSeq(), p.id, size, pieces, took)
	return nil
}

// snapshotTries and snapshotTryPause bound the attempts of a chunked
// transfer that fails before its first byte (sendChunked).
const (
	snapshotTries    = 4
	snapshotTryPause = 250 * time.Millisecond
)

// pause backs off after a failed call so a dead peer does not spin the
// sender; it reports false when the transport or peer is stopping.
func (t *Transport) pause(p *peer) bool {
	select {
	case <-time.After(50 * time.Millisecond):
		return true
	case <-p.stopc:
		return false
	case <-t.stopc:
		return false
	}
}

// Stop stops every sender and closes the connections.
func (t *Transport) Stop() {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.closed = true
	close(t.stopc)
	t.mu.Unlock()
	t.wg.Wait()
}
