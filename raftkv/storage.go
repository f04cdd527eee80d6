package raftkv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"syscall"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// ErrCorrupt: a record that is not the log's last one fails its checksum,
// or the snapshot file does. A torn last record is a crash artefact and is
// truncated; damage before the tail is lost durable state (a vote, an
// acknowledged entry), and a node that carried on would break raft's safety,
// so it refuses to start.
var ErrCorrupt = errors.New("raftkv: storage corrupt")

const (
	walName      = "wal"
	snapName     = "snap"
	recordHeader = 8 // u32 length (of type byte + payload), u32 crc32c

	recEntry     byte = 1
	recHardState byte = 2
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Storage is a node's durable state in its data directory: "snap", the
// newest snapshot (written to a temporary file, fsynced, renamed), and
// "wal", an append-only log of checksummed records (entries and hard
// states) that holds everything after the snapshot. See doc.go for why a
// log of our own rather than a database.
type Storage struct {
	dir     string
	noFsync bool
	f       *os.File
	buf     []byte
	hs      *raftpb.HardState // last hard state written, carried over by Rewrite
}

// OpenStorage opens (or creates) the storage in dir and returns what it
// holds. A torn tail is truncated (and the truncation fsynced) before it
// returns.
func OpenStorage(dir string, noFsync bool) (*Storage, *Recovered, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("raftkv: create data dir: %w", err)
	}
	s := &Storage{dir: dir, noFsync: noFsync}
	rec := &Recovered{}
	snap, err := readSnapshot(filepath.Join(dir, snapName))
	if err != nil {
		return nil, nil, err
	}
	rec.Snapshot = snap
	f, err := os.OpenFile(filepath.Join(dir, walName), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("raftkv: open wal: %w", err)
	}
	data, err := os.ReadFile(f.Name())
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("raftkv: read wal: %w", err)
	}
	good, err := replay(data, rec)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if good < int64(len(data)) {
		if err := f.Truncate(good); err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("raftkv: truncate torn wal tail: %w", err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("raftkv: sync truncated wal: %w", err)
		}
	}
	if _, err := f.Seek(good, 0); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("raftkv: seek wal: %w", err)
	}
	s.f = f
	s.hs = rec.HardState
	// A fresh file must survive a crash too: its directory entry is synced.
	if err := s.syncDir(); err != nil {
		f.Close()
		return nil, nil, err
	}
	if ents, ok := logMatchesSnapshot(rec.Snapshot, rec.Entries); !ok {
		// A crash between a leader snapshot's rename and the log rewrite:
		// the old log is not the one behind the snapshot. It is replaced by
		// an empty one now, so later appends at snapshot+1 cannot leave a
		// gap after the stale entries or sit behind entries of later terms.
		rec.Entries = ents
		if err := s.Rewrite(rec.HardState, nil); err != nil {
			s.f.Close()
			return nil, nil, err
		}
	}
	return s, rec, nil
}

// logMatchesSnapshot decides whether the log entries recovered with a
// snapshot at index S (term Ts) continue it, and returns what to keep. The
// log behind a snapshot is one of:
//
//   - the node's own log, taken before its own snapshot (or the rewrite
//     behind a leader snapshot keeping entries that raft kept): it holds
//     entry S with term Ts, and by raft's log matching what follows S is
//     the log raft had;
//   - the rewrite behind a leader snapshot: it starts at S+1;
//   - the old log, when the node crashed after renaming a leader snapshot
//     into place but before rewriting the log: it may lack S, or hold S with
//     another term, and the entries above S then come from a log the
//     snapshot superseded (raft discarded them when it took the snapshot),
//     their terms possibly going backwards from Ts.
//
// Entries above S are kept only in the first two cases and only if their
// terms never decrease (from Ts on); otherwise nothing after the snapshot is
// trustworthy and ok is false: the caller keeps no entries (those at or
// below S are covered by the snapshot).
func logMatchesSnapshot(snap *raftpb.Snapshot, ents []*raftpb.Entry) ([]*raftpb.Entry, bool) {
	if raft.IsEmptySnap(snap) || len(ents) == 0 {
		return ents, true
	}
	si, st := snap.GetMetadata().GetIndex(), snap.GetMetadata().GetTerm()
	first, last := ents[0].GetIndex(), ents[len(ents)-1].GetIndex()
	switch {
	case first > si+1:
		// A gap after the snapshot: not a crash artefact of ours; the Core
		// refuses it with a precise error.
		return ents, true
	case last < si:
		// The log does not reach the snapshot: a stale log; appends at S+1
		// would leave a gap after it.
		return nil, false
	case first <= si && ents[si-first].GetTerm() != st:
		return nil, false
	}
	prev := st
	for _, e := range ents {
		if e.GetIndex() <= si {
			continue
		}
		if e.GetTerm() < prev {
			return nil, false
		}
		prev = e.GetTerm()
	}
	return ents, true
}

// replay decodes records into rec and returns the length of the good
// prefix. An entry at index i replaces every entry at or after i, as raft
// requires of a log that overwrites a conflicting suffix.
func replay(data []byte, rec *Recovered) (int64, error) {
	off := 0
	for off < len(data) {
		rest := data[off:]
		if len(rest) < recordHeader {
			return tornOrCorrupt(data, off, len(data))
		}
		n := int(binary.LittleEndian.Uint32(rest[0:4]))
		sum := binary.LittleEndian.Uint32(rest[4:8])
		end := off + recordHeader + n
		if n == 0 || end > len(data) {
			return tornOrCorrupt(data, off, len(data))
		}
		body := rest[recordHeader : recordHeader+n]
		if crc32.Checksum(body, crcTable) != sum {
			return tornOrCorrupt(data, off, end)
		}
		switch body[0] {
		case recEntry:
			e := &raftpb.Entry{}
			if err := proto.Unmarshal(body[1:], e); err != nil {
				return 0, fmt.Errorf("%w: wal entry at offset %d: %w", ErrCorrupt, off, err)
			}
			if err := appendEntry(rec, e); err != nil {
				return 0, fmt.Errorf("%w: wal offset %d: %w", ErrCorrupt, off, err)
			}
		case recHardState:
			hs := &raftpb.HardState{}
			if err := proto.Unmarshal(body[1:], hs); err != nil {
				return 0, fmt.Errorf("%w: wal hard state at offset %d: %w", ErrCorrupt, off, err)
			}
			rec.HardState = hs
		default:
			return 0, fmt.Errorf("%w: wal record type %d at offset %d", ErrCorrupt, body[0], off)
		}
		off = end
	}
	return int64(off), nil
}

// tornOrCorrupt decides what a bad record at off (ending at end) is: if
// nothing but zeros or nothing at all follows it, a write torn by a crash
// (truncate there); otherwise corruption.
func tornOrCorrupt(data []byte, off, end int) (int64, error) {
	if end >= len(data) || len(bytes.Trim(data[end:], "\x00")) == 0 {
		return int64(off), nil
	}
	return 0, fmt.Errorf("%w: bad wal record at offset %d with %d bytes after it", ErrCorrupt, off, len(data)-end)
}

func appendEntry(rec *Recovered, e *raftpb.Entry) error {
	ents := rec.Entries
	if len(ents) == 0 {
		rec.Entries = append(ents, e)
		return nil
	}
	first := ents[0].GetIndex()
	switch idx := e.GetIndex(); {
	case idx < first:
		// A rewrite starts the log after a snapshot, so an entry below the
		// first one cannot appear unless records were reordered.
		return fmt.Errorf("entry %d before first %d", idx, first)
	case idx > first+uint64(len(ents)):
		return fmt.Errorf("entry %d leaves a gap after %d", idx, first+uint64(len(ents))-1)
	default:
		rec.Entries = append(ents[:idx-first], e)
	}
	return nil
}

// Persist makes one Ready's state durable. A snapshot from the leader
// replaces the log: snapshot file first (a crash in between leaves the new
// snapshot and the old log, which OpenStorage reconciles: see
// logMatchesSnapshot), then a rewritten log.
func (s *Storage) Persist(hs *raftpb.HardState, ents []*raftpb.Entry, snap *raftpb.Snapshot, sync bool) error {
	if raft.IsEmptySnap(snap) {
		return s.Save(hs, ents, sync)
	}
	if err := s.SaveSnapshot(snap); err != nil {
		return err
	}
	if raft.IsEmptyHardState(hs) {
		hs = s.hs
	}
	return s.Rewrite(hs, ents)
}

// Save appends entries and the hard state (either may be empty) in one
// write, fsynced when sync is set (raft's MustSync) unless fsync is off.
func (s *Storage) Save(hs *raftpb.HardState, ents []*raftpb.Entry, sync bool) error {
	buf := s.buf[:0]
	var err error
	for _, e := range ents {
		if buf, err = appendRecord(buf, recEntry, e); err != nil {
			return err
		}
	}
	if !raft.IsEmptyHardState(hs) {
		if buf, err = appendRecord(buf, recHardState, hs); err != nil {
			return err
		}
		s.hs = hs
	}
	s.buf = buf
	if len(buf) == 0 {
		return nil
	}
	if _, err := s.f.Write(buf); err != nil {
		return fmt.Errorf("raftkv: write wal: %w", err)
	}
	if sync && !s.noFsync {
		if err := syscall.Fdatasync(int(s.f.Fd())); err != nil {
			return fmt.Errorf("raftkv: fdatasync wal: %w", err)
		}
	}
	return nil
}

func appendRecord(buf []byte, typ byte, m proto.Message) ([]byte, error) {
	start := len(buf)
	buf = append(buf, 0, 0, 0, 0, 0, 0, 0, 0, typ)
	buf, err := proto.MarshalOptions{}.MarshalAppend(buf, m)
	if err != nil {
		return nil, fmt.Errorf("raftkv: marshal wal record: %w", err)
	}
	body := buf[start+recordHeader:]
	binary.LittleEndian.PutUint32(buf[start:], uint32(len(body)))
	binary.LittleEndian.PutUint32(buf[start+4:], crc32.Checksum(body, crcTable))
	return buf, nil
}

// SaveSnapshot makes snap the durable snapshot: write a temporary file,
// fsync it, rename it over the old one, fsync the directory. A crash leaves
// the old snapshot or the new one, never a mix.
func (s *Storage) SaveSnapshot(snap *raftpb.Snapshot) error {
	body, err := proto.Marshal(snap)
	if err != nil {
		return fmt.Errorf("raftkv: marshal snapshot: %w", err)
	}
	buf := make([]byte, recordHeader, recordHeader+len(body))
	binary.LittleEndian.PutUint32(buf[0:], uint32(len(body)))
	binary.LittleEndian.PutUint32(buf[4:], crc32.Checksum(body, crcTable))
	buf = append(buf, body...)
	return s.replaceFile(snapName, buf)
}

// Rewrite replaces the log with just hs and ents (the log behind a new
// snapshot), atomically like SaveSnapshot, and reopens it for appending.
func (s *Storage) Rewrite(hs *raftpb.HardState, ents []*raftpb.Entry) error {
	var buf []byte
	var err error
	for _, e := range ents {
		if buf, err = appendRecord(buf, recEntry, e); err != nil {
			return err
		}
	}
	if !raft.IsEmptyHardState(hs) {
		if buf, err = appendRecord(buf, recHardState, hs); err != nil {
			return err
		}
	}
	if err := s.replaceFile(walName, buf); err != nil {
		return err
	}
	if !raft.IsEmptyHardState(hs) {
		s.hs = hs
	}
	f, err := os.OpenFile(filepath.Join(s.dir, walName), os.O_RDWR|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("raftkv: reopen wal: %w", err)
	}
	s.f.Close()
	s.f = f
	return nil
}

func (s *Storage) replaceFile(name string, data []byte) error {
	tmp := filepath.Join(s.dir, name+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("raftkv: create %s: %w", tmp, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("raftkv: write %s: %w", tmp, err)
	}
	if !s.noFsync {
		if err := f.Sync(); err != nil {
			f.Close()
			return fmt.Errorf("raftkv: sync %s: %w", tmp, err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("raftkv: close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, name)); err != nil {
		return fmt.Errorf("raftkv: rename %s: %w", tmp, err)
	}
	return s.syncDir()
}

func (s *Storage) syncDir() error {
	if s.noFsync {
		return nil
	}
	d, err := os.Open(s.dir)
	if err != nil {
		return fmt.Errorf("raftkv: open data dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("raftkv: sync data dir: %w", err)
	}
	return nil
}

// Close closes the log file.
func (s *Storage) Close() error { return s.f.Close() }

func readSnapshot(path string) (*raftpb.Snapshot, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("raftkv: read snapshot: %w", err)
	}
	if len(data) < recordHeader {
		return nil, fmt.Errorf("%w: snapshot file of %d bytes", ErrCorrupt, len(data))
	}
	n := binary.LittleEndian.Uint32(data[0:4])
	sum := binary.LittleEndian.Uint32(data[4:8])
	body := data[recordHeader:]
	if uint32(len(body)) != n || crc32.Checksum(body, crcTable) != sum {
		return nil, fmt.Errorf("%w: snapshot file checksum", ErrCorrupt)
	}
	snap := &raftpb.Snapshot{}
	if err := proto.Unmarshal(body, snap); err != nil {
		return nil, fmt.Errorf("%w: snapshot: %w", ErrCorrupt, err)
	}
	return snap, nil
}
