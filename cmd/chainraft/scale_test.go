package main

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestScaleUsageErrors(t *testing.T) {
	tcs := []struct {
		args []string
		want string
	}{
		{[]string{"--nodes", "3,x"}, "--nodes"},
		{[]string{"--nodes", ""}, "--nodes is empty"},
		{[]string{"--node-cpus", "-1"}, "--node-cpus"},
		{[]string{"--stores", "nosuch"}, "unknown store"},
		{[]string{"--stores", "raft/0"}, "shard count"},
		{[]string{"--stores", "memory/2", "--single", ""}, "no shards to fix"},
		{[]string{"--clients-per-node", "-1"}, "--clients-per-node"},
		{[]string{"--nemesis", "kill"}, "unknown flag"},
	}
	for _, tc := range tcs {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out := t.TempDir()
			var code int
			msg := captureStderr(t, func() {
				code = execute(append([]string{"scale", "--out", out, "--time-limit", "100ms"}, tc.args...))
			})
			require.Equal(t, exitUsage, code, msg)
			require.Contains(t, msg, tc.want)
			entries, err := os.ReadDir(out)
			require.NoError(t, err)
			for _, e := range entries {
				require.False(t, strings.HasSuffix(e.Name(), "-scale"), "bad usage starts no sweep")
			}
		})
	}
}

// TestScaleMemory sweeps the memory store over two sizes from the command
// line: exit 0, a line per run, scale.json with a point per size.
func TestScaleMemory(t *testing.T) {
	out := t.TempDir()
	var code int
	stdout := captureStdout(t, func() {
		code = execute([]string{"scale", "--stores", "memory", "--single", "", "--nodes", "1,2", "--clients-per-node", "2",
			"--time-limit", "200ms", "--rate", "500", "--out", out, "--quiet"})
	})
	require.Equal(t, exitOK, code, stdout)
	require.Contains(t, stdout, "verdict:    ok")
	dirs, err := filepath.Glob(filepath.Join(out, "*-scale"))
	require.NoError(t, err)
	require.Len(t, dirs, 1)
	b, err := os.ReadFile(filepath.Join(dirs[0], "scale.json"))
	require.NoError(t, err)
	var f struct {
		Points []struct {
			Nodes   int `json:"nodes"`
			Clients int `json:"clients"`
		} `json:"points"`
	}
	require.NoError(t, json.Unmarshal(b, &f))
	require.Len(t, f.Points, 2)
	require.Equal(t, 4, f.Points[1].Clients, "two clients per node at two nodes")
}

// captureStdout runs f and returns what it wrote to os.Stdout.
func captureStdout(t *testing.T, f func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	require.NoError(t, err)
	old := os.Stdout
	os.Stdout = w
	done := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		done <- string(b)
	}()
	defer func() { os.Stdout = old }()
	f()
	w.Close()
	return <-done
}
