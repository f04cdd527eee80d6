package histories

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/stretchr/testify/require"
)

// TestAppendRulesAgreeWithReference checks the append rules (decoding,
// bounding, pruning, clusters, segments cut at reads, the witness) against
// the plain reference on thousands of small generated histories in the
// workload's shape (puts, cas and appends of unique tokens, unknown writes),
// linearizable ones, ones with planted stale reads and ones with a result
// corrupted at random.
func TestAppendRulesAgreeWithReference(t *testing.T) {
	n := 2000
	if testing.Short() || raceEnabled {
		n = 500
	}
	old := minSegmentOps
	t.Cleanup(func() { minSegmentOps = old })
	verdicts := map[Verdict]int{}
	skipped, bounded, pruned := 0, 0, 0
	for seed := range uint64(n) {
		rng := rand.New(rand.NewPCG(seed, 3))
		minSegmentOps = old
		if seed%2 == 0 {
			minSegmentOps = 2
		}
		cfg := GenConfig{Ops: 15 + rng.IntN(35), Clients: 2 + rng.IntN(6), Keys: 1 + rng.IntN(2),
			Unknown: 0.05 + 0.15*rng.Float64(), Put: 0.2, CAS: 0.1 + 0.1*rng.Float64(), Append: 0.15 + 0.2*rng.Float64(), Seed: seed}
		if seed%3 == 1 {
			cfg.Bad = 1
		}
		var ops []Operation
		err := Generate(cfg, func(op Operation) error { ops = append(ops, op); return nil })
		if err != nil {
			cfg.Bad = 0
			ops = ops[:0]
			require.NoError(t, Generate(cfg, func(op Operation) error { ops = append(ops, op); return nil }))
		}
		if seed%3 == 2 {
			corrupt(rng, ops)
		}
		want := plainCheck(ops, 5*time.Second)
		if want == porcupine.Unknown {
			skipped++
			continue
		}
		res, err := Check(context.Background(), ops, CheckOptions{Budget: 20 * time.Second})
		require.NoError(t, err)
		require.Equal(t, strings.ToLower(string(want)), string(res.Verdict), "seed %d", seed)
		if cfg.Bad > 0 {
			require.Equal(t, VerdictIllegal, res.Verdict, "seed %d: a planted stale read", seed)
		}
		verdicts[res.Verdict]++
		bounded += res.Bounded
		pruned += res.Pruned
	}
	t.Logf("verdicts %v, bounded %d, pruned %d, too hard for the reference %d", verdicts, bounded, pruned, skipped)
	require.Less(t, skipped, n/20)
	require.Greater(t, verdicts[VerdictOK], n/5)
	require.Greater(t, verdicts[VerdictIllegal], n/5)
	require.Positive(t, bounded)
}

// TestWitnessAgreesWithSearch checks the witness on generated
// linearizable histories: every Ok it gives must also be porcupine's.
func TestWitnessAgreesWithSearch(t *testing.T) {
	found := 0
	for seed := range uint64(300) {
		var ops []Operation
		require.NoError(t, Generate(GenConfig{Ops: 60, Clients: 4, Keys: 1, Unknown: 0.05, Put: 0.25, CAS: 0.1, Append: 0.15, Seed: seed},
			func(op Operation) error { ops = append(ops, op); return nil }))
		rng := rand.New(rand.NewPCG(seed, 4))
		if seed%2 == 1 {
			corrupt(rng, ops)
		}
		for _, kh := range partition(ops, 1) {
			for _, sg := range kh.segs {
				seg := kh.ops[sg.lo:sg.hi]
				if witness(seg, sg.init, kh.dec) {
					found++
					require.True(t, porcupine.CheckOperations(newModel(sg.init, nil), seg), "seed %d: the witness said ok", seed)
				}
			}
		}
	}
	t.Logf("segments explained by the witness: %d", found)
	require.Positive(t, found)
}
