package raftdriver_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/harness"
	"github.com/chainraft/chainraft/harness/workload"
	"github.com/chainraft/chainraft/histories"
	"github.com/chainraft/chainraft/internal/proc"
	"github.com/chainraft/chainraft/nemesis"
	"github.com/chainraft/chainraft/raftkv/raftdriver"
)

// TestGroupsUnderFaults runs a multi-raft store (four groups of three on
// four nodes) through harness.Run while its leader (group 0's) is killed
// and a node is cut off: every group serves, the history is linearizable,
// and the end-of-run checks — every group's replicas agree — pass.
// Budget: about 12 s.
func TestGroupsUnderFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node processes for ~12s")
	}
	d := &raftdriver.Driver{Groups: 4}
	require.NotContains(t, d.FaultKinds(), nemesis.KindMember, "no member faults with several groups")
	res, err := harness.Run(context.Background(), harness.RunConfig{
		Driver: d, Name: "groups", Out: t.TempDir(), TimeLimit: 7 * time.Second, Clients: 4,
		Workload:    workload.Config{Seed: 3, Keys: 20},
		Cluster:     harness.Env{Nodes: 4, Binary: proc.BuildChainraft(t), RequestTimeout: time.Second},
		CheckBudget: 30 * time.Second,
		Nemesis:     harness.NemesisConfig{Kinds: []string{nemesis.KindKill, nemesis.KindPartition}, Interval: time.Second},
		Progress:    testLog{t},
	})
	require.NoError(t, err)
	s := res.Summary
	require.Equal(t, string(histories.VerdictOK), s.Verdict, "run %s", res.Dir)
	require.Empty(t, harness.FailedChecks(s), "run %s", res.Dir)
	var digests string
	for _, c := range s.Checks {
		if c.Name == "replica-digests" {
			digests = c.Detail
		}
	}
	for _, g := range []string{"group 0:", "group 1:", "group 2:", "group 3:"} {
		require.Contains(t, digests, g, "every group's replicas were compared")
	}
	require.Greater(t, s.OpsOK, 200, "the workload made progress")
}
