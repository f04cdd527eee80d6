package histories

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"unsafe"
)

// opStore is a history split by key as it is read, in a compact encoding
// (see appendRecord): a few bytes of varints per operation plus its
// value, expect and output bytes, with node and error texts interned. Each
// key's records go to its own growing buffer; when the buffers together
// pass spillLimit, they are appended to one unlinked temporary file as
// chunks and emptied, so memory stays bounded however long the history
// is. load gives a key's operations back, in the order added.
type opStore struct {
	keys  []storedKey
	byKey map[string]int
	strs  []string // interned node and error texts
	strIx map[string]int
	mem   int // bytes held in the keys' buffers
	ops   int // operations added, including those not kept

	spill    *os.File // nil until the first spill
	spillEnd int64
	tempDir  string
}

type storedKey struct {
	key    string
	n      int     // operations kept
	chunks []chunk // spilled records, in order
	buf    []byte  // records not yet spilled
}

type chunk struct{ off, n int64 }

// spillLimit is how many bytes of records the store holds in memory before
// spilling them to its file. A variable so tests can force spills.
var spillLimit = 64 << 20

// maxInterned caps the interned node and error texts: nodes are few, but
// error texts may all differ, and those are kept inline instead.
var maxInterned = 1 << 16

func newOpStore(tempDir string) *opStore {
	return &opStore{byKey: map[string]int{}, strIx: map[string]int{}, tempDir: tempDir}
}

// Record flags: the kind in bits 0–1, the outcome in bits 2–3.
const (
	recFound     = 1 << 4
	recSwapped   = 1 << 5
	recHasReturn = 1 << 6
)

var kindCode = map[Kind]byte{Get: 0, Put: 1, Append: 2, CAS: 3}
var codeKind = [4]Kind{Get, Put, Append, CAS}
var codeOutcome = [3]Outcome{OK, Fail, Info}

// add records one validated operation. Fail operations and unknown reads
// are counted and their key listed, but not kept: the checker drops them
// (doc.go, "Checking rules").
func (s *opStore) add(op Operation) error {
	s.ops++
	i, ok := s.byKey[op.Key]
	if !ok {
		i = len(s.keys)
		s.byKey[op.Key] = i
		s.keys = append(s.keys, storedKey{key: op.Key})
	}
	if op.Outcome == Fail || (op.Outcome == Info && op.Op == Get) {
		return nil
	}
	k := &s.keys[i]
	n := len(k.buf)
	k.buf = s.appendRecord(k.buf, op)
	k.n++
	s.mem += len(k.buf) - n
	if s.mem > spillLimit {
		return s.spillAll()
	}
	return nil
}

// appendRecord encodes op: flags, client, call, return − call (when there
// is a return), then value (not on a get), expect (cas), output (a get
// that found the key), node and error. Returns are never before calls in a
// validated history, so the difference is a small unsigned varint.
func (s *opStore) appendRecord(b []byte, op Operation) []byte {
	flags := kindCode[op.Op]
	switch op.Outcome {
	case Fail:
		flags |= 1 << 2
	case Info:
		flags |= 2 << 2
	}
	hasRet := op.Outcome != Info || op.Return != 0
	if hasRet {
		flags |= recHasReturn
	}
	if op.Found {
		flags |= recFound
	}
	if op.Swapped {
		flags |= recSwapped
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, uint64(op.Client))
	b = binary.AppendUvarint(b, uint64(op.Call))
	if hasRet {
		b = binary.AppendUvarint(b, uint64(op.Return-op.Call))
	}
	if op.Op != Get {
		b = appendBytes(b, op.Value)
	}
	if op.Op == CAS {
		b = appendBytes(b, op.Expect)
	}
	if op.Op == Get && op.Found {
		b = appendBytes(b, op.Output)
	}
	b = s.appendText(b, op.Node)
	return s.appendText(b, op.Error)
}

func appendBytes(b []byte, v string) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// appendText writes an interned text as 2i+1, an inline one as 2·len
// followed by its bytes ("" is 0).
func (s *opStore) appendText(b []byte, t string) []byte {
	if t == "" {
		return append(b, 0)
	}
	i, ok := s.strIx[t]
	if !ok && len(s.strs) < maxInterned {
		i, ok = len(s.strs), true
		s.strs = append(s.strs, t)
		s.strIx[t] = i
	}
	if ok {
		return binary.AppendUvarint(b, uint64(2*i+1))
	}
	b = binary.AppendUvarint(b, uint64(2*len(t)))
	return append(b, t...)
}

// spillAll moves every key's buffered records to the spill file.
func (s *opStore) spillAll() error {
	if s.spill == nil {
		f, err := os.CreateTemp(s.tempDir, "chainraft-check-*.spill")
		if err != nil {
			return fmt.Errorf("histories: spill file: %w", err)
		}
		// Unlinked at once: the file lives while it is open, and a killed
		// checker leaves nothing behind.
		if err := os.Remove(f.Name()); err != nil {
			f.Close()
			return fmt.Errorf("histories: spill file: %w", err)
		}
		s.spill = f
	}
	for i := range s.keys {
		k := &s.keys[i]
		if len(k.buf) == 0 {
			continue
		}
		if _, err := s.spill.WriteAt(k.buf, s.spillEnd); err != nil {
			return fmt.Errorf("histories: spill file: %w", err)
		}
		k.chunks = append(k.chunks, chunk{s.spillEnd, int64(len(k.buf))})
		s.spillEnd += int64(len(k.buf))
		k.buf = nil // released: a key written once need not keep its capacity
	}
	s.mem = 0
	return nil
}

// load decodes key i's operations, in the order they were added. Their
// value, expect and output strings share one allocation, the key's data.
func (s *opStore) load(i int) ([]Operation, error) {
	k := &s.keys[i]
	size := len(k.buf)
	for _, c := range k.chunks {
		size += int(c.n)
	}
	data := make([]byte, 0, size)
	for _, c := range k.chunks {
		n := len(data)
		data = data[:n+int(c.n)]
		if _, err := s.spill.ReadAt(data[n:], c.off); err != nil {
			return nil, fmt.Errorf("histories: spill file: %w", err)
		}
	}
	data = append(data, k.buf...)
	str := unsafe.String(unsafe.SliceData(data), len(data)) // data is never written again
	ops := make([]Operation, 0, k.n)
	d := recordReader{s: str, strs: s.strs}
	for d.i < len(str) {
		op, err := d.next()
		if err != nil {
			return nil, err
		}
		op.Key = k.key
		ops = append(ops, op)
	}
	if len(ops) != k.n {
		return nil, fmt.Errorf("histories: key %q: %d records, want %d", k.key, len(ops), k.n)
	}
	return ops, nil
}

// release drops key i's records once it is checked.
func (s *opStore) release(i int) {
	k := &s.keys[i]
	s.mem -= len(k.buf)
	k.buf, k.chunks = nil, nil
}

// close removes the spill file (already unlinked: closing frees it).
func (s *opStore) close() {
	if s.spill != nil {
		s.spill.Close()
		s.spill = nil
	}
}

var errRecord = errors.New("histories: corrupt record in the check's store")

// recordReader decodes appendRecord's encoding from one key's data.
type recordReader struct {
	s    string
	i    int
	strs []string
}

func (d *recordReader) uvarint() (uint64, error) {
	var x uint64
	for shift := 0; shift < 64; shift += 7 {
		if d.i >= len(d.s) {
			return 0, errRecord
		}
		c := d.s[d.i]
		d.i++
		x |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return x, nil
		}
	}
	return 0, errRecord
}

func (d *recordReader) bytes() (string, error) {
	n, err := d.uvarint()
	if err != nil || uint64(len(d.s)-d.i) < n {
		return "", errRecord
	}
	v := d.s[d.i : d.i+int(n)]
	d.i += int(n)
	return v, nil
}

func (d *recordReader) text() (string, error) {
	x, err := d.uvarint()
	switch {
	case err != nil:
		return "", err
	case x == 0:
		return "", nil
	case x%2 == 1:
		if x/2 >= uint64(len(d.strs)) {
			return "", errRecord
		}
		return d.strs[x/2], nil
	}
	n := x / 2
	if uint64(len(d.s)-d.i) < n {
		return "", errRecord
	}
	v := d.s[d.i : d.i+int(n)]
	d.i += int(n)
	return v, nil
}

func (d *recordReader) next() (Operation, error) {
	var op Operation
	flags := d.s[d.i]
	d.i++
	if flags>>2&3 == 3 {
		return op, errRecord
	}
	op.Op, op.Outcome = codeKind[flags&3], codeOutcome[flags>>2&3]
	op.Found, op.Swapped = flags&recFound != 0, flags&recSwapped != 0
	c, err := d.uvarint()
	if err != nil {
		return op, err
	}
	call, err := d.uvarint()
	if err != nil {
		return op, err
	}
	op.Client, op.Call = int(c), int64(call)
	if flags&recHasReturn != 0 {
		dr, err := d.uvarint()
		if err != nil {
			return op, err
		}
		op.Return = op.Call + int64(dr)
	}
	if op.Op != Get {
		if op.Value, err = d.bytes(); err != nil {
			return op, err
		}
	}
	if op.Op == CAS {
		if op.Expect, err = d.bytes(); err != nil {
			return op, err
		}
	}
	if op.Op == Get && op.Found {
		if op.Output, err = d.bytes(); err != nil {
			return op, err
		}
	}
	if op.Node, err = d.text(); err != nil {
		return op, err
	}
	op.Error, err = d.text()
	return op, err
}
