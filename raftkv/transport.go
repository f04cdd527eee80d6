package raftkv

import (
	"context"
	"fmt"
	"log"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/chainraft/chainraft/internal/chunk"
	"github.com/chainraft/chainraft/internal/redial"
	pb "github.com/chainraft/chainraft/raftkv/raftkvpb"
)

const (
	peerQueue = 4096 // messages queued per peer before dropping
	// peerQueueBytes bounds the bytes queued per peer: appends are up to
	// MaxSizePerMsg each, so a count alone would let a stalled peer's queue
	// hold gigabytes. A message larger than the bound (a snapshot) is still
	// queued when the queue is empty.
	peerQueueBytes = 64 << 20
	streamLifetime = time.Minute // every stream has a deadline; a new one follows
	batchMax       = 256         // messages per stream Send
	batchBytes     = 4 << 20     // bytes per stream Send
	// maxMsgSize bounds one gRPC message. A snapshot whose data is larger
	// than a chunk travels in pieces (sendChunked), so what comes near the
	// bound is a batch or a client request, never the store's whole state.
	maxMsgSize    = 256 << 20
	redialBackoff = 50 * time.Millisecond
)

// report is what a peer sender tells the node about delivery, so raft can
// probe an unreachable follower again and unpause one waiting for a snapshot.
type report struct {
	to uint64
	// group is the raft group of the message reported on; a broken stream
	// concerns every group that has the peer (all).
	group    uint32
	all      bool
	snapshot bool // a MsgSnap; ok says whether it was sent
	ok       bool
}

// Transport sends raft messages to peers: one sender goroutine and one
// gRPC client stream per peer, fed by a bounded queue. Under multi-raft one
// Transport serves every group a process hosts: each message is tagged
// with its group, and a peer is dialled once, whatever groups it shares. Raft tolerates lost
// messages (it retransmits on heartbeats and probes), so a full queue or a
// broken stream drops messages and reports the peer unreachable rather than
// blocking the node's loop.
type Transport struct {
	id     uint64
	logger *log.Logger
	report func(report)

	mu      sync.Mutex // guards peers, groups and stopped; held briefly, never across I/O
	peers   map[uint64]*peer
	groups  map[uint32][]Member // each group's peers, whose union is dialled
	stopped bool
	wg      sync.WaitGroup

	// sent counts raft messages a stream Send accepted, since the node
	// started: the cost side of `chainraft compare` (messages between
	// nodes per client operation). Messages dropped from a full queue or a
	// failed Send are not counted; one atomic add per batch keeps the hot
	// path cheap.
	sent atomic.Uint64

	// chunk is the piece size of a chunked snapshot (chunk.Size; tests set
	// it small), and a MsgSnap whose data is larger goes in pieces. snaps
	// counts what snapshots cost the links, recv bounds and counts what
	// this process takes in (see package chunk).
	chunk atomic.Int64
	snaps chunk.Sent
	recv  *chunk.Receiver
}

// SnapshotsSent reports the snapshot data bytes sent (every piece a stream
// accepted) and the transfers the receiver took whole.
func (t *Transport) SnapshotsSent() (bytes, transfers uint64) { return t.snaps.Load() }

// SnapshotsReceived reports the snapshot data bytes and the transfers this
// process received whole and handed to a node.
func (t *Transport) SnapshotsReceived() (bytes, transfers uint64) { return t.recv.Received() }

// MessagesSent is the number of raft messages handed to peer streams since
// the transport started.
func (t *Transport) MessagesSent() uint64 { return t.sent.Load() }

type peer struct {
	id   uint64
	addr string
	conn *grpc.ClientConn
	q    chan outMsg
	// snapq holds a chunked snapshot for sendSnapshots, one at a time:
	// raft sends a follower one snapshot and waits for its report, and a
	// second copy would only hold another reference to the data.
	snapq chan outSnap
	// queued is the bytes in q: added by Send, subtracted as pump takes.
	queued atomic.Int64
	// ctx ends when the peer is removed or the transport stops; every
	// stream's context derives from it.
	ctx    context.Context
	cancel context.CancelFunc
}

type outMsg struct {
	data  []byte
	group uint32
	snap  bool
	// snapBytes is a MsgSnap's snapshot data size, for the counters.
	snapBytes int
}

// outSnap is a MsgSnap to send in pieces: header is the message marshalled
// without the snapshot's data, data the snapshot's data itself, shared
// with raft's storage (never written after it is made) rather than copied.
type outSnap struct {
	group  uint32
	index  uint64
	header []byte
	data   []byte
	// msg and open, when set, stand for header and data: a MsgSnap
	// without data (copied, so that it no longer points into raft), whose
	// snapshot open gives from disk when the sender gets to it; src is
	// what open gave.
	msg  *raftpb.Message
	open func() (snapSource, error)
	src  snapSource
}

// snapSource hands out a snapshot's metadata and then its data, piece by
// piece (Storage.OpenSnapshot reads them from the file).
type snapSource interface {
	Metadata() *raftpb.SnapshotMetadata
	Size() int64
	Next(n int) ([]byte, error)
	Close() error
}

func newTransport(id uint64, logger *log.Logger, report func(report)) *Transport {
	t := &Transport{id: id, logger: logger, report: report, peers: map[uint64]*peer{}, groups: map[uint32][]Member{},
		recv: chunk.NewReceiver(chunk.MaxBytes, chunk.Budget)}
	t.chunk.Store(chunk.Size)
	return t
}

// SetPeers sets the peers of group 0, the only group of a single-group
// store (see SetGroupPeers).
func (t *Transport) SetPeers(ms []Member) { t.SetGroupPeers(0, ms) }

// SetGroupPeers replaces group g's peers, then starts senders for nodes in
// no group's list before, restarts those whose address changed and stops
// those no group lists any more. The first address a group gives for a
// node wins when two disagree (they never do: addresses are per node).
func (t *Transport) SetGroupPeers(g uint32, ms []Member) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	t.groups[g] = append([]Member(nil), ms...)
	want := map[uint64]string{}
	for _, gms := range t.groups {
		for _, m := range gms {
			if _, ok := want[m.ID]; !ok && m.ID != t.id && m.Addr != "" {
				want[m.ID] = m.Addr
			}
		}
	}
	for id, p := range t.peers {
		if addr, ok := want[id]; !ok || addr != p.addr {
			p.cancel()
			delete(t.peers, id)
		}
	}
	for id, addr := range want {
		if _, ok := t.peers[id]; ok {
			continue
		}
		conn, err := grpc.NewClient(addr, dialOptions(
			grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(maxMsgSize), grpc.MaxCallRecvMsgSize(maxMsgSize)))...)
		if err != nil {
			t.logger.Printf("transport: peer %d at %s: %v", id, addr, err)
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		p := &peer{id: id, addr: addr, conn: conn, q: make(chan outMsg, peerQueue), snapq: make(chan outSnap, 1), ctx: ctx, cancel: cancel}
		t.peers[id] = p
		t.wg.Add(2)
		// The snapshot sender shares the connection, which the message
		// sender closes: closing it first would fail the other's stream.
		snapsDone := make(chan struct{})
		go func() {
			defer t.wg.Done()
			defer close(snapsDone)
			t.sendSnapshots(p)
		}()
		go func() {
			defer t.wg.Done()
			defer conn.Close()
			t.run(p)
			<-snapsDone
		}()
	}
}

// dialOptions are shared by peer and client connections: the reconnect
// policy of package redial.
func dialOptions(extra ...grpc.DialOption) []grpc.DialOption { return redial.Options(extra...) }

// Send queues m as group 0's (see SendGroup).
func (t *Transport) Send(m *raftpb.Message) error { return t.SendGroup(0, m) }

// SendGroup marshals m (raft's messages point into its state, so they are
// marshalled here, on the node's goroutine) and queues it, tagged with its
// group g. An error means the message was dropped; the node reports it to
// raft.
func (t *Transport) SendGroup(g uint32, m *raftpb.Message) error {
	t.mu.Lock()
	p := t.peers[m.GetTo()]
	t.mu.Unlock()
	if p == nil {
		return fmt.Errorf("no address for node %d", m.GetTo())
	}
	if m.GetType() == raftpb.MsgSnap && int64(len(m.GetSnapshot().GetData())) > t.chunk.Load() {
		return t.queueChunked(g, p, m)
	}
	data, err := proto.Marshal(m)
	if err != nil {
		return fmt.Errorf("marshal %v to %d: %w", m.GetType(), m.GetTo(), err)
	}
	size := int64(len(data))
	if q := p.queued.Add(size); q > peerQueueBytes && q > size {
		p.queued.Add(-size)
		return fmt.Errorf("queue to node %d full (%d bytes)", m.GetTo(), q-size)
	}
	select {
	case p.q <- outMsg{data: data, group: g, snap: m.GetType() == raftpb.MsgSnap, snapBytes: len(m.GetSnapshot().GetData())}:
		return nil
	default:
		p.queued.Add(-size)
		return fmt.Errorf("queue to node %d full", m.GetTo())
	}
}

// Stop stops every sender and waits for them.
func (t *Transport) Stop() {
	t.mu.Lock()
	t.stopped = true
	for id, p := range t.peers {
		p.cancel()
		delete(t.peers, id)
	}
	t.mu.Unlock()
	t.wg.Wait()
}

// run owns one peer's stream: it opens it, sends batches drained from the
// queue, and on any error reports and reopens after a short pause.
func (t *Transport) run(p *peer) {
	client := pb.NewRaftClient(p.conn)
	for p.ctx.Err() == nil {
		ctx, cancel := context.WithTimeout(p.ctx, streamLifetime)
		stream, err := client.Stream(ctx)
		if err == nil {
			err = t.pump(ctx, p, stream)
		}
		cancel()
		if err != nil && p.ctx.Err() == nil {
			t.report(report{to: p.id, all: true})
		}
		select {
		case <-p.ctx.Done():
		case <-time.After(redialBackoff):
		}
	}
}

func (t *Transport) pump(ctx context.Context, p *peer, stream grpc.ClientStreamingClient[pb.MessageBatch, pb.Empty]) error {
	for {
		var first outMsg
		select {
		case first = <-p.q:
		case <-ctx.Done():
			return nil // stream lifetime over (or stopping): open a new one
		}
		p.queued.Add(-int64(len(first.data)))
		batch := &pb.MessageBatch{From: t.id}
		var snaps []outMsg // the snapshots in the batch
		grouped := false
		add := func(m outMsg) {
			batch.Messages = append(batch.Messages, m.data)
			batch.Groups = append(batch.Groups, m.group)
			grouped = grouped || m.group != 0
			if m.snap {
				snaps = append(snaps, m)
			}
		}
		add(first)
		size := len(first.data)
	drain:
		for len(batch.Messages) < batchMax && size < batchBytes {
			select {
			case m := <-p.q:
				p.queued.Add(-int64(len(m.data)))
				add(m)
				size += len(m.data)
			default:
				break drain
			}
		}
		if !grouped {
			batch.Groups = nil // all group 0: the single-group wire format
		}
		err := stream.Send(batch)
		for _, s := range snaps {
			t.report(report{to: p.id, group: s.group, snapshot: true, ok: err == nil})
			if err == nil {
				t.snaps.Piece(s.snapBytes)
				t.snaps.Transfer()
			}
		}
		if err != nil {
			return fmt.Errorf("send to node %d: %w", p.id, err)
		}
		t.sent.Add(uint64(len(batch.Messages)))
	}
}

// queueChunked hands a MsgSnap too large for one message to the peer's
// snapshot sender. Only the header is marshalled here, on the node's
// goroutine (raft's message points into its state); the data goes out
// as it is.
func (t *Transport) queueChunked(g uint32, p *peer, m *raftpb.Message) error {
	snap := m.GetSnapshot()
	m.Snapshot = &raftpb.Snapshot{Metadata: snap.GetMetadata()}
	header, err := proto.Marshal(m)
	m.Snapshot = snap
	if err != nil {
		return fmt.Errorf("marshal %v to %d: %w", m.GetType(), m.GetTo(), err)
	}
	select {
	case p.snapq <- outSnap{group: g, index: snap.GetMetadata().GetIndex(), header: header, data: snap.GetData()}:
		return nil
	default:
		return fmt.Errorf("a snapshot to node %d is already on its way", m.GetTo())
	}
}

// SendSnapshot queues a MsgSnap whose snapshot data raft's storage does
// not hold: the peer's snapshot sender calls open, off the node's loop,
// and sends the snapshot it gives, which is the one m names or a newer
// one (raft takes either), in pieces whatever its size.
func (t *Transport) SendSnapshot(g uint32, m *raftpb.Message, open func() (snapSource, error)) error {
	t.mu.Lock()
	p := t.peers[m.GetTo()]
	t.mu.Unlock()
	if p == nil {
		return fmt.Errorf("no address for node %d", m.GetTo())
	}
	msg := proto.Clone(m).(*raftpb.Message)
	select {
	case p.snapq <- outSnap{group: g, index: m.GetSnapshot().GetMetadata().GetIndex(), msg: msg, open: open}:
		return nil
	default:
		return fmt.Errorf("a snapshot to node %d is already on its way", m.GetTo())
	}
}

// openSnapshot fills in s's header and source from its open function;
// the caller closes s.src.
func openSnapshot(s outSnap) (outSnap, error) {
	src, err := s.open()
	if err != nil {
		return s, fmt.Errorf("open snapshot %d: %w", s.index, err)
	}
	if got := src.Metadata().GetIndex(); got < s.index {
		src.Close()
		return s, fmt.Errorf("open snapshot %d: the durable snapshot is at %d", s.index, got)
	}
	s.index = src.Metadata().GetIndex()
	s.msg.Snapshot = &raftpb.Snapshot{Metadata: src.Metadata()}
	header, err := proto.Marshal(s.msg)
	if err != nil {
		src.Close()
		return s, fmt.Errorf("marshal %v to %d: %w", s.msg.GetType(), s.msg.GetTo(), err)
	}
	s.header, s.src = header, src
	return s, nil
}

// sendSnapshots owns one peer's chunked snapshot transfers, apart from its
// message stream, so that heartbeats and appends to the peer's other
// groups keep flowing while a large snapshot travels. Raft needs no order
// between the two: it sends a follower nothing else of its log until the
// snapshot is reported.
func (t *Transport) sendSnapshots(p *peer) {
	client := pb.NewRaftClient(p.conn)
	for {
		select {
		case s := <-p.snapq:
			// Reported even when the peer is going away: raft holds a
			// follower waiting for a snapshot until it hears how it went.
			var err error
			if s.open != nil {
				s, err = openSnapshot(s)
				if err != nil {
					t.logger.Printf("transport: snapshot to node %d (group %d): %v", p.id, s.group, err)
				}
			}
			if err == nil {
				err = t.sendChunked(client, p, s)
			}
			if s.src != nil {
				s.src.Close()
			}
			t.report(report{to: p.id, group: s.group, snapshot: true, ok: err == nil})
		case <-p.ctx.Done():
			return
		}
	}
}

// sendChunked sends one snapshot in pieces over a stream of its own, whose
// deadline (chunk.Timeout of its size) bounds the whole transfer, and
// returns once the receiver answered that it took the snapshot whole.
func (t *Transport) sendChunked(client pb.RaftClient, p *peer, s outSnap) error {
	began := time.Now()
	size := len(s.data)
	next := func(n int) ([]byte, error) {
		piece := s.data[:n:n]
		s.data = s.data[n:]
		return piece, nil
	}
	if s.src != nil {
		size, next = int(s.src.Size()), s.src.Next
	}
	ctx, cancel := context.WithTimeout(p.ctx, chunk.Timeout(int64(size)))
	defer cancel()
	pieces, sent := 0, 0
	err := func() error {
		stream, err := client.Snapshot(ctx)
		if err != nil {
			return err
		}
		pieces, sent, err = t.snaps.SendFrom(size, int(t.chunk.Load()), next, cancel, func(piece []byte, first bool) error {
			c := &pb.SnapshotChunk{Data: piece}
			if first {
				c.From, c.Group, c.Message, c.Size = t.id, s.group, s.header, uint64(size)
			}
			return stream.Send(c)
		}, func() error {
			_, err := stream.CloseAndRecv()
			return err
		})
		return err
	}()
	took := time.Since(began).Round(time.Millisecond)
	if err != nil {
		t.logger.Printf("transport: snapshot to node %d (group %d, index %d) failed after %d of %d bytes in %d chunks, %v: %v",
			p.id, s.group, s.index, sent, size, pieces, took, err)
		return err
	}
	t.logger.Printf("transport: snapshot to node %d (group %d, index %d): %d bytes sent in %d chunks, %v",
		p.id, s.group, s.index, size, pieces, took)
	return nil
}
