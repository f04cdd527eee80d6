package chain

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	pb "github.com/chainraft/chainraft/chain/chainpb"
	"github.com/chainraft/chainraft/internal/wal"
)

// Storage is a node's durable state: per chain a snapshot file
// (chain-<i>.snap, replaced atomically by rename), and one write-ahead log
// shared by all the node's chains, in segments (wal-<n>.log). Save appends
// a whole group commit to the open segment and fdatasyncs it once, which is
// what lets the Node forward an entry only after it is durable: with every
// node in every chain, a log per chain would cost a node one fdatasync per
// chain per group commit.
//
// The framing is package internal/wal's (shared with raftkv): a segment is
// a wal log whose record bodies are [u32 chain][u64 generation][protobuf
// Entry]; a snapshot file is a wal checksummed file whose body is [u64
// generation][protobuf Snapshot]. Each chain has a generation, stored in its
// snapshot file: every snapshot written (a compaction, a state installed
// from the predecessor, a wipe) takes the next one, and on open only records
// of the snapshot's generation with a sequence beyond it are replayed. A
// snapshot covers every record of its chain written before it, so older
// generations are dead: a wiped chain's old records are never replayed over
// its new state, and a sealed segment whose records are all dead is
// deleted. A torn tail of the open (last) segment is cut at open; a bad
// record with a valid one after it, any damage in a sealed segment (synced
// whole, with a seal record last, before the next was created; a missing
// seal means it was cut) and any damage to a snapshot are corruption, and OpenStorage fails with ErrCorrupt, naming the file and
// offset, rather than forget durable entries. internal/wal's doc.go argues
// the rule.
type Storage struct {
	dir     string
	noFsync bool
	chains  int
	gen     []uint64 // per chain: the generation of its snapshot file
	// Per chain: its snapshot's last sequence (records of its generation
	// up to it are dead) and its snapshot file's size (what a compaction
	// costs, see Pinning).
	snapSeq  []uint64
	snapSize []int64

	log    *wal.Log // the open segment
	cur    segment
	segMax int64     // segmentMax; smaller in tests
	sealed []segment // older segments, oldest first
}

// segment is what Storage knows of a log segment: per chain with records
// in it, the newest generation among them, and the highest sequence among
// its records of that generation.
type segment struct {
	n      uint64
	maxGen map[int]uint64
	maxSeq map[int]uint64
}

func newSegment(n uint64) segment {
	return segment{n: n, maxGen: map[int]uint64{}, maxSeq: map[int]uint64{}}
}

// add notes a record of chain ch, generation gen, sequence seq.
func (seg *segment) add(ch int, gen, seq uint64) {
	g, ok := seg.maxGen[ch]
	switch {
	case !ok || gen > g:
		seg.maxGen[ch], seg.maxSeq[ch] = gen, seq
	case gen == g:
		seg.maxSeq[ch] = max(seg.maxSeq[ch], seq)
	}
}

// live reports whether seg holds a record of chain ch that a restart
// would replay: of the chain's generation, past its snapshot.
func (s *Storage) live(seg segment, ch int) bool {
	g, ok := seg.maxGen[ch]
	return ok && g >= s.gen[ch] && seg.maxSeq[ch] > s.snapSeq[ch]
}

// segmentMax is the size at which the open segment is sealed and a new one
// started, so dead records can be deleted a segment at a time.
const segmentMax = 4 << 20

// sealedMax is how many sealed segments may stay before the chains still
// holding live records in the oldest are asked for a snapshot (Pinning): a
// chain that writes rarely would otherwise keep segments, and their replay
// at restart, until its own 10,000th entry.
const sealedMax = 4

// recordHeader is the chain and generation before a record's Entry.
const recordHeader = 4 + 8

// OpenStorage opens (creating) the data directory and reads back every
// chain's state. Damage that is not a torn tail of the open segment is
// refused with ErrCorrupt, naming the file and offset.
func OpenStorage(dir string, chains int, noFsync bool) (*Storage, *Recovered, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("chain storage: %w", err)
	}
	s := &Storage{dir: dir, noFsync: noFsync, chains: chains, gen: make([]uint64, chains), segMax: segmentMax,
		snapSeq: make([]uint64, chains), snapSize: make([]int64, chains)}
	rec := &Recovered{Chains: make([]RecoveredChain, chains)}
	restored := rec.Chains
	for i := range chains {
		if err := s.loadSnapshot(i, &restored[i]); err != nil {
			return nil, nil, err
		}
	}
	if err := s.loadLog(restored); err != nil {
		s.Close()
		return nil, nil, err
	}
	s.collect()
	return s, rec, nil
}

// corrupt wraps a framing error: wal's damage as ErrCorrupt (it names file
// and offset), anything else (I/O) as it is.
func corrupt(err error) error {
	if errors.Is(err, wal.ErrCorrupt) {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return fmt.Errorf("chain storage: %w", err)
}

func (s *Storage) snapPath(i int) string {
	return filepath.Join(s.dir, fmt.Sprintf("chain-%d.snap", i))
}

func (s *Storage) segPath(n uint64) string {
	return filepath.Join(s.dir, fmt.Sprintf("wal-%d.log", n))
}

// loadSnapshot reads chain i's snapshot file: its generation, then the
// protobuf Snapshot, both under the file's checksum.
func (s *Storage) loadSnapshot(i int, r *RecoveredChain) error {
	path := s.snapPath(i)
	b, err := wal.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return corrupt(err)
	case len(b) < 8:
		return corrupt(wal.Corrupt(path, wal.FileHeaderSize, "snapshot of %d bytes, shorter than its generation", len(b)))
	}
	s.gen[i] = binary.LittleEndian.Uint64(b)
	r.Snapshot = &pb.Snapshot{}
	if err := proto.Unmarshal(b[8:], r.Snapshot); err != nil {
		return corrupt(wal.Corrupt(path, wal.FileHeaderSize+8, "snapshot does not decode: %v", err))
	}
	s.snapSeq[i], s.snapSize[i] = r.Snapshot.LastSeq, int64(len(b))
	return nil
}

// loadLog replays the segments in order and opens the last one (or a new
// one) for appending. Only the last can end torn: every older one was
// sealed (a seal record, synced) before the next was created, so damage to
// it, or a cut even at a record boundary, is refused. A last segment found
// sealed (a crash between the seal and the next segment's creation) is
// kept as a sealed one and a new segment started.
func (s *Storage) loadLog(restored []RecoveredChain) error {
	names, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("chain storage: %w", err)
	}
	var ns []uint64
	for _, e := range names {
		num, ok := strings.CutPrefix(e.Name(), "wal-")
		if num, ok2 := strings.CutSuffix(num, ".log"); ok && ok2 {
			if n, err := strconv.ParseUint(num, 10, 64); err == nil {
				ns = append(ns, n)
			}
		}
	}
	sort.Slice(ns, func(a, b int) bool { return ns[a] < ns[b] })
	for k, n := range ns {
		path := s.segPath(n)
		var recs []wal.Record
		var log *wal.Log
		if k < len(ns)-1 {
			recs, err = wal.ReadSealed(path)
		} else {
			log, recs, err = wal.Open(path, s.noFsync)
		}
		if err != nil {
			return corrupt(err)
		}
		seg := newSegment(n)
		for _, r := range recs {
			if err := s.replay(path, r, restored, &seg); err != nil {
				if log != nil {
					log.Close()
				}
				return err
			}
		}
		if log != nil && log.Sealed() {
			log.Close()
			log = nil
		}
		if log == nil {
			s.sealed = append(s.sealed, seg)
			continue
		}
		s.log, s.cur = log, seg
	}
	if len(ns) == 0 {
		// The first open creates a segment before any snapshot can be
		// written, and only sealed segments are ever deleted: a snapshot
		// without a segment means the log, with its entries, is gone.
		for i := range s.chains {
			if s.gen[i] > 0 {
				return corrupt(wal.Corrupt(s.segPath(1), 0, "no log segment, and chain %d has a snapshot", i))
			}
		}
	}
	if s.log == nil {
		var n uint64 = 1
		if len(ns) > 0 {
			n = ns[len(ns)-1] + 1
		}
		return s.openSegment(n)
	}
	return nil
}

// replay decodes one record and keeps its entry if it is live: of its
// chain's current generation and past the snapshot.
func (s *Storage) replay(path string, r wal.Record, restored []RecoveredChain, seg *segment) error {
	b := r.Body
	if len(b) < recordHeader {
		return corrupt(wal.Corrupt(path, r.Offset, "a record of %d bytes", len(b)))
	}
	ch := int(binary.LittleEndian.Uint32(b))
	gen := binary.LittleEndian.Uint64(b[4:])
	if ch >= s.chains {
		return corrupt(wal.Corrupt(path, r.Offset, "a record of chain %d, and there are %d chains", ch, s.chains))
	}
	if gen > s.gen[ch] {
		// Records of a generation are written only once its snapshot is
		// durable: this one has lost its snapshot.
		return corrupt(wal.Corrupt(path, r.Offset, "a record of chain %d generation %d, past its snapshot's %d", ch, gen, s.gen[ch]))
	}
	if gen < s.gen[ch] {
		seg.add(ch, gen, 0)
		return nil
	}
	e := &pb.Entry{}
	if err := proto.Unmarshal(b[recordHeader:], e); err != nil {
		return corrupt(wal.Corrupt(path, r.Offset, "entry of chain %d does not decode: %v", ch, err))
	}
	seg.add(ch, gen, e.Seq)
	rs := &restored[ch]
	if rs.Snapshot == nil || e.Seq > rs.Snapshot.LastSeq {
		rs.Entries = append(rs.Entries, e)
	}
	return nil
}

// openSegment creates segment n, whole and with its directory entry
// durable (wal.Create), before anything in it is acknowledged.
func (s *Storage) openSegment(n uint64) error {
	log, err := wal.Create(s.segPath(n), s.noFsync)
	if err != nil {
		return fmt.Errorf("chain storage: %w", err)
	}
	s.log, s.cur = log, newSegment(n)
	return nil
}

// Save makes a Ready's Persist list durable, in order: snapshots as they
// come (each fsync'd before Save goes on), then every entry in one write
// and one fdatasync. An entry is encoded with its chain's generation at
// its place in the list, so entries after a snapshot belong to it. The
// Node's persister gives Save only entries and writes snapshots apart
// (BeginSnapshot), so that a large one holds up only its own chain.
func (s *Storage) Save(ps []Persist) error {
	if s.log == nil {
		return errors.New("chain storage: closed, or a segment failed to open")
	}
	// An empty segment is never sealed: segMax is the size of its records.
	if size := s.log.Size(); size > wal.LogHeaderSize && size >= s.segMax {
		if err := s.rotate(); err != nil {
			return err
		}
	}
	b := s.log.Batch()
	replaced := false
	for _, p := range ps {
		switch {
		case p.Wipe || p.Snapshot != nil:
			w := s.BeginSnapshot(p)
			if err := w.Write(); err != nil {
				return err
			}
			s.EndSnapshot(w)
			replaced = true
		default:
			for _, e := range p.Entries {
				rec := b.Begin()
				rec = binary.LittleEndian.AppendUint32(rec, uint32(p.Chain))
				rec = binary.LittleEndian.AppendUint64(rec, s.gen[p.Chain])
				rec, err := proto.MarshalOptions{}.MarshalAppend(rec, e)
				if err != nil {
					return fmt.Errorf("chain storage: %w", err)
				}
				b.End(rec)
				s.cur.add(p.Chain, s.gen[p.Chain], e.Seq)
			}
		}
	}
	if replaced {
		s.collect()
	}
	if b.Len() == 0 {
		return nil
	}
	if err := s.log.Write(b); err != nil {
		return fmt.Errorf("chain storage: %w", err)
	}
	if err := s.log.Sync(); err != nil {
		return fmt.Errorf("chain storage: %w", err)
	}
	return nil
}

// Pinning lists the chains that keep the oldest sealed segment alive, once
// more than sealedMax are kept and the sealed log is larger than all the
// chains' snapshots together; a snapshot of each lets it go. The second
// condition
// keeps compaction's cost in proportion to the data: with 64 KiB values a
// segment holds 64 entries, and at the harness's 1 GB preload every node
// wrote every chain's whole state (up to a gigabyte) each 20 MB of log,
// all three nodes at once, which held up their appends past the data-path
// detector's second. Now a state of S bytes is written once per S bytes
// of log at most, and a restart replays at most about as much log as it
// reads snapshot.
func (s *Storage) Pinning() []int {
	if len(s.sealed) <= sealedMax {
		return nil
	}
	// All the chains' snapshots, not only those of the chains pinning the
	// oldest segment: the chains' compactions end at different points of
	// the log, so the oldest segment is often pinned by one chain alone,
	// and comparing with its snapshot had each chain compacted about as
	// often as the log grew by a chain's state.
	var cost int64
	for _, n := range s.snapSize {
		cost += n
	}
	if int64(len(s.sealed))*s.segMax <= cost {
		return nil
	}
	var out []int
	for ch := range s.sealed[0].maxGen {
		if s.live(s.sealed[0], ch) {
			out = append(out, ch)
		}
	}
	sort.Ints(out)
	return out
}

// rotate seals the open segment and starts the next. The seal (a record
// the segment's reader then requires at its end) is synced before the next
// segment exists, so a sealed segment can never end torn, and one cut short
// later, even at a record boundary, is refused rather than read as a
// shorter log.
func (s *Storage) rotate() error {
	if err := s.log.Seal(); err != nil {
		return fmt.Errorf("chain storage: %w", err)
	}
	if err := s.log.Close(); err != nil {
		return fmt.Errorf("chain storage: %w", err)
	}
	s.log = nil
	s.sealed = append(s.sealed, s.cur)
	if err := s.openSegment(s.cur.n + 1); err != nil {
		return err
	}
	s.collect()
	return nil
}

// collect deletes the sealed segments whose records are all dead. A
// deleted segment that a crash brings back is harmless: it was sealed
// whole, and its records are still dead on replay.
func (s *Storage) collect() {
	kept := s.sealed[:0]
	for _, seg := range s.sealed {
		dead := true
		for ch := range seg.maxGen {
			if s.live(seg, ch) {
				dead = false
				break
			}
		}
		if dead && os.Remove(s.segPath(seg.n)) == nil {
			continue
		}
		kept = append(kept, seg)
	}
	s.sealed = kept
}

// SnapshotWrite is one chain's snapshot file being written: begun and
// ended by the goroutine that owns the Storage, written (Write) by any
// goroutine meanwhile, so that the other chains' entries need not wait for
// a large state's write and fsync. The owner starts at most one per chain
// at a time, and writes no record of the chain's new generation (a
// snapshot that is not Compact) before EndSnapshot.
type SnapshotWrite struct {
	Chain int
	// Compact: the snapshot continues the chain's history (a compaction
	// of its own log), so it keeps the chain's generation and the records
	// past it stay live; they may be written while it is.
	Compact bool
	Bytes   int64 // the file's body, once written
	gen     uint64
	snap    *pb.Snapshot
	path    string
	noFsync bool
}

// BeginSnapshot prepares the write of p, a snapshot or a wipe. A snapshot
// that replaces the chain's history (installed from the predecessor, or a
// wipe, whose history may have forked: an old head's unforwarded writes)
// takes the chain's next generation, so no older record is replayed over
// it; a compaction keeps the generation, and only records up to its last
// sequence become dead.
func (s *Storage) BeginSnapshot(p Persist) *SnapshotWrite {
	w := &SnapshotWrite{Chain: p.Chain, Compact: p.Compact && !p.Wipe, gen: s.gen[p.Chain] + 1, snap: p.Snapshot,
		path: s.snapPath(p.Chain), noFsync: s.noFsync}
	if p.Wipe || w.snap == nil {
		w.snap = &pb.Snapshot{}
	}
	if w.Compact {
		w.gen = s.gen[p.Chain]
	}
	return w
}

// Write writes the snapshot as a checksummed file replaced atomically
// (temporary file, fsync, rename, directory fsync). A crash before the
// rename leaves the old snapshot and its generation's records, a prefix of
// the chain's history.
func (w *SnapshotWrite) Write() error {
	b, err := proto.MarshalOptions{}.MarshalAppend(binary.LittleEndian.AppendUint64(nil, w.gen), w.snap)
	if err != nil {
		return fmt.Errorf("chain storage: %w", err)
	}
	// wal.WriteFile syncs a large file in pieces on the way (wal.SyncEvery).
	if err := wal.WriteFile(w.path, b, w.noFsync); err != nil {
		return fmt.Errorf("chain storage: %w", err)
	}
	w.Bytes = int64(len(b))
	return nil
}

// EndSnapshot records a written snapshot: records of the chain's new
// generation may follow, and segments holding only dead records go.
func (s *Storage) EndSnapshot(w *SnapshotWrite) {
	s.gen[w.Chain], s.snapSeq[w.Chain], s.snapSize[w.Chain] = w.gen, w.snap.LastSeq, w.Bytes
	s.collect()
}

// Close closes the open segment.
func (s *Storage) Close() error {
	if s.log == nil {
		return nil
	}
	err := s.log.Close()
	s.log = nil
	return err
}
