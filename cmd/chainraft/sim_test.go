package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSimExitCodes: sim exits like run — 0 when every seed passes, 1 at
// the first failing seed (whose run directory it writes), 2 on bad usage.
func TestSimExitCodes(t *testing.T) {
	out := t.TempDir()
	require.Equal(t, exitOK, execute([]string{"sim", "--store", "raft", "--seeds", "4", "--out", out}))
	require.Equal(t, exitIllegal, execute([]string{"sim", "--store", "raft", "--seeds", "20", "--bug", "early-ack", "--out", out}))
	hist, err := os.ReadFile(filepath.Join(out, "latest", "history.jsonl"))
	require.NoError(t, err)
	require.NotEmpty(t, hist)
	require.Equal(t, exitUsage, execute([]string{"sim"}))
	require.Equal(t, exitUsage, execute([]string{"sim", "--store", "raft", "--bug", "nope"}))
	require.Equal(t, exitUsage, execute([]string{"sim", "--store", "etcd", "--seeds", "1"}))
	require.Equal(t, exitUsage, execute([]string{"sim", "--store", "chain", "--bug", "early-ack"}))
	require.Equal(t, exitIllegal, execute([]string{"sim", "--store", "chain", "--seeds", "4", "--bug", "early-reply", "--out", out}))
	require.Equal(t, exitIllegal, execute([]string{"sim", "--store", "chain", "--seeds", "4", "--bug", "early-reply", "--all", "--out", out}))
	require.Equal(t, exitUsage, execute([]string{"sim", "--store", "raft", "--seeds", "0"}))
}

// TestSimSeedWritesSameHistory: one seed run twice from the command line
// writes byte-identical history.jsonl files.
func TestSimSeedWritesSameHistory(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	require.Equal(t, exitOK, execute([]string{"sim", "--store", "raft", "--seed", "9", "--out", a}))
	require.Equal(t, exitOK, execute([]string{"sim", "--store", "raft", "--seed", "9", "--out", b}))
	ha, err := os.ReadFile(filepath.Join(a, "latest", "history.jsonl"))
	require.NoError(t, err)
	hb, err := os.ReadFile(filepath.Join(b, "latest", "history.jsonl"))
	require.NoError(t, err)
	require.Equal(t, ha, hb)

	require.Equal(t, exitOK, execute([]string{"sim", "--store", "chain", "--seed", "9", "--out", a}))
	require.Equal(t, exitOK, execute([]string{"sim", "--store", "chain", "--seed", "9", "--out", b}))
	ca, err := os.ReadFile(filepath.Join(a, "latest", "history.jsonl"))
	require.NoError(t, err)
	cb, err := os.ReadFile(filepath.Join(b, "latest", "history.jsonl"))
	require.NoError(t, err)
	require.Equal(t, ca, cb)
	require.NotEqual(t, ha, ca)
}
