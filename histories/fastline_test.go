package histories

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// fastOrSlow decodes raw both ways; fast reports whether fastLine took it.
func fastOrSlow(raw []byte) (fast bool, fastOp Operation, fastMsg string, op Operation, msg string) {
	var l line
	var vals fastVals
	if fastLine(raw, &l, &vals, func(b []byte) string { return string(b) }) {
		fast = true
		fastOp, fastMsg = finishLine(&l)
	}
	op, msg = decodeLine(raw)
	return
}

// The fast path must mean exactly what encoding/json means, or leave the
// line to it.
func FuzzFastLine(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.jsonl")
	for _, p := range files {
		b, err := os.ReadFile(p)
		require.NoError(f, err)
		for _, l := range bytes.Split(b, []byte("\n")) {
			f.Add(bytes.TrimSpace(l))
		}
	}
	for _, s := range []string{
		`{"client":1,"op":"get","key":"k","call":-0,"return":01,"outcome":"ok"}`,
		`{"client":1,"op":"get","key":"k","call":1,"return":1e3,"outcome":"ok"}`,
		`{"client":1,"op":"get","key":"k","call":1,"return":2,"outcome":"ok","found":true,"output":"x\u00e9"}`,
		`{"client":1,"op":"put","key":"k","value":"\xff","call":1,"return":2,"outcome":"ok"}`,
		`{"client":1,"op":"put","key":"k","key":"j","call":1,"return":2,"outcome":"ok"}`,
		`{"Client":1,"op":"put","key":"k","call":1,"return":2,"outcome":"ok"}`,
		`{"client":1,"op":"put","key":"k","call":1,"return":null,"outcome":"info"}`,
		`{"client":1,"op":"cas","key":"k","expect":"a","value":"b","call":1,"return":2,"outcome":"ok","swapped":false}`,
		`{"client":1,"op":"append","key":"k","value":"v","call":5,"outcome":"invoke"}`,
		`{"client":9223372036854775807,"op":"get","key":"k","call":1,"return":2,"outcome":"ok"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		fast, fop, fmsg, op, msg := fastOrSlow(raw)
		if !fast {
			return
		}
		require.Equal(t, msg, fmsg, "%q", raw)
		require.Equal(t, op, fop, "%q", raw)
	})
}

// The Writer's lines, and so a recording's, take the fast path.
func TestWriterLinesAreFast(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	n := 0
	require.NoError(t, Generate(GenConfig{Ops: 2000, Clients: 8, Keys: 3, Unknown: 0.05, Put: 0.3, CAS: 0.1, Append: 0.1, Seed: 3},
		func(op Operation) error { n++; return w.Write(op) }))
	require.NoError(t, w.WriteInvoke(Operation{Client: 99, Op: Put, Key: "k0", Value: "v", Call: 1}))
	require.NoError(t, w.Flush())
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	require.Len(t, lines, n+1)
	for _, l := range lines {
		fast, fop, fmsg, op, msg := fastOrSlow(l)
		require.True(t, fast, "%s", l)
		require.Equal(t, msg, fmsg)
		require.Equal(t, op, fop)
	}
}
