package histories

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// InputError is a history that cannot be checked: a malformed or
// inconsistent line. It names the place so a person can open the file there.
type InputError struct {
	File string // the file name given to the reader; "" for operations in memory
	Line int    // 1-based line (for operations in memory: 1-based index)
	Msg  string
}

func (e *InputError) Error() string {
	if e.File == "" {
		return fmt.Sprintf("operation %d: %s", e.Line, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

// maxLine bounds one history line so that a corrupt file (a missing newline
// in gigabytes of garbage) fails with a line number instead of eating memory.
// It is far above any value the workload writes (at most 256 KiB), but a
// get of a key appended to all night reads a value that keeps growing: the
// writers refuse a line over it (ErrLineTooLong) rather than write one the
// reader would refuse.
const maxLine = 64 << 20

// ErrLineTooLong: an operation whose line the reader would refuse.
var ErrLineTooLong = fmt.Errorf("histories: an operation's line is longer than %d bytes", maxLine)

// Writer writes operations as JSON Lines. It encodes by hand: the history
// of a long run is hundreds of thousands of lines and encoding/json's
// reflection made writing a noticeable part of recording; the encoding is
// checked against encoding/json by the tests.
type Writer struct {
	w   *bufio.Writer
	buf []byte
	err error
}

// NewWriter buffers w; call Flush when done.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: bufio.NewWriterSize(w, 64<<10), buf: make([]byte, 0, 256)}
}

// Write appends one line. An info operation's Return is written only when
// it is non-zero (in memory, Return 0 on an info operation means "none"); every
// other operation always gets its return, even 0.
func (w *Writer) Write(op Operation) error {
	if w.err != nil {
		return w.err
	}
	w.buf = appendLine(w.buf[:0], op)
	if len(w.buf) > maxLine {
		w.err = fmt.Errorf("%w: %s of key %.40q", ErrLineTooLong, op.Op, op.Key)
		return w.err
	}
	if _, err := w.w.Write(w.buf); err != nil {
		w.err = fmt.Errorf("histories: write: %w", err)
	}
	return w.err
}

// appendLine appends op's line, newline included, to b.
func appendLine(b []byte, op Operation) []byte {
	b = append(b, `{"client":`...)
	b = strconv.AppendInt(b, int64(op.Client), 10)
	b = append(b, `,"op":`...)
	b = appendJSONString(b, string(op.Op))
	b = append(b, `,"key":`...)
	b = appendData(b, op.Key)
	if op.Value != "" {
		b = append(b, `,"value":`...)
		b = appendData(b, op.Value)
	}
	if op.Expect != "" {
		b = append(b, `,"expect":`...)
		b = appendData(b, op.Expect)
	}
	b = append(b, `,"call":`...)
	b = strconv.AppendInt(b, op.Call, 10)
	if op.Outcome != Info && op.Outcome != Invoke || op.Return != 0 {
		b = append(b, `,"return":`...)
		b = strconv.AppendInt(b, op.Return, 10)
	}
	b = append(b, `,"outcome":`...)
	b = appendJSONString(b, string(op.Outcome))
	if op.Found {
		b = append(b, `,"found":true`...)
	}
	if op.Output != "" {
		b = append(b, `,"output":`...)
		b = appendData(b, op.Output)
	}
	if op.Swapped {
		b = append(b, `,"swapped":true`...)
	}
	if op.Node != "" {
		b = append(b, `,"node":`...)
		b = appendJSONString(b, op.Node)
	}
	if op.Error != "" {
		b = append(b, `,"error":`...)
		b = appendJSONString(b, op.Error)
	}
	return append(b, '}', '\n')
}

// WriteInvoke writes the invoke line of op, an operation just called (see
// doc.go, "Streaming"): outcome "invoke", no return, no result fields. The
// operation's completed line, written later, replaces it when read back.
func (w *Writer) WriteInvoke(op Operation) error {
	return w.Write(invokeOf(op))
}

func invokeOf(op Operation) Operation {
	op.Outcome, op.Return = Invoke, 0
	op.Found, op.Output, op.Swapped, op.Node, op.Error = false, "", false, "", ""
	return op
}

// Flush writes buffered lines through.
func (w *Writer) Flush() error {
	if w.err != nil {
		return w.err
	}
	if err := w.w.Flush(); err != nil {
		w.err = fmt.Errorf("histories: flush: %w", err)
	}
	return w.err
}

const hexDigits = "0123456789abcdef"

// appendData appends a key or a value exactly: as a JSON string when it is
// valid UTF-8, else as {"b64":"<standard base64 of the bytes>"}. A JSON
// string cannot hold arbitrary bytes, and replacing them with U+FFFD would
// merge two different keys (or values) into one, which the checker would
// then judge wrongly.
func appendData(b []byte, s string) []byte {
	if utf8.ValidString(s) {
		return appendJSONString(b, s)
	}
	b = append(b, `{"b64":"`...)
	b = base64.StdEncoding.AppendEncode(b, []byte(s))
	return append(b, `"}`...)
}

// data is a key or value as read: a JSON string, or {"b64": ...} for bytes
// that are not valid UTF-8 (appendData).
type data string

// UnmarshalJSON implements json.Unmarshaler.
func (d *data) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '{' {
		var v struct {
			B64 *string `json:"b64"`
		}
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		if v.B64 == nil {
			return errors.New(`an object where a string belongs must be {"b64": "..."}`)
		}
		raw, err := base64.StdEncoding.DecodeString(*v.B64)
		if err != nil {
			return fmt.Errorf("b64: %w", err)
		}
		*d = data(raw)
		return nil
	}
	var str string
	if err := json.Unmarshal(b, &str); err != nil {
		return err
	}
	*d = data(str)
	return nil
}

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD,
// as encoding/json does, so every line the Writer emits parses; keys and
// values go through appendData instead, which keeps their bytes.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// line is one history line as decoded: pointers tell a missing field from a
// zero value, which the format needs (a missing return is an error unless the
// outcome is info; a missing value is the empty string).
type line struct {
	Client  *int     `json:"client"`
	Op      *string  `json:"op"`
	Key     *data    `json:"key"`
	Value   *data    `json:"value"`
	Expect  *data    `json:"expect"`
	Call    *int64   `json:"call"`
	Return  *int64   `json:"return"`
	Outcome *string  `json:"outcome"`
	Found   *bool    `json:"found"`
	Output  *data    `json:"output"`
	Swapped *bool    `json:"swapped"`
	Node    *string  `json:"node"`
	Error   *string  `json:"error"`
	_       struct{} // keyed literals only
}

// Reader reads a history line by line, validating as it goes: every line
// on its own, and across lines that no client has two operations at once.
type Reader struct {
	r      *bufio.Reader
	name   string
	lineNo int
	check  clientCheck
	err    error // sticky: after an error Next keeps returning it
	// invoked holds the invoke lines not yet completed, by client and
	// call: as many as operations were in flight together. At the end of
	// the file the rest come out as unknown operations (in line order).
	invoked map[invokeKey]invokeLine
	tail    []invokeLine // the uncompleted invoke lines, once the file ended
	// unterminated: the line just read ended the file without a newline.
	unterminated bool
	// Torn is set when the file's last line had no newline and did not
	// parse: a write cut short by a kill, ignored (see doc.go, "Streaming").
	Torn bool
	strs map[string]string // see intern
}

// invokeKey names an operation across its invoke and completed lines.
type invokeKey struct {
	client int
	call   int64
}

type invokeLine struct {
	op   Operation
	line int
}

// malformed starts the message of a line that is not JSON.
const malformed = "malformed JSON: "

// NoCompletionError is the error text of an operation whose invoke line
// has no completed line: the recorder stopped (was killed) while it was in
// flight, so it is unknown.
const NoCompletionError = "no completion recorded: in flight when the recording stopped"

// NewReader reads JSON Lines from r; name is used in errors (a file path).
func NewReader(r io.Reader, name string) *Reader {
	return &Reader{r: bufio.NewReaderSize(r, 64<<10), name: name, check: clientCheck{byClient: map[int][]span{}}}
}

// Next returns the next operation, io.EOF after the last one, or an
// *InputError. Blank lines are skipped.
func (r *Reader) Next() (Operation, error) {
	if r.err != nil {
		return Operation{}, r.err
	}
	for {
		if r.tail != nil {
			return r.nextUncompleted()
		}
		raw, err := r.readLine()
		if err == io.EOF && len(r.invoked) > 0 {
			r.tail = make([]invokeLine, 0, len(r.invoked))
			for _, il := range r.invoked {
				r.tail = append(r.tail, il)
			}
			r.invoked = nil
			slices.SortFunc(r.tail, func(a, b invokeLine) int { return a.line - b.line })
			continue
		}
		if err != nil {
			r.err = err
			return Operation{}, err
		}
		raw = bytes.TrimSpace(raw)
		if len(raw) == 0 {
			continue
		}
		op, msg := decodeLineFast(raw, r.intern)
		if r.unterminated && strings.HasPrefix(msg, malformed) {
			// A torn last line: the recorder was killed inside a
			// write. Every line before it is whole, and nothing after
			// it was written.
			r.Torn = true
			continue
		}
		if msg == "" && op.Outcome == Invoke {
			if msg = r.invoke(op); msg == "" {
				continue
			}
		}
		if msg == "" {
			msg = validate(op, op.Outcome != Info || op.Return != 0)
		}
		if msg == "" && len(r.invoked) > 0 {
			msg = r.complete(op)
		}
		if msg == "" {
			msg = r.check.add(op, r.lineNo)
		}
		if msg == needFullCheck {
			r.err = errNeedFullCheck
			return Operation{}, r.err
		}
		if msg != "" {
			r.err = &InputError{File: r.name, Line: r.lineNo, Msg: msg}
			return Operation{}, r.err
		}
		return op, nil
	}
}

// intern shares the texts that repeat from line to line (keys, nodes,
// error texts), so a long history does not hold a copy of each per line.
func (r *Reader) intern(b []byte) string {
	if s, ok := r.strs[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(b) <= 256 && len(r.strs) < 1<<14 {
		if r.strs == nil {
			r.strs = map[string]string{}
		}
		r.strs[s] = s
	}
	return s
}

// invoke holds an invoke line until its completion.
func (r *Reader) invoke(op Operation) string {
	op.Outcome = Info
	if msg := validate(op, false); msg != "" {
		return msg
	}
	k := invokeKey{op.Client, op.Call}
	if r.invoked == nil {
		r.invoked = map[invokeKey]invokeLine{}
	}
	if prev, dup := r.invoked[k]; dup {
		return fmt.Sprintf("client %d invoked twice at call %d (line %d)", op.Client, op.Call, prev.line)
	}
	op.Error = NoCompletionError
	r.invoked[k] = invokeLine{op: op, line: r.lineNo}
	return ""
}

// complete retires the invoke line op completes, if any; the completion
// must be the same operation.
func (r *Reader) complete(op Operation) string {
	k := invokeKey{op.Client, op.Call}
	il, ok := r.invoked[k]
	if !ok {
		return ""
	}
	if il.op.Op != op.Op || il.op.Key != op.Key || il.op.Value != op.Value || il.op.Expect != op.Expect {
		return fmt.Sprintf("completes the invoke line %d (client %d, call %d) with another operation", il.line, op.Client, op.Call)
	}
	delete(r.invoked, k)
	return ""
}

// nextUncompleted returns the invoke lines left without completion, as
// unknown operations that never returned.
func (r *Reader) nextUncompleted() (Operation, error) {
	if len(r.tail) == 0 {
		r.err = io.EOF
		return Operation{}, io.EOF
	}
	il := r.tail[0]
	r.tail = r.tail[1:]
	if msg := r.check.add(il.op, il.line); msg == needFullCheck {
		r.err = errNeedFullCheck
		return Operation{}, r.err
	} else if msg != "" {
		r.err = &InputError{File: r.name, Line: il.line, Msg: msg}
		return Operation{}, r.err
	}
	return il.op, nil
}

func (r *Reader) readLine() ([]byte, error) {
	var acc []byte
	for {
		chunk, err := r.r.ReadSlice('\n')
		if len(acc)+len(chunk) > maxLine {
			return nil, &InputError{File: r.name, Line: r.lineNo + 1, Msg: fmt.Sprintf("line longer than %d bytes", maxLine)}
		}
		switch {
		case err == nil:
			r.lineNo++
			if acc == nil {
				return chunk, nil
			}
			return append(acc, chunk...), nil
		case errors.Is(err, bufio.ErrBufferFull):
			acc = append(acc, chunk...)
		case err == io.EOF:
			if len(acc)+len(chunk) == 0 {
				return nil, io.EOF
			}
			r.lineNo++
			r.unterminated = true
			return append(acc, chunk...), nil
		default:
			return nil, fmt.Errorf("histories: reading %s: %w", r.name, err)
		}
	}
}

// decodeLine parses one line; a non-empty message is the reason it is not an
// operation. Unknown fields are ignored, deliberately: a newer recorder may
// add fields (a request sequence, a retry count) that an older checker need
// not understand. Fields the checker does use are validated strictly.
func decodeLine(raw []byte) (Operation, string) {
	var l line
	if err := json.Unmarshal(raw, &l); err != nil {
		return Operation{}, malformed + err.Error()
	}
	return finishLine(&l)
}

// decodeLineFast is decodeLine through fastLine when the line is plain.
func decodeLineFast(raw []byte, intern func([]byte) string) (Operation, string) {
	var l line
	var vals fastVals
	if fastLine(raw, &l, &vals, intern) {
		return finishLine(&l)
	}
	return decodeLine(raw)
}

// finishLine checks what a line's fields say together and makes the
// operation.
func finishLine(l *line) (Operation, string) {
	switch {
	case l.Client == nil:
		return Operation{}, `missing required field "client"`
	case l.Op == nil:
		return Operation{}, `missing required field "op"`
	case l.Key == nil:
		return Operation{}, `missing required field "key"`
	case l.Call == nil:
		return Operation{}, `missing required field "call"`
	case l.Outcome == nil:
		return Operation{}, `missing required field "outcome"`
	}
	op := Operation{
		Client:  *l.Client,
		Op:      Kind(*l.Op),
		Key:     string(*l.Key),
		Call:    *l.Call,
		Outcome: Outcome(*l.Outcome),
	}
	if l.Return == nil && (op.Outcome == OK || op.Outcome == Fail) {
		return Operation{}, fmt.Sprintf(`missing required field "return" (outcome %q)`, op.Outcome)
	}
	if l.Return != nil && op.Outcome == Invoke {
		return Operation{}, `"return" on an invoke line`
	}
	if op.Outcome == Invoke && (l.Found != nil || l.Output != nil || l.Swapped != nil) {
		return Operation{}, "result fields on an invoke line"
	}
	if l.Return != nil {
		op.Return = *l.Return
		if op.Outcome == Info && op.Return == 0 && op.Call != 0 {
			return Operation{}, fmt.Sprintf("return %d before call %d", op.Return, op.Call)
		}
	}
	str := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	bytes := func(p *data) string {
		if p == nil {
			return ""
		}
		return string(*p)
	}
	op.Value, op.Expect, op.Output = bytes(l.Value), bytes(l.Expect), bytes(l.Output)
	op.Node, op.Error = str(l.Node), str(l.Error)
	op.Found = l.Found != nil && *l.Found
	op.Swapped = l.Swapped != nil && *l.Swapped
	return op, ""
}

// validate checks one operation on its own; "" means valid. hasRet tells
// whether an info operation carries a return time. Result fields on the
// wrong kind of operation point at a recorder bug, and accepting them would
// check something other than what happened; fields left at their zero value
// ("value":"" on a get, as some encoders write) are accepted.
func validate(op Operation, hasRet bool) string {
	switch op.Op {
	case Get, Put, Append, CAS:
	default:
		return fmt.Sprintf("unknown op %q", op.Op)
	}
	switch op.Outcome {
	case OK, Fail, Info:
	default:
		return fmt.Sprintf("unknown outcome %q", op.Outcome)
	}
	if op.Client < 0 {
		return fmt.Sprintf("negative client %d", op.Client)
	}
	if op.Call < 0 {
		return fmt.Sprintf("negative call %d", op.Call)
	}
	if hasRet && op.Return < op.Call {
		return fmt.Sprintf("return %d before call %d", op.Return, op.Call)
	}
	if op.Op == Get && op.Value != "" {
		return `"value" on a get`
	}
	if op.Op != CAS && op.Expect != "" {
		return fmt.Sprintf(`"expect" on a %s`, op.Op)
	}
	if op.Op != CAS && op.Swapped {
		return fmt.Sprintf(`"swapped" on a %s`, op.Op)
	}
	if op.Op != Get && (op.Found || op.Output != "") {
		return fmt.Sprintf(`"found"/"output" on a %s`, op.Op)
	}
	if op.Outcome != OK && (op.Found || op.Output != "" || op.Swapped) {
		return fmt.Sprintf("result fields on an operation with outcome %q", op.Outcome)
	}
	if op.Op == Get && !op.Found && op.Output != "" {
		return `"output" on a get that did not find the key`
	}
	return ""
}

// span is the time a client was busy with one operation.
type span struct {
	call, ret int64 // ret = maxInt64 when the operation never returned
	line      int
}

const forever = int64(^uint64(0) >> 1)

// clientCheck enforces "one operation in flight per client" across a whole
// history. It keeps each client's spans sorted by call, so a history written
// in any order is judged exactly; the common case (a client's operations
// arrive in order) is an append.
//
// A lean check keeps only the latest return of each client instead: while
// each client's operations arrive in order, each beginning no earlier than
// the previous one returned, no two can overlap, and that is all a
// recorder writes. The first operation that does not is answered with
// needFullCheck, and the file is read again with the full check
// (ScanFile), which then judges it exactly, message included. So memory
// is per client, not per operation, for any file a recorder wrote.
type clientCheck struct {
	byClient map[int][]span
	lean     bool
	lastRet  map[int]int64
}

// needFullCheck is clientCheck.add's answer when a lean check cannot
// decide; errNeedFullCheck is what the Reader returns then.
const needFullCheck = "\x00 needs the full check"

var errNeedFullCheck = errors.New("histories: operations out of order: read again with the full check")

func (c *clientCheck) add(op Operation, lineNo int) string {
	s := span{call: op.Call, ret: op.Return, line: lineNo}
	if op.Outcome == Info && op.Return == 0 {
		// Unknown and never returned: the client is occupied for good,
		// which is why a recorder moves on under a new client id.
		s.ret = forever
	}
	if c.lean {
		if last, seen := c.lastRet[op.Client]; seen && s.call < last {
			return needFullCheck
		}
		c.lastRet[op.Client] = s.ret
		return ""
	}
	spans := c.byClient[op.Client]
	i, _ := slices.BinarySearchFunc(spans, s, func(a, b span) int {
		if a.call != b.call {
			if a.call < b.call {
				return -1
			}
			return 1
		}
		if a.ret < b.ret {
			return -1
		}
		if a.ret > b.ret {
			return 1
		}
		return 0
	})
	if i > 0 {
		if p := spans[i-1]; p.ret > s.call {
			return overlapMsg(op.Client, p)
		}
	}
	if i < len(spans) {
		if n := spans[i]; s.ret > n.call {
			return overlapMsg(op.Client, n)
		}
	}
	c.byClient[op.Client] = slices.Insert(spans, i, s)
	return ""
}

func overlapMsg(client int, other span) string {
	if other.ret == forever {
		return fmt.Sprintf("client %d already has an operation that never returned (line %d): a client with an unknown outcome must continue under a new id", client, other.line)
	}
	return fmt.Sprintf("client %d overlaps its own operation at line %d (call %d, return %d)", client, other.line, other.call, other.ret)
}

// ReadFile reads and validates a whole history file.
func ReadFile(path string) ([]Operation, error) {
	var ops []Operation
	err := ScanFile(path, func(op Operation) error { ops = append(ops, op); return nil })
	if err != nil {
		return nil, err
	}
	return ops, nil
}

// WriteFile writes ops to path as a history file, the counterpart of
// ReadFile for a history held in memory (a simulated run's, or an empty
// one).
func WriteFile(path string, ops []Operation) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	hw := NewWriter(f)
	for _, op := range ops {
		if err := hw.Write(op); err != nil {
			f.Close()
			return fmt.Errorf("writing %s: %w", path, err)
		}
	}
	if err := hw.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Close()
}

// ValidateAll applies the reader's checks to operations held in memory (a
// history straight from the recorder). Errors are *InputError with File ""
// and Line the 1-based index. Return 0 on an info operation means "none".
func ValidateAll(ops []Operation) error {
	c := clientCheck{byClient: map[int][]span{}}
	for i, op := range ops {
		msg := validate(op, op.Outcome != Info || op.Return != 0)
		if msg == "" {
			msg = c.add(op, i+1)
		}
		if msg != "" {
			return &InputError{Line: i + 1, Msg: msg}
		}
	}
	return nil
}
