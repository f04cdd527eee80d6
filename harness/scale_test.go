package harness

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/harness/report"
)

func TestParseScaleSeries(t *testing.T) {
	s, err := ParseScaleSeries("raft")
	require.NoError(t, err)
	require.Equal(t, ScaleSeries{Store: "raft"}, s)
	require.Equal(t, "raft", s.Name())
	s, err = ParseScaleSeries(" raft/1 ")
	require.NoError(t, err)
	require.Equal(t, ScaleSeries{Store: "raft", Shards: 1}, s)
	require.Equal(t, "raft/1", s.Name())
	for _, bad := range []string{"", "/2", "raft/0", "raft/x"} {
		_, err := ParseScaleSeries(bad)
		require.ErrorIs(t, err, ErrInvalidConfig, bad)
	}
}

// TestScaleMemory sweeps the memory store over two sizes: one run per
// size, each linked from the scale directory, scale.json and scale.html
// written, clients per node applied; a fixed shard count is refused for a
// store without shards.
func TestScaleMemory(t *testing.T) {
	rc := baseConfig(t, "memory")
	rc.Name = ""
	rc.TimeLimit = 300 * time.Millisecond
	cfg := ScaleConfig{Series: []ScaleSeries{{Store: "memory"}}, Nodes: []int{1, 2}, ClientsPerNode: 2, Run: rc}
	res, err := Scale(context.Background(), cfg)
	require.NoError(t, err)
	require.Equal(t, "ok", res.Verdict())
	require.Len(t, res.Points, 2)
	for i, p := range res.Points {
		require.Equal(t, []int{1, 2}[i], p.Nodes)
		require.Equal(t, 2*p.Nodes, p.Clients)
		require.Equal(t, "ok", p.Verdict)
		require.Positive(t, p.Throughput)
		require.Zero(t, p.Shards, "the memory store has no shards")
		fi, err := os.Stat(filepath.Join(res.Dir, p.Link, "summary.json"))
		require.NoError(t, err, "the run is linked")
		require.False(t, fi.IsDir())
	}
	require.NotNil(t, res.Points[1].LinearOps, "the larger size is compared with linear scale-out from the smaller")
	b, err := os.ReadFile(filepath.Join(res.Dir, "scale.json"))
	require.NoError(t, err)
	var f scaleFile
	require.NoError(t, json.Unmarshal(b, &f))
	require.Equal(t, []string{"memory"}, f.Series)
	require.Len(t, f.Points, 2)
	html, err := os.ReadFile(filepath.Join(res.Dir, "scale.html"))
	require.NoError(t, err)
	require.Contains(t, string(html), "ok ops/s against nodes")

	cfg.Series = []ScaleSeries{{Store: "memory", Shards: 1}}
	_, err = Scale(context.Background(), cfg)
	require.ErrorIs(t, err, ErrInvalidConfig)
	require.ErrorContains(t, err, "no shards")
}

// TestScalePrediction: the busiest node bounds N separate servers, and
// the measured share of that bound is the busiest node's use of its cores.
func TestScalePrediction(t *testing.T) {
	busiest, all := 200.0, 500.0 // µs of CPU per op
	s := &Summary{Verdict: "ok", DurationS: 10, Throughput: 400, ThroughputByOp: map[string]float64{"get": 300},
		NodeCPUSeconds: map[string]float64{"1": 0.8, "2": 0.2}, BusiestNodeCPUPerOpUS: &busiest, NodeCPUPerOpUS: &all,
		Latency: map[string]Latency{"all": {P50MS: 2, P99MS: 9}}}
	p := report.ScalePoint{NodeCPUs: 0.5}
	fillScalePoint(&p, s)
	require.Equal(t, "1", p.BusiestNode)
	require.InDelta(t, 2500, *p.PredictedOps, 1e-9, "0.5 cores / 200 µs per op")
	require.InDelta(t, 0.16, *p.Agreement, 1e-9)
	require.InDelta(t, 100, p.WriteOps, 1e-9)
	require.Equal(t, 9.0, p.P99MS)
	p = report.ScalePoint{}
	fillScalePoint(&p, s)
	require.InDelta(t, 5000, *p.PredictedOps, 1e-9, "no quota: a server of one core")
}
