package main

// Bad input is refused before anything starts, with exit 2 and a message
// naming the flag, or the file and line: every case of issue 16's list.

import (
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/harness/report"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
	return path
}

func TestRunRefusesBadInputBeforeStarting(t *testing.T) {
	unknownKind := writeFile(t, "unknown.jsonl",
		`{"time":0,"step":1,"fault":"kill","event":"inject","role":"leader","spec":{"kind":"kill","role":"leader"},"at":1000000000,"duration":1000000000}`+"\n"+
			`{"time":0,"step":2,"fault":"melt","event":"inject","role":"leader","spec":{"kind":"melt","role":"leader"},"at":3000000000,"duration":1000000000}`+"\n")
	empty := writeFile(t, "empty.jsonl", "\n")
	healsOnly := writeFile(t, "heals.jsonl", `{"time":5,"step":1,"fault":"kill","event":"heal"}`+"\n")
	tcs := []struct {
		args []string
		want string
	}{
		{[]string{"--read-fraction", "NaN"}, "--read-fraction"},
		{[]string{"--append-fraction", "NaN"}, "--append-fraction"},
		{[]string{"--cas-fraction", "NaN"}, "--cas-fraction"},
		{[]string{"--node-cpus", "NaN", "--store", "raft"}, "--node-cpus"},
		{[]string{"--node-cpus", "+Inf", "--store", "raft"}, "--node-cpus"},
		{[]string{"--store", "raft", "--nemesis", "kill", "--nemesis-interval", "1ns"}, "--nemesis-interval must be at least 100ms"},
		{[]string{"--store", "raft", "--nemesis", "kill,,pause"}, `--nemesis: nemesis: unknown fault kind ""`},
		{[]string{"--store", "raft", "--replay", unknownKind}, unknownKind + `:2: step 2: nemesis: unknown fault kind "melt"`},
		{[]string{"--store", "raft", "--replay", empty}, "no inject lines: nothing to replay"},
		{[]string{"--store", "raft", "--replay", healsOnly}, "no inject lines: nothing to replay"},
		{[]string{"--store", "chain", "--nodes", "2", "--replicas", "3"}, "--nodes 2 is below --replicas 3"},
		{[]string{"--value-size", "2000000"}, "--value-size must be between 0 and 262144"},
		{[]string{"--store", "raft", "--preload", "10 parsecs"}, `--preload "10 parsecs": want a size`},
		{[]string{"--store", "raft", "--preload", "-5MB"}, "--preload"},
		{[]string{"--store", "raft", "--preload", "1MB", "--preload-value-size", "300000"}, "preload value size 300000"},
		{[]string{"--store", "raft", "--nemesis", "critical", "--time-limit", "10s"}, "needs --time-limit of at least 35s"},
		{[]string{"--store", "raft", "--nemesis", "critical", "--nemesis-overlap"}, "--nemesis-overlap"},
	}
	for _, tc := range tcs {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out := t.TempDir()
			var code int
			msg := captureStderr(t, func() {
				code = execute(append([]string{"run", "--out", out, "--time-limit", "100ms"}, tc.args...))
			})
			require.Equal(t, exitUsage, code, msg)
			require.Contains(t, msg, tc.want)
			entries, err := os.ReadDir(out)
			require.NoError(t, err)
			require.Empty(t, entries, "bad usage starts nothing")
		})
	}
}

func TestRunRefusesAnOutItCannotWrite(t *testing.T) {
	file := writeFile(t, "runs", "not a directory")
	for _, out := range []string{file, filepath.Join(file, "below")} {
		var code int
		msg := captureStderr(t, func() { code = execute([]string{"run", "--out", out, "--time-limit", "100ms"}) })
		require.Equal(t, exitUsage, code, msg)
		require.Contains(t, msg, "--out")
	}
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	require.Equal(t, "not a directory", string(b), "the file is left as it was")
}

func TestCompareRefusesBadInputBeforeStarting(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--nemesis", "kill,,pause"}, `unknown fault kind ""`},
		{[]string{"--sweep-read-fraction", "NaN"}, "--sweep-read-fraction"},
		{[]string{"--sweep-read-fraction", "0.1,,0.5"}, "--sweep-read-fraction"},
		{[]string{"--stores", "memory,,memory"}, "empty entry"},
		{[]string{"--nemesis-interval", "1ns", "--nemesis", "kill"}, "--nemesis-interval"},
		{[]string{"--bug", "early-ack"}, "--bug is refused: a planted bug belongs to one store"},
		{[]string{"--workload", "lock"}, "--workload is refused"},
		{[]string{"--replay", "/no/such/file.jsonl"}, "--replay"},
	} {
		out := t.TempDir()
		code := -1
		msg := captureStderr(t, func() { code = execute(append(compareArgs(out, "memory"), tc.args...)) })
		require.Equal(t, exitUsage, code, "%v: %s", tc.args, msg)
		require.Contains(t, msg, tc.want, "%v", tc.args)
		require.Empty(t, compareDirs(t, out), "%v: nothing runs on bad usage", tc.args)
	}
}

func TestServeStaysInsideItsDirectory(t *testing.T) {
	runs := t.TempDir()
	fakeRun(t, runs, "20261126T100000-raft-a", "ok")
	secret := writeFile(t, "secret.txt", "do not serve")
	require.NoError(t, os.Symlink(filepath.Dir(secret), filepath.Join(runs, "escape")))
	require.NoError(t, os.Symlink("20261126T100000-raft-a", filepath.Join(runs, "latest")))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: runsHandler(runs), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	client := &http.Client{Timeout: 5 * time.Second}
	base := "http://" + ln.Addr().String()

	code, body := get2(t, client, base+"/escape/secret.txt")
	require.Equal(t, http.StatusForbidden, code)
	require.NotContains(t, body, "do not serve")
	code, _ = get2(t, client, base+"/latest/history.jsonl")
	require.Equal(t, http.StatusOK, code, "a link that stays inside is followed")
}

func TestServeLeavesAForeignIndexAlone(t *testing.T) {
	runs := t.TempDir()
	fakeRun(t, runs, "20261126T100000-raft-a", "ok")
	index := filepath.Join(runs, "index.html")
	require.NoError(t, os.WriteFile(index, []byte("<html><title>my site</title></html>"), 0o644))
	var code int
	msg := captureStderr(t, func() { code = execute([]string{"serve", "--dir", runs, "--addr", "127.0.0.1:0"}) })
	require.Equal(t, exitUsage, code, msg)
	require.Contains(t, msg, "not written by chainraft")
	b, err := os.ReadFile(index)
	require.NoError(t, err)
	require.Equal(t, "<html><title>my site</title></html>", string(b))
	require.ErrorIs(t, report.WriteIndex(runs), report.ErrForeignIndex)
}

func TestReportRedrawsACompareDirectory(t *testing.T) {
	runs := t.TempDir()
	a := fakeRun(t, runs, "20261126T100000-raft-compared", "ok")
	b := fakeRun(t, runs, "20261126T100010-chain-compared", "ok")
	cmp := filepath.Join(runs, "20261126T100000Z-compare")
	require.NoError(t, os.Mkdir(cmp, 0o755))
	require.NoError(t, os.Symlink("../"+filepath.Base(a), filepath.Join(cmp, "raft")))
	require.NoError(t, os.Symlink("../"+filepath.Base(b), filepath.Join(cmp, "chain")))
	require.NoError(t, os.WriteFile(filepath.Join(cmp, "compare.json"),
		[]byte(`{"runs":[{"store":"raft","dir":"raft","verdict":"ok"},{"store":"chain","dir":"chain","verdict":"ok"}]}`), 0o644))
	require.Equal(t, exitOK, execute([]string{"report", cmp}))
	for _, p := range []string{filepath.Join(a, "report.html"), filepath.Join(b, "report.html"), filepath.Join(cmp, "compare.html")} {
		require.FileExists(t, p)
	}
	index, err := os.ReadFile(filepath.Join(runs, "index.html"))
	require.NoError(t, err)
	require.Contains(t, string(index), `href="20261126T100000Z-compare/compare.html"`, "the index links the comparison")
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"": 0, "4096": 4096, "10MB": 10_000_000, "1GiB": 1 << 30, "1.5KiB": 1536, "100 MB": 100_000_000} {
		got, err := parseBytes(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
}
