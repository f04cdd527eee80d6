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

	log    *wal.Log // the open segment
	cur    segment
	segMax int64     // segmentMax; smaller in tests
	sealed []segment // older segments, oldest first
}

// segment is what Storage knows of a log segment: per chain with records
// in it, the newest generation among them.
type segment struct {
	n      uint64
	maxGen map[int]uint64
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
	s := &Storage{dir: dir, noFsync: noFsync, chains: chains, gen: make([]uint64, chains), segMax: segmentMax}
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
		seg := segment{n: n, maxGen: map[int]uint64{}}
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
	seg.maxGen[ch] = max(seg.maxGen[ch], gen)
	if gen < s.gen[ch] {
		return nil
	}
	e := &pb.Entry{}
	if err := proto.Unmarshal(b[recordHeader:], e); err != nil {
		return corrupt(wal.Corrupt(path, r.Offset, "entry of chain %d does not decode: %v", ch, err))
	}
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
	s.log, s.cur = log, segment{n: n, maxGen: map[int]uint64{}}
	return nil
}

// Save makes a Ready's Persist list durable, in order: snapshots as they
// come (each fsync'd before Save goes on), then every entry in one write
// and one fdatasync. An entry is encoded with its chain's generation at
// its place in the list, so entries after a snapshot belong to it.
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
		case p.Wipe:
			if err := s.replace(p.Chain, &pb.Snapshot{}); err != nil {
				return err
			}
			replaced = true
		case p.Snapshot != nil:
			if err := s.replace(p.Chain, p.Snapshot); err != nil {
				return err
			}
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
			}
			if len(p.Entries) > 0 {
				s.cur.maxGen[p.Chain] = max(s.cur.maxGen[p.Chain], s.gen[p.Chain])
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
// more than sealedMax are kept; a snapshot of each lets it go.
func (s *Storage) Pinning() []int {
	if len(s.sealed) <= sealedMax {
		return nil
	}
	var out []int
	for ch, g := range s.sealed[0].maxGen {
		if g >= s.gen[ch] {
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
		for ch, g := range seg.maxGen {
			if g >= s.gen[ch] {
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

// replace installs a snapshot of chain i under the chain's next
// generation, as a checksummed file replaced atomically (temporary file,
// fsync, rename, directory fsync) before any record of the new generation
// is written. A crash before the rename leaves the old snapshot and its
// generation's records, a prefix of the chain's history.
func (s *Storage) replace(i int, snap *pb.Snapshot) error {
	gen := s.gen[i] + 1
	b, err := proto.MarshalOptions{}.MarshalAppend(binary.LittleEndian.AppendUint64(nil, gen), snap)
	if err != nil {
		return fmt.Errorf("chain storage: %w", err)
	}
	if err := wal.WriteFile(s.snapPath(i), b, s.noFsync); err != nil {
		return fmt.Errorf("chain storage: %w", err)
	}
	s.gen[i] = gen
	return nil
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
