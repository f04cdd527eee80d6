package raftkv

import (
	"fmt"
	"io"
	"maps"
	"sort"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/chainraft/chainraft/kv"
	pb "github.com/chainraft/chainraft/raftkv/raftkvpb"
)

// fsm is the replicated state machine: the data, the dedup table and the
// membership with addresses. Every node applies the same committed entries
// in the same order, so every field here must be a pure function of the log;
// nothing in it may depend on which node applies it or when.
type fsm struct {
	data     map[string]string
	sessions map[uint64]*pb.Session // client id -> last applied request
	members  map[uint64]string      // voter id -> address
	removed  map[uint64]bool        // ids removed once, never to be reused
	// bytes is the data's size, keys and values: about what a snapshot
	// writes, so that StartSnapshot can weigh it against the log.
	bytes uint64
}

func newFSM() *fsm {
	return &fsm{
		data:     map[string]string{},
		sessions: map[uint64]*pb.Session{},
		members:  map[uint64]string{},
		removed:  map[uint64]bool{},
	}
}

// errStale marks a command older than its client's last applied request: its
// client has moved on, so nobody waits for it and it must not apply.
var errStale = fmt.Errorf("stale request")

// apply executes a write once per (client, seq): a retry of the last applied
// sequence returns the first result without touching the data. noDedup is
// the seeded bug BugNoDedup (false outside tests of the harness).
func (f *fsm) apply(cmd *pb.Command, noDedup bool) (*pb.Result, error) {
	// SEEDED BUG (BugNoDedup): skip the dedup table, so a retry applies again.
	if s, ok := f.sessions[cmd.GetClient()]; ok && !noDedup {
		switch {
		case cmd.GetSeq() == s.GetSeq():
			return s.GetResult(), nil
		case cmd.GetSeq() < s.GetSeq():
			return nil, errStale
		}
	}
	res := &pb.Result{}
	key := cmd.GetKey()
	prev, had := f.data[key]
	switch cmd.GetOp() {
	case pb.Op_OP_PUT:
		f.data[key] = cmd.GetValue()
	case pb.Op_OP_APPEND:
		f.data[key] += cmd.GetValue()
	case pb.Op_OP_CAS:
		if cur, ok := f.data[key]; ok && cur == cmd.GetExpect() {
			f.data[key] = cmd.GetValue()
			res.Swapped = true
		}
	default:
		// Validated before proposing; a log holding anything else was
		// written by a different program.
		panic(fmt.Sprintf("raftkv: committed command with op %v (client %x seq %d)", cmd.GetOp(), cmd.GetClient(), cmd.GetSeq()))
	}
	if v, ok := f.data[key]; ok {
		f.bytes += uint64(len(v)) - uint64(len(prev))
		if !had {
			f.bytes += uint64(len(key))
		}
	}
	f.sessions[cmd.GetClient()] = &pb.Session{Client: cmd.GetClient(), Seq: cmd.GetSeq(), Result: res}
	return res, nil
}

// get reads the local state; linearizable only once the caller has waited
// for applied >= a read index confirmed by a quorum.
func (f *fsm) get(key string) *pb.Result {
	v, ok := f.data[key]
	return &pb.Result{Found: ok, Value: v}
}

// digest hashes the data (kv.Digest): the harness compares it across
// replicas at the end of a run. The dedup table and the membership are
// left out so that the same data gives the same digest in both stores.
func (f *fsm) digest() string { return kv.Digest(f.data) }

// clone copies the state for a snapshot built off the loop. The maps are
// copied, not their values: strings are immutable and a session is
// replaced, never changed, when its client's next write applies.
func (f *fsm) clone() *fsm {
	return &fsm{data: maps.Clone(f.data), sessions: maps.Clone(f.sessions), members: maps.Clone(f.members), removed: maps.Clone(f.removed), bytes: f.bytes}
}

func (f *fsm) marshal() []byte {
	s := f.rest()
	s.Data = f.data
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(s)
	if err != nil {
		panic(fmt.Sprintf("raftkv: marshal state snapshot: %v", err))
	}
	return b
}

// rest is the state snapshot without its data: the dedup table and the
// membership.
func (f *fsm) rest() *pb.StateSnapshot {
	s := &pb.StateSnapshot{}
	for _, c := range sortedKeys(f.sessions) {
		s.Sessions = append(s.Sessions, f.sessions[c])
	}
	for _, id := range sortedKeys(f.members) {
		s.Members = append(s.Members, &pb.Member{Id: id, Addr: f.members[id]})
	}
	s.Removed = sortedKeys(f.removed)
	return s
}

// stream is marshal as a writer of size bytes, for a snapshot written
// straight to its file: the data's map entries encoded one by one, keys in
// order, then the rest, so that a gigabyte of state is never also a
// gigabyte of marshalled bytes in memory. restore reads either encoding.
func (f *fsm) stream() (size int64, write func(io.Writer) error) {
	keys := make([]string, 0, len(f.data))
	for k := range f.data {
		keys = append(keys, k)
		size += int64(mapEntrySize(k, f.data[k]))
	}
	sort.Strings(keys)
	rest, err := proto.MarshalOptions{Deterministic: true}.Marshal(f.rest())
	if err != nil {
		panic(fmt.Sprintf("raftkv: marshal state snapshot: %v", err))
	}
	size += int64(len(rest))
	return size, func(w io.Writer) error {
		var head []byte
		buf := make([]byte, 64<<10)
		for _, k := range keys {
			v := f.data[k]
			head = protowire.AppendTag(head[:0], stateDataField, protowire.BytesType)
			head = protowire.AppendVarint(head, uint64(entryBodySize(k, v)))
			head = protowire.AppendTag(head, 1, protowire.BytesType)
			head = protowire.AppendVarint(head, uint64(len(k)))
			if err := writeAll(w, buf, head, k); err != nil {
				return err
			}
			head = protowire.AppendTag(head[:0], 2, protowire.BytesType)
			head = protowire.AppendVarint(head, uint64(len(v)))
			if err := writeAll(w, buf, head, v); err != nil {
				return err
			}
		}
		_, err := w.Write(rest)
		return err
	}
}

// stateDataField is pb.StateSnapshot's data field number.
const stateDataField = 1

// entryBodySize is the encoded size of one map entry's body (key field 1,
// value field 2); mapEntrySize adds the entry's own tag and length.
func entryBodySize(k, v string) int {
	return 2 + protowire.SizeBytes(len(k)) + protowire.SizeBytes(len(v))
}

func mapEntrySize(k, v string) int {
	return 1 + protowire.SizeBytes(entryBodySize(k, v))
}

// writeAll writes head, then s through buf, in pieces of buf's size.
func writeAll(w io.Writer, buf, head []byte, s string) error {
	if _, err := w.Write(head); err != nil {
		return err
	}
	for len(s) > 0 {
		n := copy(buf, s)
		if _, err := w.Write(buf[:n]); err != nil {
			return err
		}
		s = s[n:]
	}
	return nil
}

func (f *fsm) restore(b []byte) error {
	var s pb.StateSnapshot
	if err := proto.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("unmarshal state snapshot: %w", err)
	}
	nf := newFSM()
	for k, v := range s.GetData() {
		nf.data[k] = v
		nf.bytes += uint64(len(k) + len(v))
	}
	for _, se := range s.GetSessions() {
		nf.sessions[se.GetClient()] = se
	}
	for _, m := range s.GetMembers() {
		nf.members[m.GetId()] = m.GetAddr()
	}
	for _, id := range s.GetRemoved() {
		nf.removed[id] = true
	}
	*f = *nf
	return nil
}

func sortedKeys[V any](m map[uint64]V) []uint64 {
	ks := make([]uint64, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool { return ks[i] < ks[j] })
	return ks
}
