package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fakeRun writes a minimal run directory: what the report package needs.
func fakeRun(t *testing.T, runs, name, verdict string) string {
	t.Helper()
	dir := filepath.Join(runs, name)
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "summary.json"),
		[]byte(`{"store":"raft","name":"`+name+`","seed":7,"duration_s":2,"verdict":"`+verdict+`","throughput":3,"ops_total":4,"ops_ok":4}`), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "history.jsonl"), []byte(
		`{"client":0,"op":"put","key":"a","value":"1","call":1000,"return":2000000,"outcome":"ok"}
{"client":0,"op":"get","key":"a","call":3000000,"return":4000000,"outcome":"ok","found":true,"output":"1"}
{"client":1,"op":"get","key":"a","call":1100000000,"return":1200000000,"outcome":"ok","found":true,"output":"1"}
{"client":1,"op":"put","key":"a","value":"2","call":1300000000,"return":1900000000,"outcome":"ok"}
`), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "nemesis.jsonl"), []byte(
		`{"time":500000000,"step":0,"fault":"pause","event":"inject","role":"leader","targets":[1]}
{"time":1500000000,"step":0,"fault":"pause","event":"heal","role":"leader","targets":[1]}
`), 0o644))
	return dir
}

func TestReportCommandWritesReportsAndIndex(t *testing.T) {
	runs := t.TempDir()
	a := fakeRun(t, runs, "20261126T100000-raft-a", "ok")
	b := fakeRun(t, runs, "20261126T110000-raft-b", "unknown")
	require.Equal(t, exitOK, execute([]string{"report", a, b}))
	for _, d := range []string{a, b} {
		html, err := os.ReadFile(filepath.Join(d, "report.html"))
		require.NoError(t, err)
		require.Contains(t, string(html), ">pause n1 (leader)</text>")
	}
	index, err := os.ReadFile(filepath.Join(runs, "index.html"))
	require.NoError(t, err)
	require.Equal(t, 2, strings.Count(string(index), "<tr data-verdict="))

	require.Equal(t, exitUsage, execute([]string{"report", runs})) // the parent has no summary.json
	require.Equal(t, exitUsage, execute([]string{"report", filepath.Join(runs, "absent")}))
	require.Equal(t, exitUsage, execute([]string{"report"}))
}

func TestServeServesRunsAndStops(t *testing.T) {
	runs := t.TempDir()
	a := fakeRun(t, runs, "20261126T100000-raft-a", "illegal")
	require.Equal(t, exitOK, execute([]string{"report", a}))
	require.NoError(t, os.Remove(filepath.Join(runs, "index.html"))) // serve regenerates it

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serveRuns(ctx, ln, runs) }()
	defer cancel()

	client := &http.Client{Timeout: 5 * time.Second}
	get := func(path string) (int, string) {
		resp, err := client.Get("http://" + ln.Addr().String() + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(b)
	}
	// The index is written when asked for, and lists runs made since.
	code, body := get("/")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "20261126T100000-raft-a/report.html")
	fakeRun(t, runs, "20261126T120000-raft-new", "ok")
	_, body = get("/")
	require.Contains(t, body, "20261126T120000-raft-new/")
	cancel()
	require.NoError(t, <-done)
	_, err = client.Get("http://" + ln.Addr().String() + "/")
	require.Error(t, err, "the server still answers after shutdown")

	// The command path: the index is regenerated at start.
	ln, err = net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	cmdDone := make(chan int, 1)
	go func() { cmdDone <- execute([]string{"serve", "--dir", runs, "--addr", addr}) }()
	require.Eventually(t, func() bool {
		resp, err := client.Get("http://" + addr + "/")
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		code, body = resp.StatusCode, string(b)
		return true
	}, 10*time.Second, 50*time.Millisecond)
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "20261126T100000-raft-a/report.html")
	require.Contains(t, body, "20261126T120000-raft-new/report.html") // serve wrote its missing report
	code, body = get2(t, client, "http://"+addr+"/20261126T100000-raft-a/report.html")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `<span class="badge illegal" id="verdict">illegal</span>`)
	code, _ = get2(t, client, "http://"+addr+"/20261126T100000-raft-a/history.jsonl")
	require.Equal(t, http.StatusOK, code)
	code, _ = get2(t, client, "http://"+addr+"/../../etc/passwd")
	require.NotEqual(t, http.StatusOK, code)

	// SIGINT stops it gracefully, exit 0.
	p, err := os.FindProcess(os.Getpid())
	require.NoError(t, err)
	require.NoError(t, p.Signal(os.Interrupt))
	select {
	case code := <-cmdDone:
		require.Equal(t, exitOK, code)
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop on SIGINT")
	}

	require.Equal(t, exitUsage, execute([]string{"serve", "--dir", filepath.Join(runs, "absent")}))
}

func get2(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}
