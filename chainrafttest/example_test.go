package chainrafttest_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/chainrafttest"
)

// A test in a user's repository: the raft store under kills and pauses,
// judged by the harness. A driver of the user's own goes in Driver instead
// of Store.
func TestRaftUnderKillsAndPauses(t *testing.T) {
	chainrafttest.Run(t, chainrafttest.Options{
		Store:     "raft",
		Nemesis:   "kill,pause",
		TimeLimit: 5 * time.Second,
	})
}

// Check is Run without a test: it returns the outcome. (The memory store,
// the control, has no nodes to fault.)
func ExampleCheck() {
	out, err := chainrafttest.Check(context.Background(), chainrafttest.Options{
		Store: "memory", TimeLimit: time.Second,
	}, "")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer out.Remove()
	fmt.Println("verdict:", out.Verdict, "passed:", out.Failure == "")
	// Output: verdict: ok passed: true
}

// fakeT records what Run reports, so a test can look at a failure's text.
type fakeT struct {
	testing.TB
	failed   bool
	msg      string
	cleanups []func()
}

func (f *fakeT) Helper()                        {}
func (f *fakeT) Name() string                   { return "TestRaftWithABug" }
func (f *fakeT) Logf(string, ...any)            {}
func (f *fakeT) Failed() bool                   { return f.failed }
func (f *fakeT) Cleanup(fn func())              { f.cleanups = append(f.cleanups, fn) }
func (f *fakeT) Fatalf(format string, a ...any) { f.failed, f.msg = true, fmt.Sprintf(format, a...) }

// TestRunFailsWithTheReplayCommand: the same test, its store carrying a
// seeded bug, fails naming the verdict, the seed, the replay command and the
// report, and keeps the run directory.
func TestRunFailsWithTheReplayCommand(t *testing.T) {
	ft := &fakeT{}
	out := chainrafttest.Run(ft, chainrafttest.Options{
		Store: "raft", Bug: "early-ack", TimeLimit: 6 * time.Second, Seed: 2,
	})
	for _, c := range ft.cleanups {
		c()
	}
	require.True(t, ft.failed, "a store with a seeded bug must fail the test")
	require.NotNil(t, out)
	t.Log(ft.msg)
	require.Contains(t, ft.msg, "raft: not linearizable")
	require.Contains(t, ft.msg, "seed:   2")
	require.Contains(t, ft.msg, "CHAINRAFT_SEED=2")
	require.Contains(t, ft.msg, "-run '^TestRaftWithABug$'")
	require.Contains(t, ft.msg, "report.html")
	_, err := os.Stat(out.Dir)
	require.NoError(t, err, "a failed run's directory is kept")
	require.True(t, strings.HasPrefix(out.Dir, os.TempDir()) || os.Getenv("CHAINRAFT_RUNS") != "")
	out.Remove()
}
