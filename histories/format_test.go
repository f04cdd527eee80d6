package histories

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestWriterRoundTrip(t *testing.T) {
	ops := []Operation{
		{Client: 0, Op: Put, Key: "x", Value: "a", Call: 0, Return: 0, Outcome: OK}, // return 0 must survive
		{Client: 1, Op: Get, Key: "x", Call: 1, Return: 9, Outcome: OK, Found: true, Output: "a"},
		{Client: 2, Op: Get, Key: "x", Call: 2, Return: 9, Outcome: OK, Found: true}, // empty value, present
		{Client: 3, Op: CAS, Key: "k\"\\\n\t\u0001\u2028é🙂", Value: "<&>", Expect: "", Call: 3, Return: 7, Outcome: OK, Swapped: true, Node: "n1"},
		{Client: 4, Op: Append, Key: "y", Value: "z", Call: 4, Outcome: Info, Error: "context deadline exceeded"},
		{Client: 5, Op: Put, Key: "y", Value: "q", Call: 5, Return: 6, Outcome: Fail, Error: "not leader", Node: "n2"},
		{Client: 6, Op: Append, Key: "y", Value: "w", Call: 6, Return: 8, Outcome: Info},
	}
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for _, op := range ops {
		require.NoError(t, w.Write(op))
	}
	require.NoError(t, w.Flush())

	// Every line is what encoding/json makes of the same operation, up to
	// the fields the Writer always writes.
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	require.Len(t, lines, len(ops))
	for i, l := range lines {
		var fromWriter, fromJSON map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &fromWriter))
		std, err := json.Marshal(ops[i])
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(std, &fromJSON))
		if _, ok := fromWriter["return"]; ok {
			fromJSON["return"] = fromWriter["return"] // omitempty drops a return of 0
		}
		require.Equal(t, fromJSON, fromWriter, "line %d", i+1)
	}

	r := NewReader(&buf, "mem")
	for i := range ops {
		got, err := r.Next()
		require.NoError(t, err, "op %d", i)
		require.Equal(t, ops[i], got)
	}
	_, err := r.Next()
	require.Equal(t, io.EOF, err)
	_, err = r.Next()
	require.Equal(t, io.EOF, err)
}

func TestWriterInvalidUTF8(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	require.NoError(t, w.Write(Operation{Client: 0, Op: Put, Key: "a\xffb", Value: "\xc3", Call: 1, Return: 2, Outcome: OK}))
	require.NoError(t, w.Flush())
	op, err := NewReader(&buf, "mem").Next()
	require.NoError(t, err)
	require.Equal(t, "a\xffb", op.Key, "bytes kept exactly (b64), never merged into U+FFFD")
	require.Equal(t, "\xc3", op.Value)
}

func TestReaderLongLineAndNoTrailingNewline(t *testing.T) {
	long := `{"client":0,"op":"put","key":"x","value":"` + strings.Repeat("v", maxLine) + `","call":0,"return":1,"outcome":"ok"}`
	in := "{\"client\":0,\"op\":\"get\",\"key\":\"x\",\"call\":0,\"return\":1,\"outcome\":\"ok\"}\n" + long + "\n"
	r := NewReader(strings.NewReader(in), "f")
	_, err := r.Next()
	require.NoError(t, err)
	_, err = r.Next()
	var ie *InputError
	require.True(t, errors.As(err, &ie))
	require.Equal(t, 2, ie.Line)
	require.Contains(t, ie.Msg, "line longer than")

	// A last line without a newline is still a line; CRLF is tolerated.
	in = "{\"client\":0,\"op\":\"get\",\"key\":\"x\",\"call\":0,\"return\":1,\"outcome\":\"ok\"}\r\n{\"client\":0,\"op\":\"get\",\"key\":\"x\",\"call\":2,\"return\":3,\"outcome\":\"ok\"}"
	r = NewReader(strings.NewReader(in), "f")
	for range 2 {
		_, err = r.Next()
		require.NoError(t, err)
	}
	_, err = r.Next()
	require.Equal(t, io.EOF, err)
}

func TestReadFileErrors(t *testing.T) {
	_, err := ReadFile(filepath.Join(t.TempDir(), "missing.jsonl"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestValidateAll(t *testing.T) {
	good := []Operation{
		{Client: 0, Op: Put, Key: "x", Call: 0, Outcome: Info},
		{Client: 1, Op: Get, Key: "x", Call: 1, Return: 2, Outcome: OK},
		{Client: 1, Op: Get, Key: "x", Call: 2, Return: 3, Outcome: Info}, // an info with a return frees the client
		{Client: 1, Op: Get, Key: "x", Call: 4, Return: 5, Outcome: OK},
	}
	require.NoError(t, ValidateAll(good))
	for _, tc := range []struct {
		op   Operation
		want string
	}{
		{Operation{Client: 2, Op: "del", Key: "x", Call: 1, Return: 2, Outcome: OK}, `unknown op "del"`},
		{Operation{Client: 2, Op: Get, Key: "x", Call: 1, Return: 2, Outcome: "maybe"}, `unknown outcome "maybe"`},
		{Operation{Client: -2, Op: Get, Key: "x", Call: 1, Return: 2, Outcome: OK}, "negative client -2"},
		{Operation{Client: 2, Op: Get, Key: "x", Call: 3, Return: 2, Outcome: OK}, "return 2 before call 3"},
		{Operation{Client: 2, Op: Get, Key: "x", Call: 1, Return: 2, Outcome: OK, Output: "v"}, "did not find"},
		{Operation{Client: 2, Op: Put, Key: "x", Call: 1, Return: 2, Outcome: OK, Swapped: true}, `"swapped" on a put`},
		{Operation{Client: 2, Op: CAS, Key: "x", Call: 1, Return: 2, Outcome: Fail, Swapped: true}, "result fields"},
		{Operation{Client: 0, Op: Get, Key: "x", Call: 100, Return: 200, Outcome: OK}, "never returned"},
		{Operation{Client: 1, Op: Get, Key: "x", Call: 0, Return: 2, Outcome: OK}, "overlaps its own operation"},
	} {
		err := ValidateAll(append(append([]Operation(nil), good...), tc.op))
		var ie *InputError
		require.True(t, errors.As(err, &ie), "%+v", tc.op)
		require.Equal(t, len(good)+1, ie.Line)
		require.Contains(t, ie.Msg, tc.want)
	}
}

// FuzzReader: no input makes the reader or the checker panic, and whatever
// the reader accepts survives a write/read round trip unchanged.
func FuzzReader(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.jsonl")
	for _, p := range files {
		b, err := os.ReadFile(p)
		require.NoError(f, err)
		f.Add(b)
	}
	f.Add([]byte("{}\n\n{\"client\":1e100}"))
	f.Add([]byte(`{"client":0,"op":"put","key":"x","call":9223372036854775807,"outcome":"info"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data), "fuzz")
		var ops []Operation
		for {
			op, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				var ie *InputError
				require.True(t, errors.As(err, &ie), "%v", err)
				require.Positive(t, ie.Line)
				return
			}
			ops = append(ops, op)
		}
		require.NoError(t, ValidateAll(ops))
		var buf bytes.Buffer
		w := NewWriter(&buf)
		for _, op := range ops {
			require.NoError(t, w.Write(op))
		}
		require.NoError(t, w.Flush())
		back, err := ReadFile(writeTemp(t, buf.Bytes()))
		require.NoError(t, err)
		require.Equal(t, len(ops), len(back))
		for i := range ops {
			require.Equal(t, ops[i].Key, back[i].Key) // fuzz keys can be invalid UTF-8 only if the JSON was invalid
			require.Equal(t, ops[i], back[i])
		}
		if len(ops) <= 64 {
			_, err := Check(context.Background(), ops, CheckOptions{Budget: 200 * time.Millisecond, Workers: 1})
			require.NoError(t, err)
		}
	})
}

func writeTemp(t *testing.T, b []byte) string {
	p := filepath.Join(t.TempDir(), "h.jsonl")
	require.NoError(t, os.WriteFile(p, b, 0o644))
	return p
}
