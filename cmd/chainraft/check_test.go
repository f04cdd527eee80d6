package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func writeHistory(t *testing.T, lines ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "history.jsonl")
	require.NoError(t, os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644))
	return path
}

// A put of 1, then a read of the absent key after it returned: only
// linearizable if the read saw 1.
var (
	okHistory = []string{
		`{"client":0,"op":"put","key":"a","value":"1","call":0,"return":10,"outcome":"ok"}`,
		`{"client":1,"op":"get","key":"a","call":20,"return":30,"outcome":"ok","found":true,"output":"1"}`,
		`{"client":1,"op":"get","key":"b","call":40,"return":50,"outcome":"ok"}`,
	}
	illegalHistory = []string{
		`{"client":0,"op":"put","key":"a","value":"1","call":0,"return":10,"outcome":"ok"}`,
		`{"client":1,"op":"get","key":"a","call":20,"return":30,"outcome":"ok"}`,
		`{"client":1,"op":"get","key":"b","call":40,"return":50,"outcome":"ok"}`,
	}
)

func runCheck(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var code int
	msg := captureStderr(t, func() { code = execute(append([]string{"check"}, args...)) })
	return code, msg
}

func TestCheckVerdicts(t *testing.T) {
	code, msg := runCheck(t, writeHistory(t, okHistory...))
	require.Equal(t, exitOK, code, msg)

	out := t.TempDir()
	code, msg = runCheck(t, writeHistory(t, illegalHistory...), "--out", out)
	require.Equal(t, exitIllegal, code, msg)
	require.FileExists(t, filepath.Join(out, "a.html"), "the failing key is drawn")
}

func TestCheckRunDirectory(t *testing.T) {
	path := writeHistory(t, illegalHistory...)
	dir := filepath.Dir(path)
	code, msg := runCheck(t, dir)
	require.Equal(t, exitIllegal, code, msg)
	require.FileExists(t, filepath.Join(dir, "porcupine", "a.html"), "a run directory gets porcupine/")
}

func TestCheckBadInput(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.jsonl")
	code, msg := runCheck(t, missing)
	require.Equal(t, exitUsage, code)
	require.Contains(t, msg, "nope.jsonl")

	bad := writeHistory(t, okHistory[0], `{"client":1,"op":"get","key":"a","call":20,`, okHistory[2])
	code, msg = runCheck(t, bad)
	require.Equal(t, exitUsage, code)
	require.Contains(t, msg, bad+":2:", "the message names file and line")

	unknownOp := writeHistory(t, okHistory[0], okHistory[1], `{"client":1,"op":"delete","key":"a","call":40,"return":50,"outcome":"ok"}`)
	code, msg = runCheck(t, unknownOp)
	require.Equal(t, exitUsage, code)
	require.Contains(t, msg, unknownOp+":3:")

	code, _ = runCheck(t)
	require.Equal(t, exitUsage, code, "no PATH")
	code, _ = runCheck(t, writeHistory(t, okHistory...), "--budget", "0s")
	require.Equal(t, exitUsage, code)
}

// TestCheckBudgetExhaustedIsUnknown gives a history that needs search a
// budget too small for it: the verdict must be unknown (exit 3), never ok.
func TestCheckBudgetExhaustedIsUnknown(t *testing.T) {
	// Many concurrent unknown appends to one key, then reads that pin
	// none of their orders cheaply.
	var lines []string
	const writers = 14
	for c := range writers {
		lines = append(lines, fmt.Sprintf(`{"client":%d,"op":"append","key":"a","value":"x","call":%d,"outcome":"info"}`, c, c))
	}
	for i := range 40 {
		lines = append(lines, fmt.Sprintf(`{"client":%d,"op":"get","key":"a","call":%d,"return":%d,"outcome":"ok","found":true,"output":"%s"}`,
			writers+i, 100+2*i, 101+2*i, strings.Repeat("x", min(1+i/3, writers))))
	}
	code, msg := runCheck(t, writeHistory(t, lines...), "--budget", "1ns")
	require.Equal(t, exitUnknown, code, msg)
}

// TestCheckCompareDirectory: check on a compare directory checks every run
// it lists and exits with the worst verdict.
func TestCheckCompareDirectory(t *testing.T) {
	out := t.TempDir()
	require.Equal(t, exitIllegal, execute(compareArgs(out, "memory,cmdtest-lost", "--keys", "3")))
	dirs := compareDirs(t, out)
	require.Len(t, dirs, 1)
	code, msg := runCheck(t, dirs[0])
	require.Equal(t, exitIllegal, code, msg)
	root := newRootCmd()
	var stdout bytes.Buffer
	root.SetOut(&stdout)
	root.SetArgs([]string{"check", dirs[0]})
	_ = root.Execute()
	require.Contains(t, stdout.String(), "== memory (memory) ==")
	require.Contains(t, stdout.String(), "== cmdtest-lost (cmdtest-lost) ==")
	require.Contains(t, stdout.String(), "verdict: illegal")

	ok := t.TempDir()
	require.Equal(t, exitOK, execute(compareArgs(ok, "memory,memory")))
	code, msg = runCheck(t, compareDirs(t, ok)[0])
	require.Equal(t, exitOK, code, msg)

	empty := t.TempDir()
	code, msg = runCheck(t, empty)
	require.Equal(t, exitUsage, code)
	require.Contains(t, msg, "neither a run directory")
}
