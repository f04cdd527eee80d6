package lockload

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/internal/proc"
)

func TestMain(m *testing.M) { os.Exit(proc.RunTests(m)) }

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// runUnderPauses runs the workload against its own real ZooKeeper with real
// worker processes, the nemesis SIGSTOPping holders for three session
// timeouts, and checks that nothing it started is left running.
func runUnderPauses(t *testing.T, recipe string, fencing bool, d time.Duration) *Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d+60*time.Second)
	defer cancel()
	dir := t.TempDir()
	res, err := Run(ctx, Config{
		Dir: dir, Workers: 3, Recipe: recipe, Fencing: fencing,
		Duration: d, PauseEvery: time.Second, PauseFor: 3 * time.Second,
		SessionTimeout: time.Second, Hold: 100 * time.Millisecond,
		Binary: proc.BuildChainraft(t), Seed: 7, Progress: testWriter{t},
	})
	require.NoError(t, err)
	require.Zero(t, proc.Live(), "processes left running after Run")
	for _, f := range []string{"history.jsonl", "nemesis.jsonl", "summary.json", "workers/0.jsonl", "report.html"} {
		_, err := os.Stat(filepath.Join(dir, f))
		require.NoError(t, err)
	}
	// The run describes itself as a lock run, and its report says its verdict.
	var sum struct {
		Workload string `json:"workload"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "summary.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &sum))
	require.Equal(t, Workload, sum.Workload)
	page, err := os.ReadFile(filepath.Join(dir, "report.html"))
	require.NoError(t, err)
	badge := map[string]string{VerdictOK: "ok", VerdictViolation: "illegal", VerdictUnknown: "unknown"}[res.Check.Verdict]
	require.Contains(t, string(page), `<span class="badge `+badge+`" id="verdict">`)
	// The history on disk is the one checked.
	h, err := ReadHistory(filepath.Join(dir, "history.jsonl"))
	require.NoError(t, err)
	again, err := Check(h)
	require.NoError(t, err)
	got := res.Check
	got.Violations = append([]Violation(nil), got.Violations...)
	for i := range got.Violations {
		got.Violations[i].Paused = false // Run's annotation, not Check's
	}
	got.Unexplained = 0
	require.Equal(t, got, again)
	// Either lock is soft, not broken: every two-holder collision involves
	// a holder the nemesis paused. (A NaiveLock whose Unlock deleted its
	// successor's znode after a session change failed this.)
	require.Zero(t, res.Check.Unexplained, "%+v", res.Check.Violations)
	require.GreaterOrEqual(t, res.Pauses, 1, "the nemesis paused no holder")
	require.Greater(t, res.Check.AcceptedWrites, 10)
	return res
}

// Without fencing, a holder paused past its session timeout comes back and
// writes on a stale read: the lock had two holders and an increment is lost.
func TestUnfencedLockUnderPausesIsCaught(t *testing.T) {
	res := runUnderPauses(t, RecipeLock, false, 9*time.Second)
	t.Logf("unfenced: %d pauses, %d violations, final %d after %d accepted writes",
		res.Pauses, res.Check.ViolationCount, res.Check.Final, res.Check.AcceptedWrites)
	require.Equal(t, VerdictViolation, res.Check.Verdict)
	kinds := map[string]int{}
	for _, v := range res.Check.Violations {
		kinds[v.Kind]++
	}
	require.Positive(t, kinds[KindInterleave], "%+v", res.Check.Violations)
	require.Positive(t, kinds[KindLostIncrement], "%+v", res.Check.Violations)
	require.Less(t, res.Check.Final, int64(res.Check.AcceptedWrites))
	require.Positive(t, res.Check.TwoHolders)
}

// With fencing the same pauses still give the lock two holders, but the
// resource refuses the deposed holder's token and the counter stays right.
func TestFencedLockUnderPausesIsCorrect(t *testing.T) {
	if testing.Short() {
		t.Skip("a 10 s run against real ZooKeeper and processes")
	}
	res := runUnderPauses(t, RecipeLock, true, 10*time.Second)
	t.Logf("fenced: %d pauses, %d stale refusals, %d two-holder overlaps, final %d",
		res.Pauses, res.Check.StaleRefused, res.Check.TwoHolders, res.Check.Final)
	require.Equal(t, VerdictOK, res.Check.Verdict, "%+v", res.Check.Violations)
	require.Positive(t, res.Check.StaleRefused, "no stale token was refused: the pauses tested nothing")
	require.Positive(t, res.Check.TwoHolders)
	require.Equal(t, int64(res.Check.AcceptedWrites), res.Check.Final)
}

// The naive lock under the same pauses: caught (two holders, a lost
// increment), and every interleaving explained by a pause. Before its
// Unlock was guarded by the owner marker, a resumed deposed holder deleted
// its successor's znode and a third worker entered the successor's
// critical section: an interleaving with no paused holder.
func TestUnfencedNaiveLockUnderPauses(t *testing.T) {
	if testing.Short() {
		t.Skip("a 9 s run against real ZooKeeper and processes")
	}
	res := runUnderPauses(t, RecipeNaive, false, 9*time.Second)
	require.Equal(t, VerdictViolation, res.Check.Verdict)
	require.Positive(t, res.Check.TwoHolders)
}
