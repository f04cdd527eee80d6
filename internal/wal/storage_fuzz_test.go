package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// fuzzLog builds a log image in memory from spec: each record is a length
// byte (mod 48) and that many body bytes, at most 16 records, then a seal
// if seal is set. It returns the image, the bodies, and the extent of each
// record, the seal's last.
func fuzzLog(spec []byte, seal bool) (data []byte, bodies [][]byte, starts, ends []int) {
	id := [8]byte{'f', 'u', 'z', 'z', 1, 2, 3, 4}
	b := &Batch{seed: seedOf(id[:]), buf: logHeader(id), open: -1}
	for len(spec) > 0 && len(bodies) < 16 {
		n := min(int(spec[0])%48, len(spec)-1)
		body := spec[1 : 1+n]
		spec = spec[1+n:]
		starts = append(starts, b.Len())
		b.Add(body)
		ends = append(ends, b.Len())
		bodies = append(bodies, body)
	}
	if seal {
		h := make([]byte, RecordHeaderSize)
		binary.LittleEndian.PutUint32(h[4:], crc32.Checksum(nil, table))
		binary.LittleEndian.PutUint32(h[8:], headerSum(sealSeed(b.seed), int64(b.Len()), h))
		starts = append(starts, b.Len())
		b.buf = append(b.buf, h...)
		ends = append(ends, b.Len())
	}
	return b.buf, bodies, starts, ends
}

// FuzzStorageScan damages a log of synced records, sealed or not — one
// flipped byte, a truncation, or both — and checks the reader against the
// promise: the exact prefix of records before the damage, or a refusal;
// never a silent loss of a record that has a valid record (or the seal)
// after it, and a sealed log reads as sealed only if it is whole.
func FuzzStorageScan(f *testing.F) {
	f.Add([]byte("\x03abc\x05hello\x00\x02xy"), uint8(1), uint32(40), uint8(0x01), uint32(0))
	f.Add([]byte("\x03abc\x05hello\x00\x02xy"), uint8(2), uint32(0), uint8(0), uint32(60))
	f.Add([]byte("\x03abc\x05hello\x00\x02xy"), uint8(6), uint32(0), uint8(0), uint32(81))
	f.Fuzz(func(t *testing.T, spec []byte, op uint8, pos uint32, mask uint8, cut uint32) {
		orig, bodies, starts, ends := fuzzLog(spec, op&4 != 0)
		data := bytes.Clone(orig)
		if op&1 != 0 {
			data[int(pos)%len(data)] ^= mask
		}
		if op&2 != 0 {
			data = data[:int(cut)%(len(data)+1)]
		}
		intact := func(i int) bool {
			return ends[i] <= len(data) && bytes.Equal(data[starts[i]:ends[i]], orig[starts[i]:ends[i]])
		}
		firstBad := len(starts)
		for i := range starts {
			if !intact(i) {
				firstBad = i
				break
			}
		}
		validAfter := false // an intact record (or seal) after a damaged one
		for i := firstBad + 1; i < len(starts); i++ {
			validAfter = validAfter || intact(i)
		}
		headerOK := len(data) >= LogHeaderSize && bytes.Equal(data[:LogHeaderSize], orig[:LogHeaderSize])
		unchanged := bytes.Equal(data, orig)

		for _, torn := range []bool{true, false} {
			recs, good, sealed, err := Scan("log", data, torn)
			switch {
			case err == nil:
				require.True(t, headerOK, "a damaged header was accepted")
				require.False(t, validAfter, "records %d.. dropped, and an intact one follows", firstBad)
				require.Len(t, recs, min(firstBad, len(bodies)), "not the exact prefix before the damage")
				for i, r := range recs {
					require.Equal(t, int64(starts[i]), r.Offset)
					require.Equal(t, bodies[i], r.Body)
				}
				if firstBad > 0 {
					require.Equal(t, int64(ends[firstBad-1]), good)
				}
				if !torn {
					require.Equal(t, int64(len(data)), good, "a sealed log was cut")
				}
				require.Equal(t, op&4 != 0 && unchanged, sealed, "sealed, yet not whole")
			default:
				require.True(t, errors.Is(err, ErrCorrupt), "%v", err)
				var ce *CorruptError
				require.True(t, errors.As(err, &ce))
				require.Equal(t, "log", ce.File)
				require.False(t, unchanged, "an undamaged log was refused: %v", err)
				if torn && headerOK && !validAfter {
					// Damage only at the tail is a torn write, unless a
					// valid record appeared where none was written (a
					// forged frame in a body): refusing that is safe.
					require.GreaterOrEqual(t, ce.Next, int64(0), "a torn tail was refused: %v", err)
					require.False(t, slices.Contains(starts, int(ce.Next)), "%v", err)
				}
			}
		}
	})
}

// FuzzStorageFile damages a checksummed file: anything but the exact bytes
// written is refused.
func FuzzStorageFile(f *testing.F) {
	f.Add([]byte("w3-41"), uint8(1), uint32(35), uint8(0x0c), uint32(0))
	f.Add([]byte(""), uint8(2), uint32(0), uint8(0), uint32(31))
	f.Fuzz(func(t *testing.T, body []byte, op uint8, pos uint32, mask uint8, cut uint32) {
		orig := EncodeFile(body)
		data := bytes.Clone(orig)
		if op&1 != 0 {
			data[int(pos)%len(data)] ^= mask
		}
		if op&2 != 0 {
			data = data[:int(cut)%(len(data)+1)]
		}
		got, err := DecodeFile("snap", data)
		if bytes.Equal(data, orig) {
			require.NoError(t, err)
			require.Equal(t, body, got)
			return
		}
		require.ErrorIs(t, err, ErrCorrupt)
		require.ErrorContains(t, err, "snap: offset ")
	})
}
