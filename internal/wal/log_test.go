package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func bodies(n int) [][]byte {
	var out [][]byte
	for i := range n {
		out = append(out, fmt.Appendf(nil, "record %d %s", i, bytes.Repeat([]byte{byte('a' + i)}, i*7)))
	}
	return out
}

// writeLog creates a log at dir/log holding bs, one write and sync each,
// and returns its path and the offset of each record.
func writeLog(t *testing.T, bs [][]byte) (string, []int64) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "log")
	l, err := Create(path, false)
	require.NoError(t, err)
	var offs []int64
	for _, b := range bs {
		offs = append(offs, l.Size())
		batch := l.Batch()
		batch.Add(b)
		require.NoError(t, l.Write(batch))
		require.NoError(t, l.Sync())
	}
	require.NoError(t, l.Close())
	return path, offs
}

func recBodies(recs []Record) [][]byte {
	var out [][]byte
	for _, r := range recs {
		out = append(out, r.Body)
	}
	return out
}

func edit(t *testing.T, path string, f func([]byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, f(b), 0o644))
}

func size(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	require.NoError(t, err)
	return fi.Size()
}

func TestStorageLogRoundTrip(t *testing.T) {
	bs := bodies(5)
	path, offs := writeLog(t, bs)
	l, recs, err := Open(path, false)
	require.NoError(t, err)
	require.Equal(t, bs, recBodies(recs))
	for i, r := range recs {
		require.Equal(t, offs[i], r.Offset)
	}
	// Several records in one write, an empty body among them, continue
	// the log after a reopen.
	b := l.Batch()
	b.Add([]byte("x"))
	b.Add(nil)
	rec := b.Begin()
	rec = append(rec, "built in place"...)
	b.End(rec)
	require.NoError(t, l.Write(b))
	require.NoError(t, l.Sync())
	require.NoError(t, l.Close())
	_, recs, err = Open(path, false)
	require.NoError(t, err)
	require.Len(t, recs, 8)
	require.Equal(t, "x", string(recs[5].Body))
	require.Empty(t, recs[6].Body)
	require.Equal(t, "built in place", string(recs[7].Body))
}

func TestStorageLogOpenCreates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	l, recs, err := Open(path, false)
	require.NoError(t, err)
	require.Empty(t, recs)
	require.Equal(t, int64(LogHeaderSize), l.Size())
	require.NoError(t, l.Close())
	_, err = os.Stat(path + ".tmp")
	require.ErrorIs(t, err, os.ErrNotExist, "the temporary file was renamed into place")
}

// A crash mid-append: whatever part of the last write reached the disk is
// cut, and appends continue after the last whole record.
func TestStorageLogTornTailCut(t *testing.T) {
	bs := bodies(4)
	for _, tc := range []struct {
		name string
		tear func(b []byte, last int64) []byte
	}{
		{"short record", func(b []byte, last int64) []byte { return b[:len(b)-3] }},
		{"short header", func(b []byte, last int64) []byte { return b[:last+5] }},
		{"zeros", func(b []byte, last int64) []byte { clear(b[last:]); return b }},
		{"zeros past the end", func(b []byte, last int64) []byte { return append(b[:last], make([]byte, 300)...) }},
		{"garbage", func(b []byte, last int64) []byte {
			for i := last; i < int64(len(b)); i++ {
				b[i] = byte(i * 31)
			}
			return b
		}},
		{"flipped byte in the last record", func(b []byte, last int64) []byte { b[len(b)-2] ^= 0x10; return b }},
		{"flipped length of the last record", func(b []byte, last int64) []byte { b[last] ^= 0x01; return b }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, offs := writeLog(t, bs)
			last := offs[len(offs)-1]
			edit(t, path, func(b []byte) []byte { return tc.tear(b, last) })
			l, recs, err := Open(path, false)
			require.NoError(t, err)
			require.Equal(t, bs[:3], recBodies(recs))
			require.Equal(t, last, size(t, path), "the torn tail is cut off the file")
			b := l.Batch()
			b.Add([]byte("after the cut"))
			require.NoError(t, l.Write(b))
			require.NoError(t, l.Close())
			_, recs, err = Open(path, false)
			require.NoError(t, err)
			require.Equal(t, append(bs[:3:3], []byte("after the cut")), recBodies(recs))
		})
	}
}

// Damage followed by a valid record is not a torn write: the store refuses
// to start, naming the file and the offset of the damage.
func TestStorageLogDamageBeforeValidDataRefused(t *testing.T) {
	bs := bodies(7)
	for _, tc := range []struct {
		name   string
		at     int // record
		damage func(b []byte, off int64)
	}{
		{"flipped length bit", 3, func(b []byte, off int64) { b[off] ^= 0x04 }},
		{"overlong length", 3, func(b []byte, off int64) { binary.LittleEndian.PutUint32(b[off:], 1<<27) }},
		{"zeroed first header", 0, func(b []byte, off int64) { clear(b[off : off+RecordHeaderSize]) }},
		{"flipped body byte", 2, func(b []byte, off int64) { b[off+RecordHeaderSize+1] ^= 0xff }},
		{"flipped header checksum", 5, func(b []byte, off int64) { b[off+9] ^= 0x80 }},
		{"second to last", 5, func(b []byte, off int64) { b[off+RecordHeaderSize] ^= 1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, offs := writeLog(t, bs)
			before := size(t, path)
			edit(t, path, func(b []byte) []byte { tc.damage(b, offs[tc.at]); return b })
			_, _, err := Open(path, false)
			require.ErrorIs(t, err, ErrCorrupt)
			var ce *CorruptError
			require.True(t, errors.As(err, &ce))
			require.Equal(t, path, ce.File)
			require.Equal(t, offs[tc.at], ce.Offset)
			require.Equal(t, offs[tc.at+1], ce.Next)
			require.ErrorContains(t, err, fmt.Sprintf("%s: offset %d:", path, offs[tc.at]))
			require.Equal(t, before, size(t, path), "a refused log is left as it was")
		})
	}
}

// writeSealed is writeLog, then Seal.
func writeSealed(t *testing.T, bs [][]byte) (string, []int64) {
	t.Helper()
	path, offs := writeLog(t, bs)
	l, _, err := Open(path, false)
	require.NoError(t, err)
	require.NoError(t, l.Seal())
	require.True(t, l.Sealed())
	b := l.Batch()
	b.Add([]byte("late"))
	require.Error(t, l.Write(b), "a sealed log takes no more records")
	require.NoError(t, l.Close())
	return path, offs
}

// A sealed log (a segment older than the open one) was synced whole with
// its seal last: it has no torn tail to forgive, and a cut at a record
// boundary, which would read as a valid shorter log, is caught by the
// missing seal.
func TestStorageLogSealedRefusesTornTail(t *testing.T) {
	bs := bodies(3)
	path, offs := writeSealed(t, bs)
	recs, err := ReadSealed(path)
	require.NoError(t, err)
	require.Equal(t, bs, recBodies(recs))
	l, recs, err := Open(path, false)
	require.NoError(t, err)
	require.True(t, l.Sealed(), "a crash after the seal, before the next log")
	require.Equal(t, bs, recBodies(recs))
	require.NoError(t, l.Close())

	for _, tc := range []struct {
		name string
		cut  func([]byte) []byte
		at   int64
	}{
		{"seal cut", func(b []byte) []byte { return b[:len(b)-1] }, size(t, path) - RecordHeaderSize},
		{"last record cut", func(b []byte) []byte { return b[:len(b)-RecordHeaderSize-1] }, offs[2]},
		{"cut at a record boundary", func(b []byte) []byte { return b[:offs[2]] }, offs[2]},
		{"cut to the header", func(b []byte) []byte { return b[:LogHeaderSize] }, LogHeaderSize},
		{"data after the seal", func(b []byte) []byte { return append(b, 0) }, size(t, path)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, _ := writeSealed(t, bs)
			edit(t, path, tc.cut)
			_, err := ReadSealed(path)
			require.ErrorIs(t, err, ErrCorrupt)
			require.ErrorContains(t, err, fmt.Sprintf("%s: offset %d: ", path, tc.at))
		})
	}
}

func TestStorageLogBadHeaderRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func([]byte) []byte
	}{
		{"empty file", func(b []byte) []byte { return nil }},
		{"short header", func(b []byte) []byte { return b[:LogHeaderSize-1] }},
		{"zeroed header", func(b []byte) []byte { clear(b[:LogHeaderSize]); return b }},
		{"flipped magic", func(b []byte) []byte { b[3] ^= 0x20; return b }},
		{"flipped file id", func(b []byte) []byte { b[17] ^= 1; return b }},
		{"flipped header checksum", func(b []byte) []byte { b[30] ^= 1; return b }},
		{"an older format", func(b []byte) []byte {
			return []byte{5, 0, 0, 0, 1, 2, 3, 4, 'h', 'e', 'l', 'l', 'o'}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, _ := writeLog(t, bodies(2))
			edit(t, path, tc.damage)
			_, _, err := Open(path, false)
			require.ErrorIs(t, err, ErrCorrupt)
			require.ErrorContains(t, err, path+": offset ")
		})
	}
}

// Replace gives the new log a new file id, so a record of the old file
// found at the same offset (a block a crash exposed) cannot validate.
func TestStorageLogReplaceNewIdentity(t *testing.T) {
	path, offs := writeLog(t, bodies(3))
	old, err := os.ReadFile(path)
	require.NoError(t, err)
	l, err := Replace(path, false, func(b *Batch) error {
		b.Add([]byte("only"))
		return nil
	})
	require.NoError(t, err)
	require.NoError(t, l.Close())
	_, recs, err := Open(path, false)
	require.NoError(t, err)
	require.Equal(t, [][]byte{[]byte("only")}, recBodies(recs))

	// The new log with the old file's records from offs[1] on behind it.
	edit(t, path, func(b []byte) []byte { return append(b[:offs[1]], old[offs[1]:]...) })
	_, recs, err = Open(path, false)
	require.NoError(t, err, "the old records are garbage here: a torn tail")
	require.Len(t, recs, 1)
}

func TestStorageLogBatchMisuse(t *testing.T) {
	path, _ := writeLog(t, bodies(1))
	l, _, err := Open(path, false)
	require.NoError(t, err)
	defer l.Close()
	stale := Batch{seed: l.seed, base: l.Size() - 1, open: -1}
	stale.Add([]byte("x"))
	require.Panics(t, func() { _ = l.Write(&stale) }, "a batch encoded for another offset")
	b := l.Batch()
	b.Begin()
	require.Panics(t, func() { b.Begin() })
}

// A zeroed header never validates: a zero-filled tail scans as garbage.
func TestStorageLogZerosAreNoRecord(t *testing.T) {
	var id [8]byte
	data := append(logHeader(id), make([]byte, 4096)...)
	recs, good, sealed, err := Scan("z", data, true)
	require.NoError(t, err)
	require.False(t, sealed)
	require.Empty(t, recs)
	require.Equal(t, int64(LogHeaderSize), good)
}

func TestStorageFileChecksummed(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "snap")
	_, err := ReadFile(path)
	require.ErrorIs(t, err, os.ErrNotExist)

	body := []byte("w3-41 and the rest of the state")
	require.NoError(t, WriteFile(path, body, false))
	got, err := ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, body, got)

	good, err := os.ReadFile(path)
	require.NoError(t, err)
	for i := range good {
		b := bytes.Clone(good)
		b[i] ^= 0x10
		_, err := DecodeFile(path, b)
		require.ErrorIs(t, err, ErrCorrupt, "byte %d flipped", i)
		require.ErrorContains(t, err, path+": offset ")
	}
	for n := range len(good) {
		_, err := DecodeFile(path, good[:n])
		require.ErrorIs(t, err, ErrCorrupt, "cut to %d bytes", n)
	}
	_, err = DecodeFile(path, append(bytes.Clone(good), 0))
	require.ErrorIs(t, err, ErrCorrupt, "a byte too many")

	// Replaced atomically: no temporary file stays behind.
	require.NoError(t, WriteFile(path, []byte("next"), false))
	got, err = ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, "next", string(got))
	_, err = os.Stat(path + ".tmp")
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestStorageFilePreparedApart(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "snap")
	require.NoError(t, WriteFile(path, []byte("old"), false))

	// A file prepared off the loop, in parts, is not in place until
	// committed, and a replacement written meanwhile does not touch it.
	require.NoError(t, PrepareFile(path, false, []byte("pre"), nil, []byte("pared")))
	got, err := ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, "old", string(got))
	require.NoError(t, WriteFileParts(path, false, []byte("new"), []byte("er")))
	got, err = ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, "newer", string(got))
	require.NoError(t, CommitFile(path, false))
	got, err = ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, "prepared", string(got), "parts checksummed as one body")

	require.NoError(t, PrepareFile(path, false, []byte("dropped")))
	require.NoError(t, DiscardFile(path))
	require.NoError(t, DiscardFile(path), "nothing to discard is no error")
	require.Error(t, CommitFile(path, false), "nothing left to commit")
	got, err = ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, "prepared", string(got))
}

func TestStorageFileStreamedChecksummed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "snap")
	body := bytes.Repeat([]byte("0123456789"), 300<<10) // past the write buffer
	require.NoError(t, PrepareFileStream(path, false, int64(len(body)), func(w io.Writer) error {
		for b := body; len(b) > 0; b = b[min(len(b), 7777):] {
			if _, err := w.Write(b[:min(len(b), 7777)]); err != nil {
				return err
			}
		}
		return nil
	}))
	require.NoError(t, CommitFile(path, false))
	got, err := ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, body, got)

	err = PrepareFileStream(path, false, 10, func(w io.Writer) error {
		_, err := w.Write([]byte("short"))
		return err
	})
	require.ErrorContains(t, err, "the body was 5 bytes, not the 10 announced")
}

func TestStorageFileReaderChecksAtTheEnd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "snap")
	body := bytes.Repeat([]byte("abc"), 10000)
	require.NoError(t, WriteFile(path, body, true))
	r, err := OpenFileReader(path)
	require.NoError(t, err)
	require.Equal(t, int64(len(body)), r.Size())
	got, err := io.ReadAll(r)
	require.NoError(t, err)
	require.Equal(t, body, got)
	require.NoError(t, r.Close())

	good, err := os.ReadFile(path)
	require.NoError(t, err)
	bad := bytes.Clone(good)
	bad[FileHeaderSize+5] ^= 1
	require.NoError(t, os.WriteFile(path, bad, 0o644))
	r, err = OpenFileReader(path)
	require.NoError(t, err)
	_, err = io.ReadAll(r)
	require.ErrorIs(t, err, ErrCorrupt, "the body's checksum, at its end")
	require.NoError(t, r.Close())

	require.NoError(t, os.WriteFile(path, good[:len(good)-1], 0o644))
	_, err = OpenFileReader(path)
	require.ErrorIs(t, err, ErrCorrupt, "a file shorter than its header says")
	require.NoError(t, os.WriteFile(path, good[:10], 0o644))
	_, err = OpenFileReader(path)
	require.ErrorIs(t, err, ErrCorrupt, "no whole header")
}

// A file past SyncEvery is written and synced in pieces, whole and
// checksummed all the same, by either writer.
func TestStorageFileSyncedInPieces(t *testing.T) {
	path := filepath.Join(t.TempDir(), "snap")
	body := bytes.Repeat([]byte("0123456789abcdef"), (2*SyncEvery+12345)/16)
	require.NoError(t, WriteFileParts(path, false, body[:100], body[100:]))
	got, err := ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, body, got)

	require.NoError(t, PrepareFileStream(path, false, int64(len(body)), func(w io.Writer) error {
		_, err := w.Write(body)
		return err
	}))
	require.NoError(t, CommitFile(path, false))
	got, err = ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, body, got)
}
