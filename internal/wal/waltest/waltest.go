// Package waltest holds the test helpers the chain and raftkv storage tests
// share: both stores frame their files with internal/wal and promise the
// same thing of a damaged directory — the exact state before the damage,
// with only a torn tail of the log cut, or a refusal (the store's
// ErrCorrupt) naming the file and offset. The helpers damage a file the
// way a crash or a bad disk does and check a store's answer against that
// promise; what a store recovers is its own tests' business.
package waltest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/internal/wal"
)

// Flip XORs mask into the byte at off of the file at path (off < 0 counts
// from the end: -1 is the last byte) and returns the file's new contents.
func Flip(t testing.TB, path string, off int64, mask byte) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	if off < 0 {
		off += int64(len(b))
	}
	require.True(t, off >= 0 && off < int64(len(b)), "flip at %d outside %s (%d bytes)", off, path, len(b))
	b[off] ^= mask
	require.NoError(t, os.WriteFile(path, b, 0o644))
	return b
}

// RequireRefusedAt checks that err is the store's corrupt sentinel naming
// path and off, as wal.CorruptError words it.
func RequireRefusedAt(t testing.TB, err, corrupt error, path string, off int64, msgAndArgs ...any) {
	t.Helper()
	require.ErrorIs(t, err, corrupt, msgAndArgs...)
	require.ErrorContains(t, err, fmt.Sprintf("%s: offset %d: ", path, off), msgAndArgs...)
}

// RequireUnchanged checks that the file at path still holds want: a
// refused open cuts nothing.
func RequireUnchanged(t testing.TB, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, want, got, "nothing was cut")
}

// Extent is where one record of a pristine log file lies: [Start, End).
type Extent struct{ Start, End int }

// Damage is one fuzzed damage to one file: a flipped byte, a truncation,
// or both.
type Damage struct {
	Path       string
	Orig, Data []byte
}

// DamageFile damages the file at path as a fuzz input says: op bit 0 XORs
// mask into the byte at pos (modulo the size), op bit 1 truncates it to
// cut (modulo the size + 1).
func DamageFile(t testing.TB, path string, op uint8, pos uint32, mask uint8, cut uint32) Damage {
	t.Helper()
	orig, err := os.ReadFile(path)
	require.NoError(t, err)
	data := bytes.Clone(orig)
	if op&1 != 0 && len(data) > 0 {
		data[int(pos)%len(data)] ^= mask
	}
	if op&2 != 0 {
		data = data[:int(cut)%(len(data)+1)]
	}
	require.NoError(t, os.WriteFile(path, data, 0o644))
	return Damage{Path: path, Orig: orig, Data: data}
}

// Unchanged says whether the damage left the file as it was (a zero mask,
// a cut at the end).
func (d Damage) Unchanged() bool { return bytes.Equal(d.Data, d.Orig) }

// HeaderOK says whether the damage spared the log file header.
func (d Damage) HeaderOK() bool {
	return len(d.Data) >= wal.LogHeaderSize && bytes.Equal(d.Data[:wal.LogHeaderSize], d.Orig[:wal.LogHeaderSize])
}

// Intact says whether record r survived the damage byte for byte.
func (d Damage) Intact(r Extent) bool {
	return r.End <= len(d.Data) && bytes.Equal(d.Data[r.Start:r.End], d.Orig[r.Start:r.End])
}

// Cut reports, for the file's records in order, the first one the damage
// touched (len(recs) when none) and whether an intact record follows it:
// then the damage is not a torn tail, and no store may drop it silently.
func (d Damage) Cut(recs []Extent) (firstBad int, validAfter bool) {
	firstBad = len(recs)
	for i, r := range recs {
		if !d.Intact(r) {
			firstBad = i
			break
		}
	}
	for _, r := range recs[min(firstBad+1, len(recs)):] {
		validAfter = validAfter || d.Intact(r)
	}
	return firstBad, validAfter
}

// RequireRefusal checks a refused open against the torn-tail rule: the
// store's corrupt sentinel naming the file, never for an undamaged
// directory, and, where a cut was allowed (tailLog: the damage is in the
// log file a torn write can end, its header intact) and no intact record
// follows, never wal's proof of a record after the damage.
func (d Damage) RequireRefusal(t testing.TB, err, corrupt error, tailLog bool, recs []Extent) {
	t.Helper()
	require.True(t, errors.Is(err, corrupt), "%v", err)
	require.ErrorContains(t, err, d.Path+": offset ")
	require.False(t, d.Unchanged(), "an undamaged directory was refused: %v", err)
	_, validAfter := d.Cut(recs)
	if tailLog && d.HeaderOK() && !validAfter {
		var ce *wal.CorruptError
		require.True(t, errors.As(err, &ce), "a torn tail was refused: %v", err)
		require.False(t, slices.ContainsFunc(recs, func(r Extent) bool { return int64(r.Start) == ce.Next }), "a torn tail was refused: %v", err)
	}
}

// RequireAcceptable checks that an open that succeeded despite the damage
// had the right to: the damage, if any, was a torn tail of the log a
// write can end (tailLog), with its header intact and no intact record
// after it.
func (d Damage) RequireAcceptable(t testing.TB, tailLog bool, recs []Extent) {
	t.Helper()
	if d.Unchanged() {
		return
	}
	_, validAfter := d.Cut(recs)
	require.True(t, tailLog, "damage to %s was accepted", d.Path)
	require.True(t, d.HeaderOK(), "a damaged log header was accepted")
	require.False(t, validAfter, "records dropped with an intact one after them")
}
