package wal

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"syscall"
)

// ErrCorrupt is what every [CorruptError] matches with errors.Is. The stores
// wrap it under their own sentinel (chain.ErrCorrupt, raftkv.ErrCorrupt),
// so callers branch on either.
var ErrCorrupt = errors.New("wal: corrupt")

// CorruptError is damage that is not a write torn by a crash: durable state
// would be lost by carrying on, so the store refuses to start. It names the
// file and the offset where the damage starts, which is what an operator
// needs to look at the bytes (or decide to cut them by hand).
type CorruptError struct {
	File   string // the file's path
	Offset int64  // where the damaged record or field starts
	// Next is the offset of a valid record found after the damage, the
	// proof that the damage is not a torn tail; -1 when there is none.
	Next   int64
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("%s: offset %d: %s", e.File, e.Offset, e.Reason)
}

// Is makes errors.Is(err, ErrCorrupt) hold.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

// Corrupt builds a CorruptError for damage a store finds inside a record
// the framing accepted (a body that does not decode, an entry out of
// order), so its refusals name file and offset like the framing's own.
func Corrupt(file string, off int64, format string, args ...any) error {
	return &CorruptError{File: file, Offset: off, Next: -1, Reason: fmt.Sprintf(format, args...)}
}

const (
	// LogHeaderSize is the size of a log file's header: magic, file id,
	// reserved, CRC-32C of the preceding 28 bytes.
	LogHeaderSize = 32
	// RecordHeaderSize is the size of a record's header: body length,
	// CRC-32C of the body, CRC-32C of (file id, offset, the first 8 bytes).
	RecordHeaderSize = 12

	logMagic = "CHAINRAFT-LOG 1\n"
)

var table = crc32.MakeTable(crc32.Castagnoli)

// Record is one record read back from a log: its offset in the file (for
// error messages) and its body, a slice of the file's contents.
type Record struct {
	Offset int64
	Body   []byte
}

// seedOf is the CRC-32C state after a file id: a record header's checksum
// starts from it, so a record only validates in the file it was written to.
func seedOf(id []byte) uint32 { return crc32.Checksum(id, table) }

// headerSum is a record header's own checksum: over the file id (folded
// into seed), the record's offset and its length and body checksum. The
// offset makes a copy of a record found anywhere but where it was written
// (inside another record's body, say) invalid.
func headerSum(seed uint32, off int64, h []byte) uint32 {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:], uint64(off))
	copy(b[8:], h[:8])
	return crc32.Update(seed, table, b[:])
}

// sealSeed is the seed of a seal record's header checksum: the file's
// seed extended with a fixed tag, so a seal and a record can never be
// taken for each other.
func sealSeed(seed uint32) uint32 { return crc32.Update(seed, table, []byte("seal")) }

// recordAt reports whether a valid record starts at off: its body length,
// and whether it is the log's seal (a record with an empty body and the
// seal's checksum domain). The header is checked first (a fixed 24 bytes
// of CRC), so scanning every offset of a damaged file costs O(size), not
// O(size × record length).
func recordAt(data []byte, off int, seed uint32) (n int, seal, ok bool) {
	if len(data)-off < RecordHeaderSize {
		return 0, false, false
	}
	h := data[off : off+RecordHeaderSize]
	switch sum := binary.LittleEndian.Uint32(h[8:]); {
	case sum == headerSum(seed, int64(off), h):
	case sum == headerSum(sealSeed(seed), int64(off), h):
		seal = true
	default:
		return 0, false, false
	}
	size := binary.LittleEndian.Uint32(h)
	if uint64(size) > uint64(len(data)-off-RecordHeaderSize) || seal && size != 0 {
		return 0, false, false
	}
	body := data[off+RecordHeaderSize : off+RecordHeaderSize+int(size)]
	if crc32.Checksum(body, table) != binary.LittleEndian.Uint32(h[4:]) {
		return 0, false, false
	}
	return int(size), seal, true
}

// findRecord returns the offset of the first valid record (or seal) at or
// after from, or -1.
func findRecord(data []byte, from int, seed uint32) int {
	for off := from; off+RecordHeaderSize <= len(data); off++ {
		if _, _, ok := recordAt(data, off, seed); ok {
			return off
		}
	}
	return -1
}

// logHeader returns a log file's header for the file id.
func logHeader(id [8]byte) []byte {
	h := make([]byte, LogHeaderSize)
	copy(h, logMagic)
	copy(h[16:], id[:])
	binary.LittleEndian.PutUint32(h[28:], crc32.Checksum(h[:28], table))
	return h
}

// checkLogHeader verifies a log file's header and returns the record seed.
func checkLogHeader(path string, data []byte) (uint32, error) {
	if len(data) < LogHeaderSize {
		return 0, &CorruptError{File: path, Next: -1,
			Reason: fmt.Sprintf("%d bytes, shorter than a log header (a log is created whole, header synced, by rename)", len(data))}
	}
	h := data[:LogHeaderSize]
	if string(h[:16]) != logMagic {
		return 0, &CorruptError{File: path, Next: -1, Reason: fmt.Sprintf("not a chainraft log of format 1 (magic %q)", h[:16])}
	}
	if crc32.Checksum(h[:28], table) != binary.LittleEndian.Uint32(h[28:]) {
		return 0, &CorruptError{File: path, Next: -1, Reason: "log header checksum mismatch"}
	}
	return seedOf(h[16:24]), nil
}

// Scan reads the records of a log file's contents and judges any damage.
// It returns the valid records, the length of the prefix they make up
// (with the seal, if any), whether the log ends with its seal, and an
// error when the damage is not a torn tail. A bad record is a torn tail
// only if mayBeTorn (the file is the one being appended to) and no valid
// record starts anywhere after it; doc.go argues why that rule never drops
// a synced record. A tail that is not torn, and anything after a seal, is
// refused with a *CorruptError naming path and the offset.
func Scan(path string, data []byte, mayBeTorn bool) (recs []Record, good int64, sealed bool, err error) {
	seed, err := checkLogHeader(path, data)
	if err != nil {
		return nil, 0, false, err
	}
	off := LogHeaderSize
	for off < len(data) {
		n, seal, ok := recordAt(data, off, seed)
		switch {
		case ok && !seal:
			recs = append(recs, Record{Offset: int64(off), Body: data[off+RecordHeaderSize : off+RecordHeaderSize+n]})
			off += RecordHeaderSize + n
			continue
		case ok:
			end := off + RecordHeaderSize
			if end == len(data) {
				return recs, int64(end), true, nil
			}
			// Nothing is written to a log after its seal was synced, so
			// no byte after it can be a torn write.
			return recs, int64(off), false, &CorruptError{File: path, Offset: int64(end), Next: int64(findRecord(data, end, seed)),
				Reason: fmt.Sprintf("%d bytes after the log's seal", len(data)-end)}
		}
		if next := findRecord(data, off+1, seed); next >= 0 {
			return recs, int64(off), false, &CorruptError{File: path, Offset: int64(off), Next: int64(next),
				Reason: fmt.Sprintf("bad record with a valid record after it at offset %d (%d bytes to the end)", next, len(data)-off)}
		}
		if !mayBeTorn {
			return recs, int64(off), false, &CorruptError{File: path, Offset: int64(off), Next: -1,
				Reason: fmt.Sprintf("bad record in a log that was synced whole (%d bytes to the end)", len(data)-off)}
		}
		return recs, int64(off), false, nil
	}
	return recs, int64(off), false, nil
}

// ReadSealed reads a log that was sealed ([Log.Seal]): synced whole, seal
// last, before a newer one was created. Any damage is refused, and so is a
// log without its seal: cut at a record boundary, it would otherwise read
// as a shorter valid log and silently lose its last records.
func ReadSealed(path string) ([]Record, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	recs, good, sealed, err := Scan(path, data, false)
	if err == nil && !sealed {
		err = &CorruptError{File: path, Offset: good, Next: -1,
			Reason: "a sealed log without its seal: records after this offset were lost"}
	}
	return recs, err
}

// Log is a log file open for appending. One goroutine uses it.
type Log struct {
	path   string
	f      *os.File
	seed   uint32
	size   int64
	noSync bool
	batch  Batch
	sealed bool
	// err is the first failed write or sync: after it the file's tail is
	// unknown, so every later call fails rather than write at an offset
	// the records' checksums do not match.
	err error
}

// Open opens the log at path for appending, creating it (see [Create]) if
// it does not exist. It returns the records it holds. A torn tail is cut
// and the cut synced before Open returns, so appends start after the last
// valid record; damage that is not a torn tail is refused (see [Scan]). A
// log found sealed (a crash after [Log.Seal], before the next log was
// created) is returned sealed: see [Log.Sealed].
func Open(path string, noSync bool) (*Log, []Record, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		l, err := Create(path, noSync)
		return l, nil, err
	}
	if err != nil {
		return nil, nil, fmt.Errorf("wal: %w", err)
	}
	recs, good, sealed, err := Scan(path, data, true)
	if err != nil {
		return nil, nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("wal: %w", err)
	}
	l := &Log{path: path, f: f, seed: seedOf(data[16:24]), size: good, noSync: noSync, sealed: sealed}
	if good < int64(len(data)) {
		if err := f.Truncate(good); err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("wal: cutting the torn tail of %s at %d: %w", path, good, err)
		}
		// The cut is made durable before anything is appended after it.
		if err := l.Sync(); err != nil {
			f.Close()
			return nil, nil, err
		}
	}
	return l, recs, nil
}

// Create makes an empty log at path, replacing any file there (see
// [Replace]).
func Create(path string, noSync bool) (*Log, error) {
	return Replace(path, noSync, nil)
}

// Replace atomically replaces the file at path with a new log holding the
// records fill adds to its batch (fill may be nil), and opens it for
// appending: temporary file, fsync, rename, directory fsync. A crash leaves
// the old file or the new one, never a log without its whole header; the
// new log has a new file id, so no record of the old one can validate in
// it.
func Replace(path string, noSync bool, fill func(*Batch) error) (*Log, error) {
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, fmt.Errorf("wal: file id: %w", err)
	}
	return replace(path, noSync, id, fill)
}

func replace(path string, noSync bool, id [8]byte, fill func(*Batch) error) (*Log, error) {
	l := &Log{path: path, seed: seedOf(id[:]), noSync: noSync}
	b := &Batch{seed: l.seed, base: 0, buf: logHeader(id), open: -1}
	if fill != nil {
		if err := fill(b); err != nil {
			return nil, err
		}
	}
	if err := writeAtomic(path, b.buf, noSync); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	l.f, l.size = f, int64(len(b.buf))
	return l, nil
}

// Batch returns the log's batch, emptied, for records to be written at the
// log's end by the next [Log.Write]. It is reused: take it again for each
// write.
func (l *Log) Batch() *Batch {
	l.batch.seed, l.batch.base, l.batch.buf, l.batch.open = l.seed, l.size, l.batch.buf[:0], -1
	return &l.batch
}

// Write appends b's records in one write(2).
func (l *Log) Write(b *Batch) error {
	if l.err != nil {
		return l.err
	}
	if l.sealed {
		return fmt.Errorf("wal: append to %s, which is sealed", l.path)
	}
	if b.open >= 0 {
		panic("wal: Write with a record begun and not ended")
	}
	if b.base != l.size || b.seed != l.seed {
		panic(fmt.Sprintf("wal: batch for offset %d written at %d", b.base, l.size))
	}
	if len(b.buf) == 0 {
		return nil
	}
	if _, err := l.f.WriteAt(b.buf, l.size); err != nil {
		l.err = fmt.Errorf("wal: append to %s: %w", l.path, err)
		return l.err
	}
	l.size += int64(len(b.buf))
	return nil
}

// Sync makes everything written durable (fdatasync: the records are data,
// and the size they change is metadata fdatasync flushes as well), unless
// the log was opened with noSync.
func (l *Log) Sync() error {
	if l.err != nil {
		return l.err
	}
	if l.noSync {
		return nil
	}
	if err := syscall.Fdatasync(int(l.f.Fd())); err != nil {
		l.err = fmt.Errorf("wal: fdatasync %s: %w", l.path, err)
		return l.err
	}
	return nil
}

// Seal ends the log for good: a seal record, synced. A reader then knows
// the log is whole ([ReadSealed]): a log cut at a record boundary reads as
// a valid shorter log, and only a missing seal tells that records after
// the cut, synced and acknowledged, were lost. A store seals a log before
// it starts the next, so the seal is durable before anything is written
// to the next.
func (l *Log) Seal() error {
	if l.err != nil {
		return l.err
	}
	if l.sealed {
		return nil
	}
	h := make([]byte, RecordHeaderSize)
	binary.LittleEndian.PutUint32(h[4:], crc32.Checksum(nil, table))
	binary.LittleEndian.PutUint32(h[8:], headerSum(sealSeed(l.seed), l.size, h))
	if _, err := l.f.WriteAt(h, l.size); err != nil {
		l.err = fmt.Errorf("wal: seal %s: %w", l.path, err)
		return l.err
	}
	l.size += RecordHeaderSize
	l.sealed = true
	return l.Sync()
}

// Sealed reports whether the log ends with its seal; appends to it fail.
func (l *Log) Sealed() bool { return l.sealed }

// Size is the log file's length: where the next record goes.
func (l *Log) Size() int64 { return l.size }

// Path is the log file's path.
func (l *Log) Path() string { return l.path }

// Close closes the file.
func (l *Log) Close() error { return l.f.Close() }

// Batch is records encoded for one write at a known offset of a log. Each
// record's header checksum covers its offset, so a batch is built for the
// offset it will be written at and may not be written anywhere else.
type Batch struct {
	seed uint32
	base int64 // file offset of buf[0]
	buf  []byte
	open int // start of the record being built, or -1
}

// Begin starts a record and returns the batch's buffer, to which the caller
// appends the record's body (append, MarshalAppend) and hands the result to
// End. Between Begin and End the batch may not be used otherwise.
func (b *Batch) Begin() []byte {
	if b.open >= 0 {
		panic("wal: Begin with a record already begun")
	}
	b.open = len(b.buf)
	return append(b.buf, make([]byte, RecordHeaderSize)...)
}

// End finishes the record Begin started: rec is Begin's buffer with the
// body appended.
func (b *Batch) End(rec []byte) {
	start := b.open
	if start < 0 || len(rec) < start+RecordHeaderSize {
		panic("wal: End without Begin")
	}
	body := rec[start+RecordHeaderSize:]
	if uint64(len(body)) > math.MaxUint32 {
		panic(fmt.Sprintf("wal: record of %d bytes", len(body)))
	}
	h := rec[start : start+RecordHeaderSize]
	binary.LittleEndian.PutUint32(h, uint32(len(body)))
	binary.LittleEndian.PutUint32(h[4:], crc32.Checksum(body, table))
	binary.LittleEndian.PutUint32(h[8:], headerSum(b.seed, b.base+int64(start), h))
	b.buf, b.open = rec, -1
}

// Add appends one record with the given body.
func (b *Batch) Add(body []byte) {
	b.End(append(b.Begin(), body...))
}

// Len is the number of bytes the batch will write.
func (b *Batch) Len() int { return len(b.buf) }

// SyncDir fsyncs a directory, making the entries created, renamed or
// removed in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("wal: fsync dir %s: %w", dir, err)
	}
	return nil
}

// writeAtomic replaces path with data: a temporary file beside it, fsync,
// rename over path, fsync of the directory. noSync skips both fsyncs.
func writeAtomic(path string, data []byte, noSync bool) error {
	if err := writeTemp(path+".tmp", noSync, data); err != nil {
		return err
	}
	return rename(path+".tmp", path, noSync)
}

// SyncEvery is how much of a large file is written before it is synced,
// the rest still to come. Written whole and synced once, a snapshot of
// hundreds of megabytes left that much dirty in the page cache, and a
// log's fdatasync, which waits for the file system's journal, waited
// behind its writeback: saves of a few entries took seconds at a 1 GB
// preload, and the nodes' neighbours suspected them. Synced in pieces, a
// log sync waits for a piece at most.
const SyncEvery = 8 << 20

// writeTemp writes head and then parts to tmp, fsynced (every SyncEvery
// bytes, and at the end) unless noSync.
func writeTemp(tmp string, noSync bool, head []byte, parts ...[]byte) error {
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	unsynced := 0
	for _, p := range append([][]byte{head}, parts...) {
		for len(p) > 0 {
			n := min(len(p), SyncEvery-unsynced)
			if _, err := f.Write(p[:n]); err != nil {
				f.Close()
				return fmt.Errorf("wal: write %s: %w", tmp, err)
			}
			p, unsynced = p[n:], unsynced+n
			if unsynced == SyncEvery && !noSync {
				if err := f.Sync(); err != nil {
					f.Close()
					return fmt.Errorf("wal: fsync %s: %w", tmp, err)
				}
				unsynced = 0
			}
		}
	}
	if !noSync {
		if err := f.Sync(); err != nil {
			f.Close()
			return fmt.Errorf("wal: fsync %s: %w", tmp, err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("wal: close %s: %w", tmp, err)
	}
	return nil
}
