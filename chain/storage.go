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
	"syscall"

	"google.golang.org/protobuf/proto"

	pb "github.com/chainraft/chainraft/chain/chainpb"
)

// Storage is a node's durable state: per chain, a snapshot file
// (chain-<i>.snap, replaced atomically by rename) and an append-only log of
// the entries after it (chain-<i>.log, records of length, CRC32-C and a
// protobuf Entry). Save fsyncs every file it touched before returning, which
// is what lets the Node forward an entry only after it is durable. A torn
// record at the end of a log (a crash mid-write) is cut off at open; a bad
// record with good data after it is corruption and OpenStorage fails with
// ErrCorrupt rather than forget durable entries (replayLog).
type Storage struct {
	dir     string
	noFsync bool
	logs    []*os.File
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// OpenStorage opens (creating) the data directory and reads back every
// chain's state.
func OpenStorage(dir string, chains int, noFsync bool) (*Storage, []Restored, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("chain storage: %w", err)
	}
	s := &Storage{dir: dir, noFsync: noFsync, logs: make([]*os.File, chains)}
	restored := make([]Restored, chains)
	for i := range chains {
		r, err := s.load(i)
		if err != nil {
			s.Close()
			return nil, nil, err
		}
		restored[i] = r
	}
	// A log file created just now must survive a crash too: its directory
	// entry is made durable before anything is appended to it and
	// acknowledged.
	if err := s.syncDir(); err != nil {
		s.Close()
		return nil, nil, err
	}
	return s, restored, nil
}

func (s *Storage) snapPath(i int) string {
	return filepath.Join(s.dir, fmt.Sprintf("chain-%d.snap", i))
}
func (s *Storage) logPath(i int) string { return filepath.Join(s.dir, fmt.Sprintf("chain-%d.log", i)) }

func (s *Storage) load(i int) (Restored, error) {
	var r Restored
	b, err := os.ReadFile(s.snapPath(i))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return r, fmt.Errorf("chain storage: %w", err)
	default:
		r.Snapshot = &pb.Snapshot{}
		if err := proto.Unmarshal(b, r.Snapshot); err != nil {
			return r, fmt.Errorf("%w: snapshot of chain %d: %w", ErrCorrupt, i, err)
		}
	}
	f, err := os.OpenFile(s.logPath(i), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return r, fmt.Errorf("chain storage: %w", err)
	}
	s.logs[i] = f
	// The whole log is read at once: it holds at most snapshotEvery entries
	// (then it is truncated behind a snapshot), and no length field read
	// from disk ever sizes an allocation.
	data, err := io.ReadAll(f)
	if err != nil {
		return r, fmt.Errorf("chain storage: read log of chain %d: %w", i, err)
	}
	entries, good, err := replayLog(data)
	if err != nil {
		return r, fmt.Errorf("chain %d log: %w", i, err)
	}
	for _, e := range entries {
		if r.Snapshot == nil || e.Seq > r.Snapshot.LastSeq {
			r.Entries = append(r.Entries, e)
		}
	}
	if good < int64(len(data)) {
		if err := f.Truncate(good); err != nil {
			return r, fmt.Errorf("chain storage: cutting torn log tail: %w", err)
		}
		if !s.noFsync {
			if err := f.Sync(); err != nil {
				return r, fmt.Errorf("chain storage: sync cut log: %w", err)
			}
		}
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		return r, fmt.Errorf("chain storage: %w", err)
	}
	return r, nil
}

// replayLog decodes a log's records and returns the entries and the length
// of the good prefix. It follows raftkv's rule: a bad record (short header,
// length past the end, bad checksum) followed by nothing but zeros is a
// write torn by a crash, and the log is cut there; a bad record with data
// after it is corruption (ErrCorrupt), since the entries after it were made
// durable and may have been acknowledged. A length field above
// maxRecordSize cannot come from a write of ours (a record is at most one
// entry of a gRPC message) and is judged by the same rule. A record whose
// checksum holds but does not decode is corruption too.
func replayLog(data []byte) ([]*pb.Entry, int64, error) {
	var out []*pb.Entry
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
		e := &pb.Entry{}
		if err := proto.Unmarshal(body, e); err != nil {
			return nil, 0, fmt.Errorf("%w: record at offset %d: %w", ErrCorrupt, off, err)
		}
		out = append(out, e)
		off = end
	}
	return out, int64(off), nil
}

// maxRecordSize bounds a plausible log record: one entry, which arrived in
// a gRPC message of at most maxMsgSize.
const maxRecordSize = maxMsgSize

// tornOrCorrupt judges a bad record at off whose claimed extent ends at end:
// nothing or only zeros from end on means a torn write (cut at off);
// anything else is corruption.
func tornOrCorrupt(data []byte, off, end int) (int64, error) {
	if end >= len(data) || len(bytes.Trim(data[end:], "\x00")) == 0 {
		return int64(off), nil
	}
	return 0, fmt.Errorf("%w: bad record at offset %d with %d bytes after it", ErrCorrupt, off, len(data)-end)
}

// Save makes a Ready's Persist list durable, in order.
func (s *Storage) Save(ps []Persist) error {
	dirty := map[int]bool{}
	var buf []byte
	for _, p := range ps {
		switch {
		case p.Wipe:
			if err := s.replace(p.Chain, nil); err != nil {
				return err
			}
			delete(dirty, p.Chain)
		case p.Snapshot != nil:
			if err := s.replace(p.Chain, p.Snapshot); err != nil {
				return err
			}
			delete(dirty, p.Chain)
		default:
			buf = buf[:0]
			for _, e := range p.Entries {
				b, err := proto.Marshal(e)
				if err != nil {
					return fmt.Errorf("chain storage: %w", err)
				}
				buf = binary.LittleEndian.AppendUint32(buf, uint32(len(b)))
				buf = binary.LittleEndian.AppendUint32(buf, crc32.Checksum(b, crcTable))
				buf = append(buf, b...)
			}
			if _, err := s.logs[p.Chain].Write(buf); err != nil {
				return fmt.Errorf("chain storage: append chain %d: %w", p.Chain, err)
			}
			dirty[p.Chain] = true
		}
	}
	if s.noFsync {
		return nil
	}
	// The chains' logs are fsync'd in parallel: the disk merges concurrent
	// flushes, and one chain's write should not wait for another's.
	errs := make(chan error, len(dirty))
	for i := range dirty {
		go func() {
			if err := syscall.Fdatasync(int(s.logs[i].Fd())); err != nil {
				errs <- fmt.Errorf("chain storage: fdatasync chain %d: %w", i, err)
				return
			}
			errs <- nil
		}()
	}
	var first error
	for range dirty {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// replace installs a snapshot (nil: an empty state) and empties the log:
// the snapshot is written to a temporary file, fsync'd and renamed, then the
// log truncated, so a crash in between leaves a snapshot whose sequence
// covers the old log's entries (skipped on load).
//
// A wipe (nil) truncates the log first instead: an empty snapshot cannot
// cover the old entries, and a crash in between then leaves the older
// snapshot alone, still a prefix of the chain's history.
func (s *Storage) replace(i int, snap *pb.Snapshot) error {
	if snap == nil {
		if err := s.truncateLog(i); err != nil {
			return err
		}
		snap = &pb.Snapshot{}
	}
	b, err := proto.Marshal(snap)
	if err != nil {
		return fmt.Errorf("chain storage: %w", err)
	}
	tmp := s.snapPath(i) + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
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
	return s.truncateLog(i)
}

func (s *Storage) truncateLog(i int) error {
	if err := s.logs[i].Truncate(0); err != nil {
		return fmt.Errorf("chain storage: %w", err)
	}
	if _, err := s.logs[i].Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("chain storage: %w", err)
	}
	if !s.noFsync {
		if err := s.logs[i].Sync(); err != nil {
			return fmt.Errorf("chain storage: %w", err)
		}
	}
	return nil
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

// Close closes the log files.
func (s *Storage) Close() error {
	var first error
	for _, f := range s.logs {
		if f != nil {
			if err := f.Close(); err != nil && first == nil {
				first = err
			}
		}
	}
	return first
}
