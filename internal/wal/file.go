package wal

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
)

const (
	// FileHeaderSize is the size of a checksummed file's header: magic,
	// body length, CRC-32C of the body, CRC-32C of the preceding 28 bytes.
	FileHeaderSize = 32

	fileMagic = "CHAINRAFT-DAT 1\n"
)

// EncodeFile returns the contents of a checksummed file holding body.
func EncodeFile(body []byte) []byte {
	out := make([]byte, FileHeaderSize, FileHeaderSize+len(body))
	copy(out, fileMagic)
	binary.LittleEndian.PutUint64(out[16:], uint64(len(body)))
	binary.LittleEndian.PutUint32(out[24:], crc32.Checksum(body, table))
	binary.LittleEndian.PutUint32(out[28:], crc32.Checksum(out[:28], table))
	return append(out, body...)
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
	return writeAtomic(path, EncodeFile(body), noSync)
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
