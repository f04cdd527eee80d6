package report

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDeriveScaleAndVerdict(t *testing.T) {
	ps := []ScalePoint{
		{Series: "chain", Nodes: 3, Throughput: 300, Verdict: "ok"},
		{Series: "chain", Nodes: 6, Throughput: 480, Verdict: "ok"},
		{Series: "raft", Nodes: 6, Throughput: 100, Verdict: "ok"},
	}
	DeriveScale(ps)
	require.Nil(t, ps[0].LinearOps, "the smallest cluster is its own base")
	require.InDelta(t, 600, *ps[1].LinearOps, 1e-9)
	require.InDelta(t, 0.8, *ps[1].LinearRatio, 1e-9)
	require.Nil(t, ps[2].LinearOps, "a series with one size has nothing to compare")
	require.Equal(t, verdictOK, ScaleVerdict(ps))
	ps[2].Error = "failed"
	require.Equal(t, verdictUnknown, ScaleVerdict(ps))
	ps[1].Verdict = verdictIllegal
	require.Equal(t, verdictIllegal, ScaleVerdict(ps))
	require.Equal(t, verdictUnknown, ScaleVerdict(nil))
}

// TestWriteScale renders a sweep of two series over two sizes and two
// quotas: a chart against nodes per quota, against the quota per size,
// and a row per run.
func TestWriteScale(t *testing.T) {
	dir := t.TempDir()
	pred := 1000.0
	var ps []ScalePoint
	for _, cpu := range []float64{0.5, 1} {
		for _, n := range []int{3, 5} {
			for _, s := range []string{"raft", "chain"} {
				ps = append(ps, ScalePoint{Series: s, Store: s, Nodes: n, Shards: n, NodeCPUs: cpu, Verdict: "ok",
					Throughput: 100 * float64(n) * cpu, ReadOps: 50 * float64(n), P99MS: 10, PredictedOps: &pred})
			}
		}
	}
	DeriveScale(ps)
	f := scaleFileJSON{Series: []string{"raft", "chain"}, Nodes: []int{3, 5}, NodeCPUs: []float64{0.5, 1}, Points: ps, ReadFraction: 1}
	b, err := json.Marshal(f)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "scale.json"), b, 0o644))
	require.NoError(t, WriteScale(dir))
	html, err := os.ReadFile(filepath.Join(dir, "scale.html"))
	require.NoError(t, err)
	page := string(html)
	require.Contains(t, page, `id="verdict">ok<`)
	require.Contains(t, page, "ok ops/s against nodes, node CPUs 0.5")
	require.Contains(t, page, "ok ops/s against CPU per node, 3 nodes")
	require.Equal(t, 8, strings.Count(page, `<span class="pill pass">`), "a row per run")
	require.Contains(t, page, "<svg")
}
