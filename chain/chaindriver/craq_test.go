package chaindriver

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/chain"
	"github.com/chainraft/chainraft/harness"
	"github.com/chainraft/chainraft/harness/workload"
	"github.com/chainraft/chainraft/histories"
	"github.com/chainraft/chainraft/internal/proc"
	"github.com/chainraft/chainraft/nemesis"
)

// TestChainCraqReadsUnderFaults runs CRAQ reads over one chain of three
// real nodes through a pause and a partition — the faults that take a
// live member out of the chain while it may still hold a client's read —
// and asks for what every nemesis run must show (a linearizable verdict,
// every end-of-run check passed), plus that the reads were spread: with
// one chain, tail reads would all go to one node (node 3 while the chain
// is in its preferred order); CRAQ's go to every member. Budget: about
// 15 s, ZooKeeper's start a third of it.
func TestChainCraqReadsUnderFaults(t *testing.T) {
	if _, err := os.Stat("/usr/share/zookeeper"); err != nil {
		t.Skip("ZooKeeper is not installed")
	}
	if testing.Short() {
		t.Skip("end-to-end: real ZooKeeper and node processes")
	}
	kinds := []string{nemesis.KindPause, nemesis.KindPartition}
	interval := time.Second
	res, err := harness.Run(context.Background(), harness.RunConfig{
		Driver: &Driver{Chains: 1, Replicas: 3, ZKServers: 1}, Name: "craq", Out: t.TempDir(),
		TimeLimit: time.Duration(2*len(kinds)+3) * interval,
		Clients:   6,
		// Few keys and many writes, so that reads meet dirty versions.
		Workload:    workload.Config{Seed: 11, Keys: 8, ReadFraction: 0.6},
		Cluster:     harness.Env{Nodes: 3, Binary: proc.BuildChainraft(t), RequestTimeout: time.Second, ReadMode: chain.ReadModeCRAQ},
		CheckBudget: 30 * time.Second,
		Nemesis:     harness.NemesisConfig{Kinds: kinds, Interval: interval},
		Progress:    testWriter{t},
	})
	require.NoError(t, err)
	s := res.Summary
	require.Equal(t, string(histories.VerdictOK), s.Verdict, "run %s", res.Dir)
	require.Empty(t, harness.FailedChecks(s), "run %s", res.Dir)
	require.Equal(t, chain.ReadModeCRAQ, s.ReadMode)

	byNode := readsByNode(t, filepath.Join(res.Dir, "history.jsonl"))
	total := 0
	for _, n := range byNode {
		total += n
	}
	require.Positive(t, total)
	for _, node := range []string{"1", "2", "3"} {
		require.Greater(t, byNode[node]*10, total, "node %s answered %d of %d reads (%v)", node, byNode[node], total, byNode)
	}
}

// readsByNode counts the successful reads each node answered.
func readsByNode(t *testing.T, path string) map[string]int {
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	out := map[string]int{}
	dec := json.NewDecoder(f)
	for dec.More() {
		var op struct {
			Op, Outcome, Node string
		}
		require.NoError(t, dec.Decode(&op))
		if op.Op == "get" && op.Outcome == "ok" {
			out[op.Node]++
		}
	}
	return out
}
