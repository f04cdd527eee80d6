package sim

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/chain"
	"github.com/chainraft/chainraft/histories"
	"github.com/chainraft/chainraft/raftkv"
)

// seedCount is how many seeds a store's pass test runs: 500 in the default
// go test (the bar), fewer with -short or the race detector.
func seedCount() int {
	switch {
	case raceEnabled:
		return 40
	case testing.Short():
		return 100
	}
	return 500
}

// TestRaftSeedsPass runs the raft store under hundreds of seeded fault
// schedules: every seed must be linearizable, make progress once the
// faults stop, and end with replicas that agree.
func TestRaftSeedsPass(t *testing.T) {
	n := seedCount()
	sr := RunSeeds(context.Background(), Options{Store: "raft"}, 1, n, 0, nil)
	if sr.Failed != nil {
		f := sr.Failed
		require.Failf(t, "a seed failed", "seed %d: %s: %s\nreplay: %s\n%s",
			f.Options.Seed, f.Failure, f.Detail, ReplayCommand(f.Options), tail(f.Log, 40))
	}
	require.Equal(t, n, sr.Ran)
}

// TestRaftSeededBugsCaught: each of raftkv's seeded bugs makes some seed
// among the first 200 fail the linearizability check.
func TestRaftSeededBugsCaught(t *testing.T) {
	n := 200
	if raceEnabled {
		n = 20
	}
	for _, bug := range raftkv.KnownBugs() {
		t.Run(bug, func(t *testing.T) {
			if bug == raftkv.BugWallLease {
				// Caught on hosts, whose clocks the nemesis steps
				// (chainrafttest's detection tests).
				_, err := newRaftCluster(&run{opts: Options{Store: "raft", Bug: bug}})
				require.ErrorContains(t, err, "needs clock faults")
				return
			}
			sr := RunSeeds(context.Background(), Options{Store: "raft", Bug: bug}, 1, n, 0, nil)
			require.NotNil(t, sr.Failed, "no seed of %d caught %s", n, bug)
			require.Equal(t, FailIllegal, sr.Failed.Failure, "seed %d: %s", sr.Failed.Options.Seed, sr.Failed.Detail)
			t.Logf("%s caught by seed %d: %s", bug, sr.Failed.Options.Seed, sr.Failed.Detail)
		})
	}
}

// TestSameSeedSameHistory: one seed run twice writes byte-identical
// history.jsonl and the same fault events, while other seeds differ.
func TestSameSeedSameHistory(t *testing.T) {
	for _, seed := range []int64{3, 11} {
		a, b := Run(Options{Store: "raft", Seed: seed}), Run(Options{Store: "raft", Seed: seed})
		require.True(t, a.Passed(), a.Detail)
		require.Equal(t, historyBytes(t, a.Ops), historyBytes(t, b.Ops), "seed %d", seed)
		require.Equal(t, a.Events, b.Events)
		require.Equal(t, a.Steps, b.Steps)
	}
	require.NotEqual(t, historyBytes(t, Run(Options{Store: "raft", Seed: 3}).Ops), historyBytes(t, Run(Options{Store: "raft", Seed: 4}).Ops))
}

// TestSameSeedInParallel: worlds running side by side do not disturb each
// other (raft's election jitter goes through crypto/rand: entropy.go).
func TestSameSeedInParallel(t *testing.T) {
	want := historyBytes(t, Run(Options{Store: "raft", Seed: 5}).Ops)
	got := make(chan []byte, 4)
	for range 4 {
		go func() { got <- historyBytes(t, Run(Options{Store: "raft", Seed: 5}).Ops) }()
	}
	for range 4 {
		require.Equal(t, want, <-got)
	}
}

func historyBytes(t *testing.T, ops []histories.Operation) []byte {
	var buf bytes.Buffer
	w := histories.NewWriter(&buf)
	for _, op := range ops {
		require.NoError(t, w.Write(op))
	}
	require.NoError(t, w.Flush())
	return buf.Bytes()
}

// TestWriteRunDir: a seed's run directory has the files a real run has,
// and the history in it reads back and checks.
func TestWriteRunDir(t *testing.T) {
	res := Run(Options{Store: "raft", Seed: 2, Bug: raftkv.BugEarlyAck})
	require.Equal(t, FailIllegal, res.Failure)
	out := t.TempDir()
	dir, err := WriteRunDir(context.Background(), out, res, []string{"chainraft", "sim"})
	require.NoError(t, err)
	for _, f := range []string{"history.jsonl", "nemesis.jsonl", "summary.json", "report.html", "sim.log"} {
		require.FileExists(t, filepath.Join(dir, f))
	}
	ops, err := histories.ReadFile(filepath.Join(dir, "history.jsonl"))
	require.NoError(t, err)
	require.Equal(t, res.Ops, ops)
	entries, err := os.ReadDir(filepath.Join(dir, "porcupine"))
	require.NoError(t, err)
	require.NotEmpty(t, entries)
	log, err := os.ReadFile(filepath.Join(dir, "sim.log"))
	require.NoError(t, err)
	require.Contains(t, string(log), "replay: chainraft sim --store raft --seed 2 --bug early-ack")
	require.FileExists(t, filepath.Join(out, "index.html"))
}

func TestValidate(t *testing.T) {
	require.NoError(t, Options{Store: "raft", Bug: raftkv.BugNoDedup}.Validate())
	require.ErrorIs(t, Options{Store: "raft", Bug: "nope"}.Validate(), raftkv.ErrUnknownBug)
	require.Error(t, Options{Store: "raft", ReadMode: "fast"}.Validate())
	require.NoError(t, Options{Store: "chain", Bug: chain.BugStaleTail}.Validate())
	require.ErrorIs(t, Options{Store: "chain", Bug: "nope"}.Validate(), chain.ErrUnknownBug)
	require.Error(t, Options{Store: "chain", ReadMode: "lease"}.Validate())
	require.NoError(t, Options{Store: "chain", ReadMode: chain.ReadModeCRAQ}.Validate())
	require.ErrorContains(t, Options{Store: "chain", Bug: chain.BugCraqDirtyRead}.Validate(), "--read-mode craq")
	require.NoError(t, Options{Store: "chain", Bug: chain.BugCraqDirtyRead, ReadMode: chain.ReadModeCRAQ}.Validate())
	require.Error(t, Options{Store: "etcd"}.Validate())
}

func tail(lines []string, n int) string {
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	var b bytes.Buffer
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.String()
}

// TestNoProgressIsAFailure: a cluster that cannot complete a write and a
// read within the liveness bound after the faults stop fails its seed.
func TestNoProgressIsAFailure(t *testing.T) {
	res := Run(Options{Store: "raft", Seed: 1, LivenessBound: time.Millisecond})
	require.Equal(t, FailProgress, res.Failure)
	require.Contains(t, res.Detail, "within 1ms")
}

// TestNoFsyncCaught: the raft driver's no-fsync bug (acknowledge without
// fsync) fails a seed among the first 200: power cuts of every node lose
// acknowledged writes, or raft finds its log lost and panics.
func TestNoFsyncCaught(t *testing.T) {
	n := 200
	if raceEnabled {
		n = 20
	}
	sr := RunSeeds(context.Background(), Options{Store: "raft", Bug: "no-fsync"}, 1, n, 0, nil)
	require.NotNil(t, sr.Failed)
	t.Logf("no-fsync caught by seed %d: %s: %s", sr.Failed.Options.Seed, sr.Failed.Failure, firstLineOf(sr.Failed.Detail))
}

func firstLineOf(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
