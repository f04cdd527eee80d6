package raftkv

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/chainraft/chainraft/internal/wal"
)

const (
	walName = "wal"
	// oldWalName is the log Rotate sealed, kept until the snapshot it was
	// rotated for is durable.
	oldWalName = "wal.old"
	snapName   = "snap"
	// voteName is the file holding the term and vote, apart from the log,
	// so that no cut of the log's tail can take them: a torn tail is judged
	// by its bytes alone, and a flipped byte in a synced last record reads
	// exactly like a torn write (internal/wal's doc.go).
	voteName = "vote"

	recEntry     byte = 1
	recHardState byte = 2
)

// Storage is a node's durable state in its data directory, in
// internal/wal's framing (shared with chain): "snap", the newest snapshot,
// and "vote", the term and vote, both checksummed files replaced
// atomically (temporary file, fsync, rename, directory fsync); and "wal", a
// log of records [type][protobuf] — entries and hard states — holding
// everything after the snapshot. A term or vote is made durable in "vote"
// before the hard state carrying it is appended to the log, so the log's
// hard states only ever trail it; the commit index is the log's. See
// doc.go for why a log of our own rather than a database.
type Storage struct {
	dir     string
	noFsync bool
	log     *wal.Log
	hs      *raftpb.HardState // last hard state written, carried over by Rewrite
	// term and vote are what the vote file holds.
	term, vote uint64
}

// OpenStorage opens (or creates) the storage in dir and returns what it
// holds. A torn tail of the log is cut (and the cut fsynced) before it
// returns; any other damage is ErrCorrupt, naming the file and offset.
func OpenStorage(dir string, noFsync bool) (*Storage, *Recovered, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("raftkv: create data dir: %w", err)
	}
	s := &Storage{dir: dir, noFsync: noFsync}
	// A snapshot prepared off the loop and never committed (a crash came
	// first) is not state: the log behind the old snapshot still holds it.
	if err := s.DiscardSnapshot(); err != nil {
		return nil, nil, fmt.Errorf("raftkv: %w", err)
	}
	rec := &Recovered{}
	snap, err := readSnapshot(filepath.Join(dir, snapName))
	if err != nil {
		return nil, nil, err
	}
	rec.Snapshot = snap
	voted, err := s.readVote()
	if err != nil {
		return nil, nil, err
	}
	walPath, oldPath := filepath.Join(dir, walName), filepath.Join(dir, oldWalName)
	// The log Rotate sealed comes first, if a crash left it: read whole
	// (sealed), its entries are older than the current log's.
	var oldRecs []wal.Record
	_, err = os.Stat(oldPath)
	hasOld := err == nil
	if hasOld {
		if oldRecs, err = wal.ReadSealed(oldPath); err != nil {
			return nil, nil, corrupt(err)
		}
	}
	if _, err := os.Stat(walPath); errors.Is(err, os.ErrNotExist) && !hasOld && (snap != nil || voted) {
		// The log is created before anything else is written and only
		// ever replaced by rename (Rotate renames it to the old log first):
		// without either, its entries and commit index are lost.
		return nil, nil, corrupt(wal.Corrupt(walPath, 0, "the log is missing, and the snapshot or vote file is not"))
	}
	log, recs, err := wal.Open(walPath, noFsync)
	if err != nil {
		return nil, nil, corrupt(err)
	}
	s.log = log
	older, cur := &Recovered{}, &Recovered{}
	logHS, err := replay(oldPath, oldRecs, older)
	if err == nil {
		var hs *raftpb.HardState
		if hs, err = replay(walPath, recs, cur); hs != nil {
			logHS = hs
		}
	}
	if err != nil {
		log.Close()
		return nil, nil, err
	}
	rec.Entries = joinLogs(older.Entries, cur.Entries)
	if hs := logHS; hs != nil && (hs.GetTerm() > s.term || hs.GetTerm() == s.term && hs.GetVote() != 0 && hs.GetVote() != s.vote) {
		log.Close()
		return nil, nil, corrupt(wal.Corrupt(filepath.Join(dir, voteName), 0,
			"holds term %d vote %d, and the log has a hard state of term %d vote %d: the vote file lost a vote", s.term, s.vote, hs.GetTerm(), hs.GetVote()))
	}
	if s.term != 0 || s.vote != 0 || logHS.GetCommit() != 0 {
		rec.HardState = &raftpb.HardState{Term: proto.Uint64(s.term), Vote: proto.Uint64(s.vote), Commit: proto.Uint64(logHS.GetCommit())}
	}
	s.hs = rec.HardState
	if ents, ok := logMatchesSnapshot(rec.Snapshot, rec.Entries); !ok {
		// A crash between a leader snapshot's rename and the log rewrite:
		// the old log is not the one behind the snapshot. It is replaced by
		// an empty one now, so later appends at snapshot+1 cannot leave a
		// gap after the stale entries or sit behind entries of later terms.
		rec.Entries = ents
		if err := s.Rewrite(rec.HardState, nil); err != nil {
			s.log.Close()
			return nil, nil, err
		}
	} else if hasOld || log.Sealed() {
		// A crash in a rotation, or before the snapshot it was for was
		// put in place: one log again, so that the next rotation starts
		// from a single current log.
		if err := s.Rewrite(rec.HardState, rec.Entries); err != nil {
			s.log.Close()
			return nil, nil, err
		}
	}
	return s, rec, nil
}

// corrupt wraps a framing error: wal's damage as ErrCorrupt (it names file
// and offset), anything else (I/O) as it is.
func corrupt(err error) error {
	if errors.Is(err, wal.ErrCorrupt) {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return fmt.Errorf("raftkv: %w", err)
}

// readVote reads the vote file, if there is one, into s.term and s.vote.
func (s *Storage) readVote() (bool, error) {
	path := filepath.Join(s.dir, voteName)
	b, err := wal.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return false, nil
	case err != nil:
		return false, corrupt(err)
	case len(b) != 16:
		return false, corrupt(wal.Corrupt(path, wal.FileHeaderSize, "a vote of %d bytes", len(b)))
	}
	s.term, s.vote = binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(b[8:])
	return true, nil
}

// saveVote makes hs's term and vote durable in the vote file if they are
// not already, before the log gets a hard state carrying them. It costs a
// file replacement (two fsyncs) per new term or vote: per election, not
// per write.
func (s *Storage) saveVote(hs *raftpb.HardState) error {
	if raft.IsEmptyHardState(hs) || hs.GetTerm() == s.term && hs.GetVote() == s.vote {
		return nil
	}
	b := binary.LittleEndian.AppendUint64(nil, hs.GetTerm())
	b = binary.LittleEndian.AppendUint64(b, hs.GetVote())
	if err := wal.WriteFile(filepath.Join(s.dir, voteName), b, s.noFsync); err != nil {
		return fmt.Errorf("raftkv: save vote: %w", err)
	}
	s.term, s.vote = hs.GetTerm(), hs.GetVote()
	return nil
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

// replay decodes the log's records into rec and returns the last hard
// state among them. An entry at index i replaces every entry at or after
// i, as raft requires of a log that overwrites a conflicting suffix.
func replay(path string, recs []wal.Record, rec *Recovered) (*raftpb.HardState, error) {
	var hs *raftpb.HardState
	for _, r := range recs {
		if len(r.Body) == 0 {
			return nil, corrupt(wal.Corrupt(path, r.Offset, "an empty record"))
		}
		switch typ, body := r.Body[0], r.Body[1:]; typ {
		case recEntry:
			e := &raftpb.Entry{}
			if err := proto.Unmarshal(body, e); err != nil {
				return nil, corrupt(wal.Corrupt(path, r.Offset, "entry does not decode: %v", err))
			}
			if err := appendEntry(rec, e); err != nil {
				return nil, corrupt(wal.Corrupt(path, r.Offset, "%v", err))
			}
		case recHardState:
			hs = &raftpb.HardState{}
			if err := proto.Unmarshal(body, hs); err != nil {
				return nil, corrupt(wal.Corrupt(path, r.Offset, "hard state does not decode: %v", err))
			}
		default:
			return nil, corrupt(wal.Corrupt(path, r.Offset, "record type %d", typ))
		}
	}
	return hs, nil
}

// joinLogs is the entries of the sealed old log followed by the current
// log's, which overwrite any they share (a rotation starts the new log at
// the snapshot's index, before the old one's end). A current log that
// leaves a gap after the old one, or starts before it, was rewritten
// behind a newer snapshot from the leader before the old log could be
// dropped: the old entries are then stale.
func joinLogs(old, cur []*raftpb.Entry) []*raftpb.Entry {
	if len(old) == 0 {
		return cur
	}
	if len(cur) == 0 {
		return old
	}
	first, next := old[0].GetIndex(), old[0].GetIndex()+uint64(len(old))
	if c := cur[0].GetIndex(); c > next || c < first {
		return cur
	}
	return append(old[:cur[0].GetIndex()-first:cur[0].GetIndex()-first], cur...)
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

// Save makes one Ready's state durable. A snapshot from the leader
// replaces the log: snapshot file first (a crash in between leaves the new
// snapshot and the old log, which OpenStorage reconciles: see
// logMatchesSnapshot), then a rewritten log.
func (s *Storage) Save(hs *raftpb.HardState, ents []*raftpb.Entry, snap *raftpb.Snapshot, sync bool) error {
	if raft.IsEmptySnap(snap) {
		return s.Append(hs, ents, sync)
	}
	if err := s.SaveSnapshot(snap); err != nil {
		return err
	}
	if raft.IsEmptyHardState(hs) {
		hs = s.hs
	}
	return s.Rewrite(hs, ents)
}

// Append appends entries and the hard state (either may be empty) in one
// write, fsynced when sync is set (raft's MustSync) unless fsync is off. A
// new term or vote goes to the vote file first.
func (s *Storage) Append(hs *raftpb.HardState, ents []*raftpb.Entry, sync bool) error {
	if err := s.saveVote(hs); err != nil {
		return err
	}
	b := s.log.Batch()
	if err := addRecords(b, hs, ents); err != nil {
		return err
	}
	if !raft.IsEmptyHardState(hs) {
		s.hs = hs
	}
	if b.Len() == 0 {
		return nil
	}
	if err := s.log.Write(b); err != nil {
		return fmt.Errorf("raftkv: %w", err)
	}
	if sync {
		if err := s.log.Sync(); err != nil {
			return fmt.Errorf("raftkv: %w", err)
		}
	}
	return nil
}

// addRecords adds the entries, then the hard state, to a batch.
func addRecords(b *wal.Batch, hs *raftpb.HardState, ents []*raftpb.Entry) error {
	for _, e := range ents {
		if err := addRecord(b, recEntry, e); err != nil {
			return err
		}
	}
	if !raft.IsEmptyHardState(hs) {
		return addRecord(b, recHardState, hs)
	}
	return nil
}

func addRecord(b *wal.Batch, typ byte, m proto.Message) error {
	rec := append(b.Begin(), typ)
	rec, err := proto.MarshalOptions{}.MarshalAppend(rec, m)
	if err != nil {
		return fmt.Errorf("raftkv: marshal wal record: %w", err)
	}
	b.End(rec)
	return nil
}

// SaveSnapshot makes snap the durable snapshot, a checksummed file
// replaced atomically: a crash leaves the old snapshot or the new one,
// never a mix, and damage is refused on open.
func (s *Storage) SaveSnapshot(snap *raftpb.Snapshot) error {
	parts, err := snapshotParts(snap)
	if err != nil {
		return err
	}
	if err := wal.WriteFileParts(filepath.Join(s.dir, snapName), s.noFsync, parts...); err != nil {
		return fmt.Errorf("raftkv: save snapshot: %w", err)
	}
	return nil
}

// PrepareSnapshot writes snap beside the durable snapshot, fsynced but not
// in its place. It touches nothing the loop writes, so the node's snapshot
// goroutine calls it while the loop goes on; the loop then puts it in place
// (CommitSnapshot) or, if it installed a newer snapshot from its leader
// meanwhile, drops it (DiscardSnapshot).
func (s *Storage) PrepareSnapshot(snap *raftpb.Snapshot) error {
	parts, err := snapshotParts(snap)
	if err != nil {
		return err
	}
	if err := wal.PrepareFile(filepath.Join(s.dir, snapName), s.noFsync, parts...); err != nil {
		return fmt.Errorf("raftkv: prepare snapshot: %w", err)
	}
	return nil
}

// PrepareJob is PrepareSnapshot of j.Build(), streamed: the state goes
// from j's copy to the file entry by entry (fsm.stream), so the node never
// holds a second, marshalled copy of it.
func (s *Storage) PrepareJob(j *SnapshotJob) error {
	meta, err := proto.Marshal(&raftpb.Snapshot{Metadata: j.meta})
	if err != nil {
		return fmt.Errorf("raftkv: marshal snapshot metadata: %w", err)
	}
	size, write := j.state.stream()
	var field []byte
	if size > 0 {
		field = protowire.AppendTag(nil, snapshotDataField, protowire.BytesType)
		field = protowire.AppendVarint(field, uint64(size))
	}
	total := int64(len(meta)+len(field)) + size
	err = wal.PrepareFileStream(filepath.Join(s.dir, snapName), s.noFsync, total, func(w io.Writer) error {
		if _, err := w.Write(meta); err != nil {
			return err
		}
		if _, err := w.Write(field); err != nil {
			return err
		}
		if size == 0 {
			return nil
		}
		return write(w)
	})
	if err != nil {
		return fmt.Errorf("raftkv: prepare snapshot: %w", err)
	}
	return nil
}

// CommitSnapshot makes the prepared snapshot the durable one.
func (s *Storage) CommitSnapshot() error {
	if err := wal.CommitFile(filepath.Join(s.dir, snapName), s.noFsync); err != nil {
		return fmt.Errorf("raftkv: commit snapshot: %w", err)
	}
	return nil
}

// DiscardSnapshot drops a prepared snapshot.
func (s *Storage) DiscardSnapshot() error {
	return wal.DiscardFile(filepath.Join(s.dir, snapName))
}

// LoadSnapshot reads the durable snapshot (nil if there is none), whole.
// raft's MemoryStorage holds snapshots without their data (Core keeps a
// second copy of the whole state out of memory), so a leader's snapshot
// sender reads the data from disk, off the loop, usually piece by piece
// (OpenSnapshot); any goroutine may call it.
func (s *Storage) LoadSnapshot() (*raftpb.Snapshot, error) {
	return readSnapshot(filepath.Join(s.dir, snapName))
}

// OpenSnapshot opens the durable snapshot for sending without reading its
// data into memory (see SnapshotReader). It returns (nil, nil) for a file
// whose data comes before its metadata (written whole by proto.Marshal,
// which this package no longer does): such a snapshot is sent from
// LoadSnapshot. Any goroutine may call it.
func (s *Storage) OpenSnapshot() (*SnapshotReader, error) {
	path := filepath.Join(s.dir, snapName)
	r, err := wal.OpenFileReader(path)
	if err != nil {
		return nil, corrupt(err)
	}
	sr, err := newSnapshotReader(path, r)
	if err != nil || sr == nil {
		r.Close()
	}
	return sr, err
}

// SnapshotReader is the durable snapshot's metadata and its data, read
// from the file in order; its last piece is handed out only once the
// file's checksum has held over all of it.
type SnapshotReader struct {
	r    *wal.FileReader
	br   *bufio.Reader
	meta *raftpb.SnapshotMetadata
	left int64 // data bytes not yet read
}

func newSnapshotReader(path string, r *wal.FileReader) (*SnapshotReader, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	bad := func(err error) error {
		return corrupt(wal.Corrupt(path, wal.FileHeaderSize, "snapshot does not decode: %v", err))
	}
	var rest []byte // the fields before the data, as protobuf
	for {
		tag, err := binary.ReadUvarint(br)
		if err == io.EOF {
			// No data: the whole snapshot is its metadata.
			var snap raftpb.Snapshot
			if err := proto.Unmarshal(rest, &snap); err != nil {
				return nil, bad(err)
			}
			return &SnapshotReader{r: r, br: br, meta: snap.GetMetadata()}, nil
		}
		if err != nil {
			return nil, bad(err)
		}
		num, typ := protowire.DecodeTag(tag)
		if typ != protowire.BytesType {
			return nil, bad(fmt.Errorf("field %d of wire type %d", num, typ))
		}
		n, err := binary.ReadUvarint(br)
		if err != nil {
			return nil, bad(err)
		}
		if num == snapshotDataField {
			if len(rest) == 0 {
				return nil, nil // the metadata follows the data
			}
			var snap raftpb.Snapshot
			if err := proto.Unmarshal(rest, &snap); err != nil {
				return nil, bad(err)
			}
			return &SnapshotReader{r: r, br: br, meta: snap.GetMetadata(), left: int64(n)}, nil
		}
		if n > 1<<20 {
			return nil, bad(fmt.Errorf("field %d of %d bytes", num, n))
		}
		field := make([]byte, n)
		if _, err := io.ReadFull(br, field); err != nil {
			return nil, bad(err)
		}
		rest = protowire.AppendTag(rest, num, typ)
		rest = protowire.AppendBytes(rest, field)
	}
}

// Metadata is the snapshot's index, term and membership.
func (s *SnapshotReader) Metadata() *raftpb.SnapshotMetadata { return s.meta }

// Size is the snapshot's data length.
func (s *SnapshotReader) Size() int64 { return s.left }

// Next reads the next n bytes of data. The piece that ends the data is
// returned only after the rest of the file has been read and its checksum
// checked: a damaged snapshot is never handed on whole.
func (s *SnapshotReader) Next(n int) ([]byte, error) {
	if int64(n) > s.left {
		return nil, fmt.Errorf("raftkv: snapshot piece of %d bytes asked, %d left", n, s.left)
	}
	piece := make([]byte, n)
	if _, err := io.ReadFull(s.br, piece); err != nil {
		return nil, corrupt(err)
	}
	s.left -= int64(n)
	if s.left == 0 {
		// Fields after the data (none from this package's writers) are
		// read for the checksum alone.
		// (Through br itself: io.Copy would read the file past it and
		// miss an error br already holds.)
		for buf := make([]byte, 4096); ; {
			_, err := s.br.Read(buf)
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, corrupt(err)
			}
		}
	}
	return piece, nil
}

// Close closes the file.
func (s *SnapshotReader) Close() error { return s.r.Close() }

// snapshotSource is the durable snapshot as the transport sends it: from
// the file piece by piece, or, for a file OpenSnapshot cannot stream, from
// memory.
func (s *Storage) snapshotSource() (snapSource, error) {
	if r, err := s.OpenSnapshot(); r != nil || err != nil {
		return r, err
	}
	snap, err := s.LoadSnapshot()
	if err != nil {
		return nil, err
	}
	return &memSnapshot{snap: snap, data: snap.GetData()}, nil
}

// memSnapshot is a snapSource over a snapshot in memory.
type memSnapshot struct {
	snap *raftpb.Snapshot
	data []byte
}

func (m *memSnapshot) Metadata() *raftpb.SnapshotMetadata { return m.snap.GetMetadata() }
func (m *memSnapshot) Size() int64                        { return int64(len(m.snap.GetData())) }
func (m *memSnapshot) Close() error                       { return nil }

func (m *memSnapshot) Next(n int) ([]byte, error) {
	if n > len(m.data) {
		return nil, fmt.Errorf("raftkv: snapshot piece of %d bytes asked, %d left", n, len(m.data))
	}
	piece := m.data[:n:n]
	m.data = m.data[n:]
	return piece, nil
}

// snapshotParts encodes a raftpb.Snapshot as protobuf in parts, the data
// last and not copied: the metadata, then the data field's tag and length,
// then the data (protobuf fields may come in any order).
func snapshotParts(snap *raftpb.Snapshot) ([][]byte, error) {
	meta, err := proto.Marshal(&raftpb.Snapshot{Metadata: snap.GetMetadata()})
	if err != nil {
		return nil, fmt.Errorf("raftkv: marshal snapshot metadata: %w", err)
	}
	data := snap.GetData()
	if len(data) == 0 {
		return [][]byte{meta}, nil
	}
	field := protowire.AppendTag(nil, snapshotDataField, protowire.BytesType)
	field = protowire.AppendVarint(field, uint64(len(data)))
	return [][]byte{meta, field, data}, nil
}

// snapshotDataField is raftpb.Snapshot's data field number.
const snapshotDataField = 1

// decodeSnapshot is proto.Unmarshal of a raftpb.Snapshot whose data is
// left in body rather than copied out of it.
func decodeSnapshot(body []byte) (*raftpb.Snapshot, error) {
	var data, rest []byte
	for b := body; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		if num == snapshotDataField && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b[n:])
			if m < 0 {
				return nil, protowire.ParseError(m)
			}
			data = v
			b = b[n+m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return nil, protowire.ParseError(m)
		}
		rest = append(rest, b[:n+m]...)
		b = b[n+m:]
	}
	snap := &raftpb.Snapshot{}
	if err := proto.Unmarshal(rest, snap); err != nil {
		return nil, err
	}
	if len(data) > 0 {
		snap.Data = data
	}
	return snap, nil
}

// Rotate seals the log and starts a new one holding hs and ents — what
// follows the index of a snapshot being built — while the sealed log stays
// as "wal.old" until that snapshot is durable (DropOldLog). It is how a
// node's own snapshot compacts the log without rewriting it: the rewrite,
// tens of megabytes written and fsynced on the loop while the snapshot's
// own write filled the disk's queue, stalled the loop for seconds.
// Recovery reads the old log then the new one, and makes them one again.
func (s *Storage) Rotate(hs *raftpb.HardState, ents []*raftpb.Entry) error {
	if err := s.saveVote(hs); err != nil {
		return err
	}
	if err := s.log.Seal(); err != nil {
		return fmt.Errorf("raftkv: %w", err)
	}
	_ = s.log.Close()
	s.log = nil
	if err := os.Rename(filepath.Join(s.dir, walName), filepath.Join(s.dir, oldWalName)); err != nil {
		return fmt.Errorf("raftkv: rotate wal: %w", err)
	}
	// Replace's directory fsync makes the rename durable with the new log.
	log, err := wal.Replace(filepath.Join(s.dir, walName), s.noFsync, func(b *wal.Batch) error {
		return addRecords(b, hs, ents)
	})
	if err != nil {
		return fmt.Errorf("raftkv: rotate wal: %w", err)
	}
	if !raft.IsEmptyHardState(hs) {
		s.hs = hs
	}
	s.log = log
	return nil
}

// DropOldLog removes the log Rotate sealed, once a snapshot at or after
// the rotation is durable. A removal a crash undoes is harmless: recovery
// reads that log's entries, which the snapshot covers, before the new ones.
func (s *Storage) DropOldLog() error {
	if err := os.Remove(filepath.Join(s.dir, oldWalName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("raftkv: %w", err)
	}
	return nil
}

// Rewrite replaces the log with just hs and ents (the log behind a new
// snapshot), atomically like SaveSnapshot, and reopens it for appending.
// The sealed old log goes after: everything it held is behind a snapshot
// already durable, or in ents (a crash between the two leaves an old log
// that recovery finds stale or continued: see joinLogs).
func (s *Storage) Rewrite(hs *raftpb.HardState, ents []*raftpb.Entry) error {
	if err := s.saveVote(hs); err != nil {
		return err
	}
	log, err := wal.Replace(filepath.Join(s.dir, walName), s.noFsync, func(b *wal.Batch) error {
		return addRecords(b, hs, ents)
	})
	if err != nil {
		return fmt.Errorf("raftkv: rewrite wal: %w", err)
	}
	if !raft.IsEmptyHardState(hs) {
		s.hs = hs
	}
	if s.log != nil {
		s.log.Close()
	}
	s.log = log
	return s.DropOldLog()
}

// Close closes the log file.
func (s *Storage) Close() error {
	if s.log == nil {
		return nil // a failed Rotate closed it
	}
	return s.log.Close()
}

func readSnapshot(path string) (*raftpb.Snapshot, error) {
	body, err := wal.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, corrupt(err)
	}
	snap, err := decodeSnapshot(body)
	if err != nil {
		return nil, corrupt(wal.Corrupt(path, wal.FileHeaderSize, "snapshot does not decode: %v", err))
	}
	return snap, nil
}
