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
	"github.com/chainraft/chainraft/raftkv/raftdriver"
)

// killBehindTheHarness SIGKILLs node 2's process directly, as a crash the
// harness did not plan would.
type killBehindTheHarness struct{ after time.Duration }

func (k killBehindTheHarness) Run(ctx context.Context, env harness.SidecarEnv) error {
	select {
	case <-ctx.Done():
		return nil
	case <-time.After(k.after):
	}
	c := env.Cluster.(*raftdriver.Cluster)
	_ = c.Process(2).Kill() // behind proccluster's back: unplanned
	<-ctx.Done()
	return nil
}

func (killBehindTheHarness) Finish(*harness.Summary, *harness.RunHistory) []histories.Annotation {
	return nil
}

// TestUnplannedDeathIsAnInfrastructureFailure: a node that dies without
// the nemesis killing it ends the run as a failed run (exit 4), naming the
// node, not as the store's failure; the history so far is checked.
func TestUnplannedDeathIsAnInfrastructureFailure(t *testing.T) {
	res, err := harness.Run(context.Background(), harness.RunConfig{
		Store: "raft", Name: "crash", Out: t.TempDir(), TimeLimit: 30 * time.Second, Clients: 4,
		Workload: workload.Config{Seed: 1, Keys: 5, AppendFraction: -1, CASFraction: -1},
		Cluster:  harness.Env{Binary: proc.BuildChainraft(t), Log: testLog{t}},
		Sidecars: []harness.Sidecar{killBehindTheHarness{after: time.Second}},
	})
	require.ErrorIs(t, err, harness.ErrInfrastructure)
	require.ErrorContains(t, err, "raft node 2 exited on its own")
	require.NotNil(t, res)
	require.Less(t, res.Summary.DurationS, 15.0, "the run ended at the death, not at its time limit")
	require.Equal(t, string(histories.VerdictOK), res.Summary.Verdict, "what was recorded is checked")
}
