package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Bad lock workload flags are usage errors, named, and start nothing. (The
// workload itself is tested against real ZooKeeper in harness/lockload.)
func TestLockrunRejectsBadFlags(t *testing.T) {
	tcs := []struct {
		args []string
		want string
	}{
		{[]string{"--fencing", "maybe"}, "--fencing"},
		{[]string{"--recipe", "mutex"}, "--recipe"},
		{[]string{"--workers", "1"}, "--workers"},
		{[]string{"--time-limit", "0s"}, "--time-limit"},
		{[]string{"--session-timeout", "0s"}, "--session-timeout"},
		{[]string{"--pause-every", "0s"}, "--pause-every"},
		{[]string{"--hold", "0s"}, "--hold"},
		{[]string{"--zk-servers", "2"}, "--zk-servers"},
		{[]string{"--name", "a/b"}, "--name"},
	}
	for _, tc := range tcs {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out := t.TempDir()
			var code int
			msg := captureStderr(t, func() {
				code = execute(append([]string{"lockrun", "--out", out}, tc.args...))
			})
			require.Equal(t, exitUsage, code, msg)
			require.Contains(t, msg, tc.want)
			entries, err := os.ReadDir(out)
			require.NoError(t, err)
			require.Empty(t, entries, "bad usage starts nothing")
		})
	}
}

func TestLockworkerRejectsBadFlags(t *testing.T) {
	base := []string{"lockworker", "--zk", "127.0.0.1:1", "--resource", "127.0.0.1:2", "--events", "/dev/null"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--fencing", "yes"}, "--fencing"},
		{[]string{"--recipe", "x"}, "--recipe"},
		{[]string{"--lock-path", "rel"}, "--lock-path"},
		{[]string{"--session-timeout", "0s"}, "--session-timeout"},
	} {
		var code int
		msg := captureStderr(t, func() { code = execute(append(append([]string{}, base...), tc.args...)) })
		require.Equal(t, exitUsage, code, msg)
		require.Contains(t, msg, tc.want)
	}
}

// A lock run's history.jsonl is the counter resource's log: `chainraft
// check` refuses it (the run directory or the file) with a clear usage
// error instead of reading it as KV operations.
func TestCheckRefusesLockRun(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "summary.json"),
		[]byte(`{"workload":"lock","recipe":"naive","check":{"verdict":"ok"}}`), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "history.jsonl"),
		[]byte(`{"seq":1,"time":5,"worker":1,"token":13,"op":"read","value":0,"before":0,"accepted":true}`+"\n"), 0o644))
	for _, path := range []string{dir, filepath.Join(dir, "history.jsonl")} {
		var code int
		msg := captureStderr(t, func() { code = execute([]string{"check", path}) })
		require.Equal(t, exitUsage, code, msg)
		require.Contains(t, msg, "a lock-workload run: its check is in summary.json")
	}
}
