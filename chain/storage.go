package chain

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"google.golang.org/protobuf/proto"

	pb "github.com/chainraft/chainraft/chain/chainpb"
)

// Storage is a node's durable state: per chain a snapshot file
// (chain-<i>.snap, replaced atomically by rename), and one write-ahead log
// shared by all the node's chains, in segments (wal-<n>.log). Save appends
// a whole group commit to the open segment and fdatasyncs it once, which is
// what lets the Node forward an entry only after it is durable: with every
// node in every chain, a log per chain would cost a node one fdatasync per
// chain per group commit.
//
// A log record is [u32 length][u32 CRC-32C][u32 chain][u64 generation]
// [protobuf Entry], the checksum over everything after it. Each chain has a
// generation, stored in its snapshot file: every snapshot written (a
// compaction, a state installed from the predecessor, a wipe) takes the
// next one, and on open only records of the snapshot's generation with a
// sequence beyond it are replayed. A snapshot covers every record of its
// chain written before it, so older generations are dead: a wiped chain's
// old records are never replayed over its new state, and a sealed segment
// whose records are all dead is deleted. A torn record at the end of the
// last segment (a crash mid-write) is cut off at open; a bad record with
// good data after it, or anywhere in an older segment, is corruption, and
// OpenStorage fails with ErrCorrupt rather than forget durable entries
// (replayLog).
type Storage struct {
	dir     string
	noFsync bool
	chains  int
	gen     []uint64 // per chain: the generation of its snapshot file

	seg     *os.File // the open segment
	cur     segment
	segSize int64
	segMax  int64     // segmentMax; smaller in tests
	sealed  []segment // older segments, oldest first
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

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// OpenStorage opens (creating) the data directory and reads back every
// chain's state.
func OpenStorage(dir string, chains int, noFsync bool) (*Storage, []Restored, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("chain storage: %w", err)
	}
	s := &Storage{dir: dir, noFsync: noFsync, chains: chains, gen: make([]uint64, chains), segMax: segmentMax}
	restored := make([]Restored, chains)
	for i := range chains {
		if err := s.loadSnapshot(i, &restored[i]); err != nil {
			return nil, nil, err
		}
	}
	if err := s.loadLog(restored); err != nil {
		s.Close()
		return nil, nil, err
	}
	// A segment created just now must survive a crash too: its directory
	// entry is made durable before anything is appended to it and
	// acknowledged.
	if err := s.syncDir(); err != nil {
		s.Close()
		return nil, nil, err
	}
	s.collect()
	return s, restored, nil
}

func (s *Storage) snapPath(i int) string {
	return filepath.Join(s.dir, fmt.Sprintf("chain-%d.snap", i))
}

func (s *Storage) segPath(n uint64) string {
	return filepath.Join(s.dir, fmt.Sprintf("wal-%d.log", n))
}

// loadSnapshot reads chain i's snapshot file: its generation, then the
// protobuf Snapshot.
func (s *Storage) loadSnapshot(i int, r *Restored) error {
	b, err := os.ReadFile(s.snapPath(i))
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("chain storage: %w", err)
	case len(b) < 8:
		return fmt.Errorf("%w: snapshot of chain %d: %d bytes, shorter than its generation", ErrCorrupt, i, len(b))
	}
	s.gen[i] = binary.LittleEndian.Uint64(b)
	r.Snapshot = &pb.Snapshot{}
	if err := proto.Unmarshal(b[8:], r.Snapshot); err != nil {
		return fmt.Errorf("%w: snapshot of chain %d: %w", ErrCorrupt, i, err)
	}
	return nil
}

// loadLog replays the segments in order and opens the last one (or a new
// one) for appending.
func (s *Storage) loadLog(restored []Restored) error {
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
		last := k == len(ns)-1
		path := s.segPath(n)
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("chain storage: %w", err)
		}
		bodies, good, err := replayLog(data)
		if err != nil {
			return fmt.Errorf("chain storage: %s: %w", filepath.Base(path), err)
		}
		if !last && good < int64(len(data)) {
			// Only the open segment can be torn: an older one was synced
			// whole before the next was created.
			return fmt.Errorf("%w: %s: bad record at offset %d of a sealed segment", ErrCorrupt, filepath.Base(path), good)
		}
		seg := segment{n: n, maxGen: map[int]uint64{}}
		for _, b := range bodies {
			if err := s.replay(b, restored, &seg); err != nil {
				return fmt.Errorf("chain storage: %s: %w", filepath.Base(path), err)
			}
		}
		if !last {
			s.sealed = append(s.sealed, seg)
			continue
		}
		f, err := os.OpenFile(path, os.O_RDWR, 0o644)
		if err != nil {
			return fmt.Errorf("chain storage: %w", err)
		}
		s.seg, s.cur, s.segSize = f, seg, good
		if good < int64(len(data)) {
			if err := f.Truncate(good); err != nil {
				return fmt.Errorf("chain storage: cutting torn log tail: %w", err)
			}
			if err := s.sync(f); err != nil {
				return fmt.Errorf("chain storage: sync cut log: %w", err)
			}
		}
		if _, err := f.Seek(good, io.SeekStart); err != nil {
			return fmt.Errorf("chain storage: %w", err)
		}
	}
	if s.seg == nil {
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
func (s *Storage) replay(b []byte, restored []Restored, seg *segment) error {
	if len(b) < recordHeader {
		return fmt.Errorf("%w: a record of %d bytes", ErrCorrupt, len(b))
	}
	ch := int(binary.LittleEndian.Uint32(b))
	gen := binary.LittleEndian.Uint64(b[4:])
	if ch >= s.chains {
		return fmt.Errorf("%w: a record of chain %d, and there are %d chains", ErrCorrupt, ch, s.chains)
	}
	if gen > s.gen[ch] {
		// Records of a generation are written only once its snapshot is
		// durable: this one has lost its snapshot.
		return fmt.Errorf("%w: a record of chain %d generation %d, past its snapshot's %d", ErrCorrupt, ch, gen, s.gen[ch])
	}
	seg.maxGen[ch] = max(seg.maxGen[ch], gen)
	if gen < s.gen[ch] {
		return nil
	}
	e := &pb.Entry{}
	if err := proto.Unmarshal(b[recordHeader:], e); err != nil {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	r := &restored[ch]
	if r.Snapshot == nil || e.Seq > r.Snapshot.LastSeq {
		r.Entries = append(r.Entries, e)
	}
	return nil
}

func (s *Storage) openSegment(n uint64) error {
	f, err := os.OpenFile(s.segPath(n), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("chain storage: %w", err)
	}
	s.seg, s.cur, s.segSize = f, segment{n: n, maxGen: map[int]uint64{}}, 0
	return nil
}

// replayLog decodes a segment's records and returns their bodies and the
// length of the good prefix. It follows raftkv's rule: a bad record (short
// header, length past the end, bad checksum) followed by nothing but zeros
// is a write torn by a crash, and the log is cut there; a bad record with
// data after it is corruption (ErrCorrupt), since the entries after it were
// made durable and may have been acknowledged. A length field above
// maxRecordSize cannot come from a write of ours (a record is at most one
// entry of a gRPC message) and is judged by the same rule.
func replayLog(data []byte) ([][]byte, int64, error) {
	var out [][]byte
	off := 0
	for off < len(data) {
		rest := data[off:]
		if len(rest) < 8 {
			return out, int64(off), nil // a torn header: nothing follows it
		}
		n := int(binary.LittleEndian.Uint32(rest[:4]))
		if n == 0 || n > maxRecordSize {
			good, err := tornOrCorrupt(data, off, off+8)
			return out, good, err
		}
		end := off + 8 + n
		if end > len(data) {
			// A record cut short by a crash: nothing can follow it.
			return out, int64(off), nil
		}
		body := rest[8 : 8+n]
		if crc32.Checksum(body, crcTable) != binary.LittleEndian.Uint32(rest[4:8]) {
			good, err := tornOrCorrupt(data, off, end)
			return out, good, err
		}
		out = append(out, body)
		off = end
	}
	return out, int64(off), nil
}

// maxRecordSize bounds a plausible log record: one entry, which arrived in
// a gRPC message of at most maxMsgSize, and its header.
const maxRecordSize = maxMsgSize + recordHeader

// tornOrCorrupt judges a bad record at off whose claimed extent ends at end:
// nothing or only zeros from end on means a torn write (cut at off);
// anything else is corruption.
func tornOrCorrupt(data []byte, off, end int) (int64, error) {
	if end >= len(data) || len(bytes.Trim(data[end:], "\x00")) == 0 {
		return int64(off), nil
	}
	return 0, fmt.Errorf("%w: bad record at offset %d with %d bytes after it", ErrCorrupt, off, len(data)-end)
}

// Save makes a Ready's Persist list durable, in order: snapshots as they
// come (each fsync'd before Save goes on), then every entry in one write
// and one fdatasync. An entry is encoded with its chain's generation at
// its place in the list, so entries after a snapshot belong to it.
func (s *Storage) Save(ps []Persist) error {
	if s.segSize >= s.segMax {
		if err := s.rotate(); err != nil {
			return err
		}
	}
	var buf []byte
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
				b, err := proto.Marshal(e)
				if err != nil {
					return fmt.Errorf("chain storage: %w", err)
				}
				var h [recordHeader]byte
				binary.LittleEndian.PutUint32(h[:], uint32(p.Chain))
				binary.LittleEndian.PutUint64(h[4:], s.gen[p.Chain])
				crc := crc32.Update(crc32.Checksum(h[:], crcTable), crcTable, b)
				buf = binary.LittleEndian.AppendUint32(buf, uint32(recordHeader+len(b)))
				buf = binary.LittleEndian.AppendUint32(buf, crc)
				buf = append(buf, h[:]...)
				buf = append(buf, b...)
			}
			if len(p.Entries) > 0 {
				s.cur.maxGen[p.Chain] = max(s.cur.maxGen[p.Chain], s.gen[p.Chain])
			}
		}
	}
	if replaced {
		s.collect()
	}
	if len(buf) == 0 {
		return nil
	}
	if _, err := s.seg.Write(buf); err != nil {
		return fmt.Errorf("chain storage: append: %w", err)
	}
	s.segSize += int64(len(buf))
	if err := s.sync(s.seg); err != nil {
		return fmt.Errorf("chain storage: fdatasync: %w", err)
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

// rotate seals the open segment (already durable: every Save synced it)
// and starts the next.
func (s *Storage) rotate() error {
	if err := s.seg.Close(); err != nil {
		return fmt.Errorf("chain storage: %w", err)
	}
	s.sealed = append(s.sealed, s.cur)
	if err := s.openSegment(s.cur.n + 1); err != nil {
		return err
	}
	if err := s.syncDir(); err != nil {
		return err
	}
	s.collect()
	return nil
}

// collect deletes the sealed segments whose records are all dead. A
// deleted segment that a crash brings back is harmless: its records are
// still dead on replay.
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
// generation: written to a temporary file, fsync'd, renamed, and the
// directory fsync'd, before any record of the new generation is written.
// A crash before the rename leaves the old snapshot and its generation's
// records, a prefix of the chain's history.
func (s *Storage) replace(i int, snap *pb.Snapshot) error {
	b, err := proto.Marshal(snap)
	if err != nil {
		return fmt.Errorf("chain storage: %w", err)
	}
	gen := s.gen[i] + 1
	tmp := s.snapPath(i) + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("chain storage: %w", err)
	}
	if _, err := f.Write(binary.LittleEndian.AppendUint64(nil, gen)); err != nil {
		f.Close()
		return fmt.Errorf("chain storage: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("chain storage: %w", err)
	}
	if !s.noFsync {
		if err := f.Sync(); err != nil {
			f.Close()
			return fmt.Errorf("chain storage: %w", err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("chain storage: %w", err)
	}
	if err := os.Rename(tmp, s.snapPath(i)); err != nil {
		return fmt.Errorf("chain storage: %w", err)
	}
	if err := s.syncDir(); err != nil {
		return err
	}
	s.gen[i] = gen
	return nil
}

func (s *Storage) sync(f *os.File) error {
	if s.noFsync {
		return nil
	}
	return syscall.Fdatasync(int(f.Fd()))
}

func (s *Storage) syncDir() error {
	if s.noFsync {
		return nil
	}
	d, err := os.Open(s.dir)
	if err != nil {
		return fmt.Errorf("chain storage: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("chain storage: fsync dir: %w", err)
	}
	return nil
}

// Close closes the open segment.
func (s *Storage) Close() error {
	if s.seg == nil {
		return nil
	}
	err := s.seg.Close()
	s.seg = nil
	return err
}
