package histories

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Keys and values that are not valid UTF-8 keep their bytes through the
// file: two keys that differ only in an invalid byte stay two keys.
func TestNonUTF8KeysAndValuesRoundTrip(t *testing.T) {
	ops := []Operation{
		{Client: 0, Op: Put, Key: "k\xff", Value: "v\xfe1", Call: 1, Return: 2, Outcome: OK},
		{Client: 0, Op: Put, Key: "k\xfe", Value: "plain", Call: 3, Return: 4, Outcome: OK},
		{Client: 1, Op: Get, Key: "k\xff", Call: 5, Return: 6, Outcome: OK, Found: true, Output: "v\xfe1"},
		{Client: 1, Op: CAS, Key: "k\xfe", Expect: "plain", Value: "\x80\x81", Call: 7, Return: 8, Outcome: OK, Swapped: true},
	}
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for _, op := range ops {
		require.NoError(t, w.Write(op))
	}
	require.NoError(t, w.Flush())
	require.Contains(t, buf.String(), `"key":{"b64":"a/8="}`)
	require.Contains(t, buf.String(), `"value":"plain"`, "valid UTF-8 stays a plain string")
	r := NewReader(bytes.NewReader(buf.Bytes()), "mem")
	var got []Operation
	for {
		op, err := r.Next()
		if err != nil {
			break
		}
		got = append(got, op)
	}
	require.Equal(t, ops, got)

	_, why := decodeLine([]byte(`{"client":0,"op":"get","key":{"x":"1"},"call":1,"return":2,"outcome":"ok"}`))
	require.Contains(t, why, "b64")
	_, why = decodeLine([]byte(`{"client":0,"op":"get","key":{"b64":"!!"},"call":1,"return":2,"outcome":"ok"}`))
	require.Contains(t, why, "b64")
}

// The writers never write a line the reader would refuse: an operation
// whose line is over the limit is an error, in the Writer and in the
// streaming recorder.
func TestWritersRefuseALineTheReaderRefuses(t *testing.T) {
	huge := Operation{Client: 0, Op: Get, Key: "k", Call: 1, Return: 2, Outcome: OK, Found: true, Output: strings.Repeat("a", maxLine)}
	var buf bytes.Buffer
	w := NewWriter(&buf)
	require.ErrorIs(t, w.Write(huge), ErrLineTooLong)
	require.Zero(t, buf.Len(), "nothing written")

	rec := NewStreamRecorderTo(&buf)
	s := rec.Session()
	c := s.Begin(huge)
	huge.Call = c
	s.End(huge)
	require.ErrorIs(t, rec.Close(), ErrLineTooLong)
	r := NewReader(bytes.NewReader(buf.Bytes()), "mem")
	for {
		_, err := r.Next()
		if err != nil {
			require.ErrorIs(t, err, io.EOF, "whatever was written reads back")
			break
		}
	}
}
