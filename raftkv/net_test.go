package raftkv

import (
	"testing"

	"github.com/stretchr/testify/require"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	pb "github.com/chainraft/chainraft/raftkv/raftkvpb"
)

// testNet runs Cores over an in-memory network with real Storage in temp
// directories: the Node's Ready handling without goroutines or clocks, so a
// test decides exactly which messages arrive, which nodes crash and when.
type testNet struct {
	t       *testing.T
	cfg     CoreConfig
	dirs    map[uint64]string
	cores   map[uint64]*Core
	stores  map[uint64]*Storage
	inbox   []*raftpb.Message
	cut     map[[2]uint64]bool
	replies map[uint64][]Reply
	members []Member
	// holdSnaps keeps snapshots off the network, in held, unreported:
	// a transfer that takes its time.
	holdSnaps bool
	held      []*raftpb.Message
}

func newTestNet(t *testing.T, n int, cfg CoreConfig) *testNet {
	tn := &testNet{
		t: t, cfg: cfg,
		dirs: map[uint64]string{}, cores: map[uint64]*Core{}, stores: map[uint64]*Storage{},
		cut: map[[2]uint64]bool{}, replies: map[uint64][]Reply{},
	}
	for i := 1; i <= n; i++ {
		tn.members = append(tn.members, Member{ID: uint64(i), Addr: "node" + string(rune('0'+i))})
	}
	for _, m := range tn.members {
		tn.dirs[m.ID] = t.TempDir()
		tn.start(m.ID, tn.members)
	}
	t.Cleanup(func() {
		for _, s := range tn.stores {
			s.Close()
		}
	})
	return tn
}

func (tn *testNet) start(id uint64, boot []Member) {
	st, rec, err := OpenStorage(tn.dirs[id], true)
	require.NoError(tn.t, err)
	cfg := tn.cfg
	cfg.ID, cfg.Bootstrap = id, boot
	c, err := NewCore(cfg, rec)
	require.NoError(tn.t, err)
	tn.cores[id], tn.stores[id] = c, st
}

// crash drops a node's volatile state; its storage stays on disk.
func (tn *testNet) crash(id uint64) {
	require.NoError(tn.t, tn.stores[id].Close())
	delete(tn.cores, id)
	delete(tn.stores, id)
}

func (tn *testNet) restart(id uint64) { tn.start(id, nil) }

// writes puts "k" through l as client, sequence numbers from to to, each
// value a letter.
func (tn *testNet) writes(l, client, from, to uint64) {
	for i := from; i <= to; i++ {
		require.NoError(tn.t, tn.write(l, put(client, i, "k", string(rune('a'+i%26)))).Err)
	}
}

// follower is the first member that is not l.
func (tn *testNet) follower(l uint64) uint64 {
	for _, m := range tn.members {
		if m.ID != l {
			return m.ID
		}
	}
	tn.t.Fatalf("no member but %d", l)
	return 0
}

// isolate cuts every link to and from id; heal restores them all.
func (tn *testNet) isolate(id uint64) {
	for _, m := range tn.members {
		tn.cut[[2]uint64{id, m.ID}] = true
		tn.cut[[2]uint64{m.ID, id}] = true
	}
}

func (tn *testNet) heal() { clear(tn.cut) }

// ready handles one node's Ready exactly as Node.handleReady does.
func (tn *testNet) ready(id uint64) bool {
	c := tn.cores[id]
	if !c.HasReady() {
		return false
	}
	rd := c.Ready()
	require.NoError(tn.t, tn.stores[id].Save(rd.HardState, rd.Entries, rd.Snapshot, rd.MustSync))
	for _, m := range rd.Messages {
		b, err := proto.Marshal(m) // a wire copy: raft's messages point into its state
		require.NoError(tn.t, err)
		cp := &raftpb.Message{}
		require.NoError(tn.t, proto.Unmarshal(b, cp))
		if cp.GetType() == raftpb.MsgSnap && len(cp.GetSnapshot().GetData()) == 0 {
			// As the transport does: the data comes from the durable
			// snapshot, since raft's storage holds none.
			snap, err := tn.stores[id].LoadSnapshot()
			require.NoError(tn.t, err)
			require.GreaterOrEqual(tn.t, snap.GetMetadata().GetIndex(), cp.GetSnapshot().GetMetadata().GetIndex())
			cp.Snapshot = snap
		}
		tn.inbox = append(tn.inbox, cp)
	}
	tn.replies[id] = append(tn.replies[id], c.Apply()...)
	c.Advance()
	if cp := c.MaybeSnapshot(); cp != nil {
		require.NoError(tn.t, tn.stores[id].SaveSnapshot(cp.Snapshot))
		require.NoError(tn.t, tn.stores[id].Rewrite(cp.HardState, cp.Entries))
	}
	return true
}

// stabilize runs Readys and delivers messages until nothing moves.
func (tn *testNet) stabilize() {
	for round := 0; ; round++ {
		require.Less(tn.t, round, 10000, "network does not stabilize")
		moved := false
		for _, m := range tn.members {
			if tn.cores[m.ID] != nil && tn.ready(m.ID) {
				moved = true
			}
		}
		msgs := tn.inbox
		tn.inbox = nil
		for _, m := range msgs {
			moved = true
			if tn.holdSnaps && m.GetType() == raftpb.MsgSnap {
				tn.held = append(tn.held, m)
				continue
			}
			to := tn.cores[m.GetTo()]
			if to == nil || tn.cut[[2]uint64{m.GetFrom(), m.GetTo()}] {
				if m.GetType() == raftpb.MsgSnap && tn.cores[m.GetFrom()] != nil {
					tn.cores[m.GetFrom()].ReportSnapshot(m.GetTo(), false)
				}
				continue
			}
			_ = to.Step(m)
			if m.GetType() == raftpb.MsgSnap && tn.cores[m.GetFrom()] != nil {
				tn.cores[m.GetFrom()].ReportSnapshot(m.GetTo(), true)
			}
		}
		if !moved {
			return
		}
	}
}

func (tn *testNet) tick(n int) {
	for range n {
		for _, m := range tn.members {
			if c := tn.cores[m.ID]; c != nil {
				c.Tick()
			}
		}
		tn.stabilize()
	}
}

// leader returns the live node that leads with the highest term, ticking
// until there is one.
func (tn *testNet) leader() uint64 {
	for range 200 {
		var best, term uint64
		for id, c := range tn.cores {
			st := c.Status()
			if st.Role == raft.StateLeader.String() && st.Term >= term {
				best, term = id, st.Term
			}
		}
		if best != 0 {
			return best
		}
		tn.tick(1)
	}
	tn.t.Fatal("no leader elected")
	return 0
}

func (tn *testNet) takeReplies(id uint64) []Reply {
	r := tn.replies[id]
	delete(tn.replies, id)
	return r
}

// put proposes at the leader and returns its reply.
func (tn *testNet) write(id uint64, cmd *pb.Command) Reply {
	tn.t.Helper()
	require.NoError(tn.t, tn.cores[id].Propose(cmd))
	tn.stabilize()
	for _, r := range tn.takeReplies(id) {
		if r.Req.Client == cmd.GetClient() && r.Req.Seq == cmd.GetSeq() {
			return r
		}
	}
	tn.t.Fatalf("no reply to %x/%d at node %d", cmd.GetClient(), cmd.GetSeq(), id)
	return Reply{}
}

var readIDs uint64

// read does a linearizable read at id and returns the value and found.
func (tn *testNet) read(id uint64, key string) *pb.Result {
	tn.t.Helper()
	readIDs++
	rid := readIDs
	require.NoError(tn.t, tn.cores[id].Read(rid, key))
	tn.stabilize()
	for _, r := range tn.takeReplies(id) {
		if r.Read == rid {
			require.NoError(tn.t, r.Err)
			return r.Result
		}
	}
	tn.t.Fatalf("no reply to read %d at node %d", rid, id)
	return nil
}

func put(client, seq uint64, key, value string) *pb.Command {
	return &pb.Command{Client: client, Seq: seq, Op: pb.Op_OP_PUT, Key: key, Value: value}
}
