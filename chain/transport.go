package chain

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	pb "github.com/chainraft/chainraft/chain/chainpb"
	"github.com/chainraft/chainraft/internal/redial"
)

const (
	// peerQueue bounds the messages waiting for one peer. When it is full new
	// messages are dropped: the chain protocol resends (acks show the gap).
	peerQueue = 4096
	// stepTimeout bounds one peer call.
	stepTimeout = 2 * time.Second
	// maxMsgSize admits a snapshot of a chain's whole state in one message.
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
}

// MessagesSent is the number of chain messages handed to peer streams since
// the transport started.
func (t *Transport) MessagesSent() uint64 { return t.sent.Load() }

type peer struct {
	addr   string
	conn   *grpc.ClientConn
	client pb.ChainServiceClient
	q      chan *pb.Message
	stopc  chan struct{}
}

// newTransport returns a transport with no peers.
func newTransport() *Transport {
	return &Transport{peers: map[uint64]*peer{}, stopc: make(chan struct{})}
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
	p := &peer{addr: addr, conn: conn, client: pb.NewChainServiceClient(conn), q: make(chan *pb.Message, peerQueue), stopc: make(chan struct{})}
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

func (t *Transport) sendLoop(p *peer) {
	defer t.wg.Done()
	defer p.conn.Close()
	var stream pb.ChainService_StreamClient
	var cancel context.CancelFunc = func() {}
	defer func() { cancel() }()
	for {
		var batch pb.Batch
		select {
		case m := <-p.q:
			batch.Messages = append(batch.Messages, m)
		case <-p.stopc:
			return
		case <-t.stopc:
			return
		}
	drain:
		for len(batch.Messages) < 256 {
			select {
			case m := <-p.q:
				batch.Messages = append(batch.Messages, m)
			default:
				break drain
			}
		}
		if stream == nil {
			var ctx context.Context
			ctx, cancel = context.WithCancel(context.Background())
			s, err := p.client.Stream(ctx)
			if err != nil {
				cancel()
				if !t.pause(p) {
					return
				}
				continue // this batch is dropped; the protocol resends
			}
			stream = s
		}
		// A Send blocks only on flow control, i.e. when the peer stopped
		// reading (a paused process): the watchdog cancels the stream then,
		// which bounds every send by stepTimeout.
		watchdog := time.AfterFunc(stepTimeout, cancel)
		err := stream.Send(&batch)
		watchdog.Stop()
		if err != nil {
			cancel()
			stream = nil
			if !t.pause(p) {
				return
			}
			continue
		}
		t.sent.Add(uint64(len(batch.Messages)))
	}
}

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
