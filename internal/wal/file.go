package wal

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
)

const (
	// FileHeaderSize is the size of a checksummed file's header: magic,
	// body length, CRC-32C of the body, CRC-32C of the preceding 28 bytes.
	FileHeaderSize = 32

	fileMagic = "CHAINRAFT-DAT 1\n"
)

// EncodeFile returns the contents of a checksummed file holding body.
func EncodeFile(body []byte) []byte {
	return append(encodeHeader([][]byte{body}), body...)
}

// DecodeFile verifies the contents of a checksummed file and returns its
// body. Such a file is only ever replaced whole by rename, so there is no
// torn state to forgive: any damage, truncation included, is a
// *CorruptError naming path and the offset of the field that failed.
func DecodeFile(path string, data []byte) ([]byte, error) {
	bad := func(off int64, format string, args ...any) error {
		return &CorruptError{File: path, Offset: off, Next: -1, Reason: fmt.Sprintf(format, args...)}
	}
	if len(data) < FileHeaderSize {
		return nil, bad(0, "%d bytes, shorter than the file header", len(data))
	}
	if string(data[:16]) != fileMagic {
		return nil, bad(0, "not a chainraft checksummed file of format 1 (magic %q)", data[:16])
	}
	if crc32.Checksum(data[:28], table) != binary.LittleEndian.Uint32(data[28:]) {
		return nil, bad(16, "file header checksum mismatch")
	}
	body := data[FileHeaderSize:]
	if n := binary.LittleEndian.Uint64(data[16:]); n != uint64(len(body)) {
		return nil, bad(FileHeaderSize, "body of %d bytes, the header says %d", len(body), n)
	}
	if crc32.Checksum(body, table) != binary.LittleEndian.Uint32(data[24:]) {
		return nil, bad(FileHeaderSize, "body checksum mismatch over %d bytes", len(body))
	}
	return body, nil
}

// WriteFile atomically replaces path with a checksummed file holding body:
// temporary file, fsync, rename, directory fsync (noSync skips the fsyncs).
// A crash leaves the old file or the new one.
func WriteFile(path string, body []byte, noSync bool) error {
	return WriteFileParts(path, noSync, body)
}

// WriteFileParts is WriteFile of a body given in parts, written one after
// another: a snapshot's gigabyte of data is never copied into one buffer
// with its framing.
func WriteFileParts(path string, noSync bool, parts ...[]byte) error {
	if err := writeTemp(path+".tmp", noSync, encodeHeader(parts), parts...); err != nil {
		return err
	}
	return rename(path+".tmp", path, noSync)
}

// PrepareFile writes the checksummed file WriteFileParts would, beside
// path (path+".next", apart from WriteFile's temporary file), fsynced,
// without putting it in place: the slow half of a replacement, which a
// node does off its loop while the loop may still replace path itself; the
// loop then commits it (CommitFile) or drops it (DiscardFile).
func PrepareFile(path string, noSync bool, parts ...[]byte) error {
	return writeTemp(path+".next", noSync, encodeHeader(parts), parts...)
}

// PrepareFileStream is PrepareFile of a body of size bytes that write
// produces: the body streams to the file as written, never held whole in
// memory, and the header, which carries its checksum, is written last.
// write must produce exactly size bytes.
func PrepareFileStream(path string, noSync bool, size int64, write func(io.Writer) error) error {
	tmp := path + ".next"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(FileHeaderSize, io.SeekStart); err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	w := &sumWriter{w: bufio.NewWriterSize(f, 1<<20), f: f, sync: !noSync}
	if err := write(w); err != nil {
		return err
	}
	if err := w.w.Flush(); err != nil {
		return fmt.Errorf("wal: write %s: %w", tmp, err)
	}
	if w.n != size {
		return fmt.Errorf("wal: %s: the body was %d bytes, not the %d announced", tmp, w.n, size)
	}
	if _, err := f.WriteAt(header(uint64(size), w.sum), 0); err != nil {
		return fmt.Errorf("wal: write %s: %w", tmp, err)
	}
	if !noSync {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("wal: fsync %s: %w", tmp, err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("wal: close %s: %w", tmp, err)
	}
	return nil
}

// sumWriter counts and checksums what passes through it, and syncs the
// file every SyncEvery bytes (see SyncEvery) when sync is set.
type sumWriter struct {
	w        *bufio.Writer
	f        *os.File
	sync     bool
	n        int64
	sum      uint32
	unsynced int
}

func (s *sumWriter) Write(p []byte) (int, error) {
	s.sum = crc32.Update(s.sum, table, p)
	s.n += int64(len(p))
	n, err := s.w.Write(p)
	if s.unsynced += n; err == nil && s.sync && s.unsynced >= SyncEvery {
		if err = s.w.Flush(); err == nil {
			err = s.f.Sync()
		}
		s.unsynced = 0
	}
	return n, err
}

// CommitFile puts the file PrepareFile wrote in place of path: rename,
// directory fsync. A crash leaves the old file or the new one.
func CommitFile(path string, noSync bool) error {
	return rename(path+".next", path, noSync)
}

func rename(from, to string, noSync bool) error {
	if err := os.Rename(from, to); err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	if noSync {
		return nil
	}
	return SyncDir(filepath.Dir(to))
}

// encodeHeader is the header of a checksummed file whose body is parts.
func encodeHeader(parts [][]byte) []byte {
	var size uint64
	var sum uint32
	for _, p := range parts {
		size += uint64(len(p))
		sum = crc32.Update(sum, table, p)
	}
	return header(size, sum)
}

// header is a checksummed file's header for a body of size bytes whose
// CRC-32C is sum.
func header(size uint64, sum uint32) []byte {
	head := make([]byte, FileHeaderSize)
	copy(head, fileMagic)
	binary.LittleEndian.PutUint64(head[16:], size)
	binary.LittleEndian.PutUint32(head[24:], sum)
	binary.LittleEndian.PutUint32(head[28:], crc32.Checksum(head[:28], table))
	return head
}

// DiscardFile removes a file PrepareFile wrote and nobody committed.
func DiscardFile(path string) error {
	if err := os.Remove(path + ".next"); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("wal: %w", err)
	}
	return nil
}

// ReadFile reads and verifies a file WriteFile wrote. A missing file is an
// error satisfying errors.Is(err, os.ErrNotExist).
func ReadFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return DecodeFile(path, data)
}

// FileReader reads a checksummed file's body in order without holding it
// whole: a gigabyte's snapshot goes to a peer piece by piece. The body's
// checksum is checked as its last byte is read, so a caller that holds
// back each piece until the next read (or the end) passes on nothing of a
// damaged file that the checksum would have refused.
type FileReader struct {
	f         *os.File
	path      string
	size, off int64
	want, sum uint32
}

// OpenFileReader opens path and checks its header and length.
func OpenFileReader(path string) (*FileReader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	r, err := newFileReader(f, path)
	if err != nil {
		f.Close()
		return nil, err
	}
	return r, nil
}

func newFileReader(f *os.File, path string) (*FileReader, error) {
	bad := func(off int64, format string, args ...any) error {
		return &CorruptError{File: path, Offset: off, Next: -1, Reason: fmt.Sprintf(format, args...)}
	}
	head := make([]byte, FileHeaderSize)
	if n, err := io.ReadFull(f, head); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, bad(0, "%d bytes, shorter than the file header", n)
		}
		return nil, fmt.Errorf("wal: read %s: %w", path, err)
	}
	if string(head[:16]) != fileMagic {
		return nil, bad(0, "not a chainraft checksummed file of format 1 (magic %q)", head[:16])
	}
	if crc32.Checksum(head[:28], table) != binary.LittleEndian.Uint32(head[28:]) {
		return nil, bad(16, "file header checksum mismatch")
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	size := int64(binary.LittleEndian.Uint64(head[16:]))
	if body := fi.Size() - FileHeaderSize; body != size {
		return nil, bad(FileHeaderSize, "body of %d bytes, the header says %d", body, size)
	}
	return &FileReader{f: f, path: path, size: size, want: binary.LittleEndian.Uint32(head[24:])}, nil
}

// Size is the body's length.
func (r *FileReader) Size() int64 { return r.size }

// Read reads the body on; at its end it returns io.EOF, or a
// *CorruptError if the body's checksum does not match.
func (r *FileReader) Read(p []byte) (int, error) {
	if r.off >= r.size {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.size-r.off)]
	n, err := r.f.Read(p)
	r.sum = crc32.Update(r.sum, table, p[:n])
	r.off += int64(n)
	if r.off == r.size && r.sum != r.want {
		return n, &CorruptError{File: r.path, Offset: FileHeaderSize, Next: -1,
			Reason: fmt.Sprintf("body checksum mismatch over %d bytes", r.size)}
	}
	if err == io.EOF && r.off < r.size {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// Close closes the file.
func (r *FileReader) Close() error { return r.f.Close() }
