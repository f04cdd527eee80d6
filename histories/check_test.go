package histories

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/stretchr/testify/require"
)

func mustRead(t *testing.T, name string) []Operation {
	t.Helper()
	ops, err := ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return ops
}

func TestPruneAndBoundCounts(t *testing.T) {
	for _, tc := range []struct {
		file            string
		pruned, bounded int
	}{
		{"ok-unknown-write-unobserved.jsonl", 1, 0},
		{"ok-unknown-write-observed.jsonl", 0, 1},
		{"ok-unknown-cas-applied.jsonl", 1, 1},        // cas zz->c unobserved, a->b observed
		{"ok-unknown-write-explains-cas.jsonl", 0, 0}, // a cas that did not swap may have seen it
		{"ok-non-unique-values.jsonl", 0, 0},          // values repeat: no pruning
		{"ok-appends.jsonl", 0, 1},                    // the unknown append "c" shows in the state "bac"
		{"illegal-unknown-write-unobserved.jsonl", 2, 0},
		{"illegal-unknown-write-seen-before-call.jsonl", 0, 0}, // left for the search to refute
	} {
		t.Run(tc.file, func(t *testing.T) {
			res, err := Check(context.Background(), mustRead(t, tc.file), CheckOptions{})
			require.NoError(t, err)
			require.Equal(t, tc.pruned, res.Pruned, "pruned")
			require.Equal(t, tc.bounded, res.Bounded, "bounded")
		})
	}
}

func TestPerKeyVerdictsSorted(t *testing.T) {
	ops := mustRead(t, "illegal-one-key-of-two.jsonl")
	ops = append(ops,
		Operation{Client: 5, Op: Put, Key: "only-failed", Value: "q", Call: 0, Return: 5, Outcome: Fail},
		Operation{Client: 6, Op: Get, Key: "a-first", Call: 0, Return: 5, Outcome: OK},
	)
	res, err := Check(context.Background(), ops, CheckOptions{})
	require.NoError(t, err)
	require.Equal(t, VerdictIllegal, res.Verdict)
	var got []string
	for _, k := range res.Keys {
		got = append(got, fmt.Sprintf("%s=%s/%d", k.Key, k.Verdict, k.Ops))
	}
	require.Equal(t, []string{"bad/key=illegal/2", "a-first=ok/1", "ok-key=ok/2", "only-failed=ok/0"}, got)
}

func TestCheckRejectsInvalidOperations(t *testing.T) {
	ops := []Operation{
		{Client: 0, Op: Put, Key: "x", Value: "a", Call: 0, Return: 10, Outcome: OK},
		{Client: 0, Op: Put, Key: "x", Value: "b", Call: 5, Return: 20, Outcome: OK},
	}
	_, err := Check(context.Background(), ops, CheckOptions{})
	var ie *InputError
	require.True(t, errors.As(err, &ie))
	require.Equal(t, 2, ie.Line)
	require.Contains(t, err.Error(), "operation 2: client 0 overlaps")
}

// hardHistory is one key, many clients and unknown writes, with a read of a
// value never written late in the history; a duplicated value turns pruning
// off. Proving it illegal means exhausting a search that doubles with every
// open unknown write.
func hardHistory() []Operation {
	ops := genHistory(genConfig{ops: 3000, clients: 16, keys: 1, unknown: 0.05, put: 0.5, seed: 7})
	// Rename the second ok put's value to the first's, reads included: the
	// history stays linearizable, but its values are no longer unique.
	var puts []int
	for i := range ops {
		if ops[i].Op == Put && ops[i].Outcome == OK {
			puts = append(puts, i)
		}
	}
	from, to := ops[puts[1]].Value, ops[puts[0]].Value
	for i := range ops {
		if ops[i].Value == from {
			ops[i].Value = to
		}
		if ops[i].Output == from {
			ops[i].Output = to
		}
	}
	for i := len(ops) * 9 / 10; i < len(ops); i++ {
		if ops[i].Op == Get && ops[i].Outcome == OK {
			ops[i].Found, ops[i].Output = true, "never written"
			break
		}
	}
	return ops
}

func TestTinyBudgetIsUnknownNotOk(t *testing.T) {
	ops := hardHistory()
	start := time.Now()
	res, err := Check(context.Background(), ops, CheckOptions{Budget: 200 * time.Millisecond})
	require.NoError(t, err)
	require.Equal(t, VerdictUnknown, res.Verdict)
	require.Equal(t, VerdictUnknown, res.Keys[0].Verdict)
	require.Less(t, time.Since(start), 5*time.Second, "the budget must stop the search")
}

func TestCancelledContextIsUnknown(t *testing.T) {
	ops := hardHistory()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	res, err := Check(ctx, ops, CheckOptions{Budget: time.Minute})
	require.NoError(t, err)
	require.Equal(t, VerdictUnknown, res.Verdict)
	require.Less(t, time.Since(start), 5*time.Second, "cancelling must stop the search")

	// Already cancelled: nothing is searched, nothing is Ok.
	res, err = Check(ctx, mustRead(t, "ok-put-get.jsonl"), CheckOptions{})
	require.NoError(t, err)
	require.Equal(t, VerdictUnknown, res.Verdict)
}

// TestPruningAgreesWithPlainPorcupine compares Check, which prunes and bounds
// unknown writes, with porcupine on the unpruned history, over many small
// random histories, some made non-linearizable by corrupting a result.
func TestPruningAgreesWithPlainPorcupine(t *testing.T) {
	n := 400
	if testing.Short() {
		n = 100
	}
	verdicts := map[Verdict]int{}
	pruned, bounded, skipped, segments := 0, 0, 0, 0
	old := minSegmentOps
	t.Cleanup(func() { minSegmentOps = old })
	for seed := range uint64(n) {
		minSegmentOps = old
		if seed%2 == 1 {
			minSegmentOps = 2 // cut wherever the rules allow
		}
		rng := rand.New(rand.NewPCG(seed, 1))
		cfg := genConfig{ops: 20 + rng.IntN(40), clients: 3 + rng.IntN(4), keys: 1 + rng.IntN(3), unknown: 0.15, put: 0.3, cas: 0.25, seed: seed}
		switch seed % 5 {
		case 0:
			cfg.append, cfg.cas = 0.15, 0.1
		case 1, 2:
			cfg.put, cfg.cas = 0.5, 0 // put/get only: value clusters apply
		}
		if seed%7 == 0 {
			cfg.valueDomain = 4
		}
		ops := genHistory(cfg)
		if rng.IntN(2) == 0 {
			corrupt(rng, ops)
		}
		want := plainCheck(ops, 5*time.Second)
		if want == porcupine.Unknown {
			skipped++ // too hard for the reference: nothing to compare
			continue
		}
		res, err := Check(context.Background(), ops, CheckOptions{Budget: 20 * time.Second})
		require.NoError(t, err)
		require.Equal(t, strings.ToLower(string(want)), string(res.Verdict), "seed %d", seed)
		verdicts[res.Verdict]++
		for _, kh := range partition(ops, 1) {
			segments += len(kh.segs) - 1
		}
		pruned += res.Pruned
		bounded += res.Bounded
	}
	t.Logf("verdicts %v, pruned %d, bounded %d, cuts %d, too hard for the reference %d", verdicts, pruned, bounded, segments, skipped)
	require.Positive(t, segments)
	require.Less(t, skipped, n/10)
	require.Positive(t, verdicts[VerdictOK])
	require.Positive(t, verdicts[VerdictIllegal])
	require.Positive(t, pruned)
	require.Positive(t, bounded)
}

// corrupt changes one completed result: a read's value or a cas's answer.
func corrupt(rng *rand.Rand, ops []Operation) {
	for range 100 {
		i := rng.IntN(len(ops))
		op := &ops[i]
		if op.Outcome != OK {
			continue
		}
		switch op.Op {
		case Get:
			j := rng.IntN(len(ops))
			if ops[j].Key == op.Key && ops[j].Op != Get {
				op.Found, op.Output = true, ops[j].Value
			} else {
				op.Found, op.Output = false, ""
			}
			return
		case CAS:
			op.Swapped = !op.Swapped
			return
		}
	}
}

func TestVisualizeIllegalAndAll(t *testing.T) {
	ops := mustRead(t, "illegal-one-key-of-two.jsonl")
	ops[0].Error = "<script>alert(1)</script>"
	dir := t.TempDir()
	anns := []Annotation{
		{Tag: "nemesis", Start: 5, End: 25, Description: "partition n1", Color: "#efaefc"},
		{Tag: "nemesis", Start: 1e9, Description: "far outside the history"},
	}
	res, err := Check(context.Background(), ops, CheckOptions{VisualizeDir: dir, Annotations: anns})
	require.NoError(t, err)
	require.Len(t, res.Visualizations, 1)
	require.Equal(t, res.Keys[0].Visualization, res.Visualizations[0])
	require.Equal(t, dir, filepath.Dir(res.Visualizations[0]))
	require.True(t, strings.HasPrefix(filepath.Base(res.Visualizations[0]), "bad_key~"))
	page, err := os.ReadFile(res.Visualizations[0])
	require.NoError(t, err)
	require.Contains(t, string(page), "partition n1")
	require.NotContains(t, string(page), "far outside the history")

	res, err = Check(context.Background(), ops, CheckOptions{VisualizeDir: dir, VisualizeAll: true, Annotations: anns})
	require.NoError(t, err)
	require.Len(t, res.Visualizations, 2)
	page, err = os.ReadFile(filepath.Join(dir, "ok-key.html"))
	require.NoError(t, err)
	require.NotContains(t, string(page), "<script>alert")
	require.Contains(t, string(page), `\u0026lt;script\u0026gt;`) // html-escaped, then JSON-escaped

	// A cap on bytes skips pages instead of writing them.
	dir2 := t.TempDir()
	res, err = Check(context.Background(), ops, CheckOptions{VisualizeDir: dir2, VisualizeAll: true, MaxVisualizationBytes: 1000})
	require.NoError(t, err)
	require.Empty(t, res.Visualizations)
	entries, err := os.ReadDir(dir2)
	require.NoError(t, err)
	require.Empty(t, entries)
}

func TestVisualizeCutsLongKeys(t *testing.T) {
	old := visualizeMaxOps
	visualizeMaxOps = 400
	t.Cleanup(func() { visualizeMaxOps = old })
	ops := genHistory(genConfig{ops: 3 * visualizeMaxOps, clients: 8, keys: 1, unknown: 0.01, put: 0.5, seed: 3})
	for i := len(ops) * 2 / 3; i < len(ops); i++ {
		if ops[i].Op == Get && ops[i].Outcome == OK {
			ops[i].Found, ops[i].Output = true, "never written"
			break
		}
	}
	dir := t.TempDir()
	res, err := Check(context.Background(), ops, CheckOptions{VisualizeDir: dir})
	require.NoError(t, err)
	require.Equal(t, VerdictIllegal, res.Verdict)
	require.Len(t, res.Visualizations, 1)
	page, err := os.ReadFile(res.Visualizations[0])
	require.NoError(t, err)
	require.Contains(t, string(page), "cut: showing ops ")
	require.Contains(t, string(page), fmt.Sprintf(" of %d", res.Keys[0].Ops))
	require.Contains(t, string(page), "longest linearization of them was cut")
	require.NotContains(t, string(page), "linearizable on its own", "the window must keep the violation")
	require.Less(t, len(page), 4<<20)
}

func TestFileName(t *testing.T) {
	require.Equal(t, "plain-key_1.x", fileName("plain-key_1.x"))
	seen := map[string]string{}
	for _, k := range []string{"a/b", "a_b", "../etc", "", ".", "..", "a b", strings.Repeat("k", 200), strings.Repeat("k", 201)} {
		n := fileName(k)
		require.NotContains(t, n, "/")
		require.NotEmpty(t, n)
		require.NotEqual(t, '.', rune(n[0]))
		require.LessOrEqual(t, len(n), 80)
		prev, dup := seen[n]
		require.False(t, dup, "%q and %q share %q", prev, k, n)
		seen[n] = k
	}
}

func TestVisualizeShowsTheIllegalSegment(t *testing.T) {
	ops := genHistory(genConfig{ops: 2000, clients: 2, keys: 1, put: 0.5, seed: 5})
	for i := len(ops) / 2; i < len(ops); i++ {
		if ops[i].Op == Get && ops[i].Outcome == OK {
			ops[i].Found, ops[i].Output = true, "never written"
			break
		}
	}
	kh := partition(ops, 1)[0]
	require.Greater(t, len(kh.segs), 2, "two clients on one key should leave quiescent points")
	dir := t.TempDir()
	res, err := Check(context.Background(), ops, CheckOptions{VisualizeDir: dir})
	require.NoError(t, err)
	require.Equal(t, VerdictIllegal, res.Verdict)
	require.Len(t, res.Visualizations, 1)
	page, err := os.ReadFile(res.Visualizations[0])
	require.NoError(t, err)
	require.Contains(t, string(page), "cut: showing ops ")
	require.Contains(t, string(page), "form a segment")
	require.Contains(t, string(page), "never written")
	require.NotContains(t, string(page), "linearizable on its own")
}

// TestValueClustersAgreeWithPlainPorcupine aims at the cluster bounds of
// put/get keys: one busy key, and corruptions that are near misses (a read
// returning a value written close by, or absent), where a wrong bound would
// flip the verdict.
func TestValueClustersAgreeWithPlainPorcupine(t *testing.T) {
	n := 1500
	if testing.Short() {
		n = 300
	}
	verdicts := map[Verdict]int{}
	for seed := range uint64(n) {
		rng := rand.New(rand.NewPCG(seed, 2))
		ops := genHistory(genConfig{ops: 10 + rng.IntN(30), clients: 2 + rng.IntN(7), keys: 1, unknown: 0.1 * float64(rng.IntN(2)), put: 0.5, seed: seed})
		for range rng.IntN(3) {
			i := rng.IntN(len(ops))
			if ops[i].Op != Get || ops[i].Outcome != OK {
				continue
			}
			j := max(0, min(len(ops)-1, i+rng.IntN(9)-4))
			if ops[j].Op == Put {
				ops[i].Found, ops[i].Output = true, ops[j].Value
			} else {
				ops[i].Found, ops[i].Output = false, ""
			}
		}
		want := plainCheck(ops, 5*time.Second)
		if want == porcupine.Unknown {
			continue
		}
		res, err := Check(context.Background(), ops, CheckOptions{Budget: 10 * time.Second})
		require.NoError(t, err)
		require.Equal(t, strings.ToLower(string(want)), string(res.Verdict), "seed %d", seed)
		verdicts[res.Verdict]++
	}
	t.Logf("verdicts %v", verdicts)
	require.Greater(t, verdicts[VerdictOK], n/5)
	require.Greater(t, verdicts[VerdictIllegal], n/5)
}
