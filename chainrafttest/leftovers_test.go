package chainrafttest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/harness"
	"github.com/chainraft/chainraft/harness/workload"
	"github.com/chainraft/chainraft/histories"
	"github.com/chainraft/chainraft/internal/proc"
)

// TestMain serves the node processes the tests start from this binary
// (Main), and kills whatever a test leaves running.
func TestMain(m *testing.M) { Main(m) }

// TestNemesisInterruptedRunLeavesNothing interrupts `chainraft run` with
// SIGINT and kills another with SIGKILL, each with faults in force, and
// requires that no process of theirs survives and that the next run in the
// same directory starts clean.
func TestNemesisInterruptedRunLeavesNothing(t *testing.T) {
	bin := proc.BuildChainraft(t)
	out := t.TempDir()
	store := "chain"
	if _, err := os.Stat("/usr/share/zookeeper"); err != nil || testing.Short() {
		store = "raft"
	}
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGKILL} {
		name := "killed-" + strings.ToLower(sig.String()[:4])
		cmd := exec.Command(bin, "run", "--store", store, "--out", out, "--name", name,
			"--time-limit", "60s", "--nemesis", "pause,kill,partition", "--nemesis-interval", "1s", "--clients", "2")
		cmd.Stdout, cmd.Stderr = testLogWriter{t}, testLogWriter{t}
		require.NoError(t, cmd.Start())
		// Wait until a fault is in force: some nemesis.jsonl has a line.
		require.Eventually(t, func() bool {
			ms, _ := filepath.Glob(filepath.Join(out, "*-"+name, "nemesis.jsonl"))
			for _, m := range ms {
				if b, _ := os.ReadFile(m); len(b) > 0 {
					return true
				}
			}
			return false
		}, 40*time.Second, 100*time.Millisecond)
		require.Greater(t, countProcs(t, out), 0, "no node process of the run found")
		require.NoError(t, cmd.Process.Signal(sig))
		_ = cmd.Wait()
		// The history was streamed as the run went: what a killed harness
		// left is a history the checker accepts.
		hs, _ := filepath.Glob(filepath.Join(out, "*-"+name, "history.jsonl"))
		require.Len(t, hs, 1, "the %v run left its history", sig)
		ops, err := histories.ReadFile(hs[0])
		require.NoError(t, err, "the history a %v left reads cleanly", sig)
		require.NotEmpty(t, ops)
		res, err := histories.CheckFile(context.Background(), hs[0], histories.CheckOptions{Budget: 30 * time.Second})
		require.NoError(t, err)
		require.Equal(t, histories.VerdictOK, res.Verdict, "what a %v left is checked", sig)
		require.Eventually(t, func() bool { return countProcs(t, out) == 0 }, 15*time.Second, 100*time.Millisecond,
			"processes survived %v of the harness", sig)
	}
	res, err := harness.Run(context.Background(), harness.RunConfig{
		Store: "raft", Name: "after", Out: out, TimeLimit: time.Second, Clients: 2,
		Workload: workload.Config{Seed: 1, Keys: 5}, Cluster: harness.Env{Binary: bin}, EndChecks: true,
	})
	require.NoError(t, err)
	require.Equal(t, string(histories.VerdictOK), res.Summary.Verdict)
	require.Empty(t, harness.FailedChecks(res.Summary))
}

// countProcs counts the processes whose command line names dir (nodes have
// their data directory there, ZooKeeper servers their zoo.cfg).
func countProcs(t *testing.T, dir string) int {
	out, err := exec.Command("pgrep", "-f", "--", dir).Output()
	if err != nil {
		return 0 // pgrep exits 1 when nothing matches
	}
	n := 0
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" && l != "0" {
			n++
		}
	}
	return n
}

// TestPassingRunLeavesNoDirectory: a passing Run removes its run directory
// and the temporary directory Check made to hold it.
func TestPassingRunLeavesNoDirectory(t *testing.T) {
	t.Setenv("CHAINRAFT_RUNS", "")
	var dir string
	t.Run("run", func(t *testing.T) {
		out := Run(t, Options{Store: "memory", TimeLimit: time.Second})
		dir = out.Dir
		require.DirExists(t, dir)
	})
	require.NotEmpty(t, dir)
	_, err := os.Stat(filepath.Dir(dir))
	require.True(t, os.IsNotExist(err), "%s is left behind", filepath.Dir(dir))
}
