package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/harness"
)

// compareDirs lists the compare directories under out.
func compareDirs(t *testing.T, out string) []string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(out, "*Z-compare*"))
	require.NoError(t, err)
	return dirs
}

func compareArgs(out string, stores string, extra ...string) []string {
	limit := "400ms"
	if testing.Short() {
		limit = "200ms"
	}
	// --rate keeps the memory store's histories to a few thousand
	// operations: enough to catch a lost write, quick to check and draw.
	return append([]string{"compare", "--stores", stores, "--time-limit", limit, "--clients", "4", "--keys", "10",
		"--rate", "8000", "--out", out, "--quiet"}, extra...)
}

func TestCompareMemoryExitsOK(t *testing.T) {
	out := t.TempDir()
	require.Equal(t, exitOK, execute(compareArgs(out, "memory,memory", "--seed", "9", "--read-fraction", "0.7")))
	dirs := compareDirs(t, out)
	require.Len(t, dirs, 1)
	b, err := os.ReadFile(filepath.Join(dirs[0], "compare.json"))
	require.NoError(t, err)
	var f struct {
		Seed         int64   `json:"seed"`
		ReadFraction float64 `json:"read_fraction"`
		Verdict      string  `json:"verdict"`
		Runs         []struct {
			Store, Dir, Verdict string
			Summary             struct {
				Seed         int64   `json:"seed"`
				ReadFraction float64 `json:"read_fraction"`
				Clients      int     `json:"clients"`
			}
		}
	}
	require.NoError(t, json.Unmarshal(b, &f))
	require.Equal(t, "ok", f.Verdict)
	require.Equal(t, int64(9), f.Seed)
	require.Len(t, f.Runs, 2)
	for _, r := range f.Runs {
		require.Equal(t, "ok", r.Verdict)
		require.Equal(t, int64(9), r.Summary.Seed)
		require.Equal(t, 0.7, r.Summary.ReadFraction)
		require.Equal(t, 4, r.Summary.Clients)
	}
	require.FileExists(t, filepath.Join(dirs[0], "compare.html"))
}

func TestCompareLostWritesExitsIllegal(t *testing.T) {
	out := t.TempDir()
	code := -1
	stderr := captureStderr(t, func() { code = execute(compareArgs(out, "memory,cmdtest-lost")) })
	require.Equal(t, exitIllegal, code)
	require.Contains(t, stderr, "cmdtest-lost is not linearizable")
	require.Len(t, compareDirs(t, out), 1)
}

func TestCompareSweepRunsOneComparisonPerFraction(t *testing.T) {
	out := t.TempDir()
	require.Equal(t, exitOK, execute(compareArgs(out, "memory", "--sweep-read-fraction", "0.2,0.8")))
	require.Len(t, compareDirs(t, out), 2)
}

func TestCompareUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--stores", "memory,nosuch"},
		{"--stores", ","},
		{"--targets", "nearest"},
		{"--sweep-read-fraction", "0.5,2"},
		{"--read-fraction", "1.5"},
		{"--clients", "0"},
		{"--nemesis", "no-such-fault"},
	} {
		out := t.TempDir()
		code := -1
		_ = captureStderr(t, func() { code = execute(append(compareArgs(out, "memory"), args...)) })
		require.Equal(t, exitUsage, code, "%v", args)
		require.Empty(t, compareDirs(t, out), "%v: nothing runs on bad usage", args)
	}
}

func TestCompareExitIsTheWorstRun(t *testing.T) {
	res := func(runs ...harness.CompareRun) *harness.CompareResult {
		return &harness.CompareResult{Dir: "runs/x-compare", Runs: runs}
	}
	ok := harness.CompareRun{Store: "raft", Verdict: "ok"}
	illegal := harness.CompareRun{Store: "chain", Verdict: "illegal"}
	unknown := harness.CompareRun{Store: "chain", Verdict: "unknown"}
	failed := harness.CompareRun{Store: "chain", Verdict: "unknown", Err: errors.New("boom")}
	code := func(err error) int {
		var ee *exitError
		if err == nil {
			return exitOK
		}
		require.ErrorAs(t, err, &ee)
		return ee.code
	}
	require.Equal(t, exitOK, code(compareExit([]*harness.CompareResult{res(ok, ok)}, []error{nil})))
	require.Equal(t, exitIllegal, code(compareExit([]*harness.CompareResult{res(ok, illegal)}, []error{nil})))
	require.Equal(t, exitUnknown, code(compareExit([]*harness.CompareResult{res(ok, unknown)}, []error{nil})))
	require.Equal(t, exitRunFailed, code(compareExit([]*harness.CompareResult{res(failed, unknown)}, []error{nil})))
	require.Equal(t, exitIllegal, code(compareExit([]*harness.CompareResult{res(failed, illegal)}, []error{nil})))
	require.Equal(t, exitRunFailed, code(compareExit([]*harness.CompareResult{res(ok)}, []error{harness.ErrInterrupted})))
	require.Equal(t, exitRunFailed, code(compareExit(nil, []error{errors.New("cannot create")})))
	// Over a sweep: the worst of every comparison.
	require.Equal(t, exitIllegal, code(compareExit([]*harness.CompareResult{res(ok, ok), res(illegal, ok)}, []error{nil, nil})))
}
