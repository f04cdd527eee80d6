package zookeeper_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/chainrafttest"
	"github.com/chainraft/chainraft/harness"
	"github.com/chainraft/chainraft/histories"
	"github.com/chainraft/chainraft/internal/proc"
	"github.com/chainraft/chainraft/internal/zkserver"
	"github.com/chainraft/chainraft/nemesis"
	"github.com/chainraft/chainraft/zookeeper"
)

// TestMain kills whatever a test leaves running, also on ^C.
func TestMain(m *testing.M) { os.Exit(proc.RunTests(m)) }

// needZooKeeper skips a test only when java or the jars are missing.
func needZooKeeper(t *testing.T) {
	t.Helper()
	if _, err := zkserver.Find(); errors.Is(err, zkserver.ErrNotInstalled) {
		t.Skipf("skipping: %v", err)
	}
}

// isolateFollower writes a nemesis.jsonl holding one fault, "partition
// isolate follower" from at for dur, for Options.Replay.
func isolateFollower(t *testing.T, at, dur time.Duration) string {
	t.Helper()
	ev := nemesis.Event{
		Step: 1, Fault: nemesis.KindPartition, Event: nemesis.PhaseInject,
		Spec: &nemesis.Fault{Kind: nemesis.KindPartition, Shape: nemesis.ShapeIsolate, Role: nemesis.RoleFollower, Seed: 1},
		At:   at, Duration: dur,
	}
	b, err := json.Marshal(ev)
	require.NoError(t, err)
	p := filepath.Join(t.TempDir(), "nemesis.jsonl")
	require.NoError(t, os.WriteFile(p, append(b, '\n'), 0o644))
	return p
}

// The schedule both read modes face: a follower cut from the other two
// servers (quorum and election links) for 4 s. Until it notices — its
// leader goes silent for syncLimit × tickTime, 2.5 s — it keeps answering
// its sessions from its own state while the majority commits writes.
func schedule(t *testing.T) string { return isolateFollower(t, 1500*time.Millisecond, 4*time.Second) }

// Local reads (plain getData) are caught under "partition isolate
// follower".
func TestLocalReadsCaughtIsolatingAFollower(t *testing.T) {
	needZooKeeper(t)
	out, err := chainrafttest.Check(context.Background(), chainrafttest.Options{
		Store: zookeeper.Name, Replay: schedule(t), TimeLimit: 7 * time.Second,
		Env: harness.Env{ReadMode: zookeeper.ReadModeLocal},
	}, "")
	require.NoError(t, err)
	t.Cleanup(out.Remove)
	require.Equal(t, string(histories.VerdictIllegal), out.Verdict, "stale local reads went unnoticed: %s", out.Dir)
}

// sync + getData passes the same schedule, every end-of-run check too.
func TestSyncReadsPassIsolatingAFollower(t *testing.T) {
	needZooKeeper(t)
	out := chainrafttest.Run(t, chainrafttest.Options{
		Store: zookeeper.Name, Replay: schedule(t), TimeLimit: 7 * time.Second,
		Env: harness.Env{ReadMode: zookeeper.ReadModeSync, RequestTimeout: 2 * time.Second},
	})
	require.NotNil(t, out)
	require.GreaterOrEqual(t, out.Summary.OpsOK, 300, "a run that did next to nothing proves nothing")
}

// sync reads pass kills, pauses and partitions (leader or follower).
func TestSyncReadsUnderKillPausePartition(t *testing.T) {
	if testing.Short() {
		t.Skip("three JVM restarts: not short")
	}
	needZooKeeper(t)
	chainrafttest.Run(t, chainrafttest.Options{
		Store: zookeeper.Name, Nemesis: "kill,pause,partition", TimeLimit: 8 * time.Second,
		Env: harness.Env{RequestTimeout: 2 * time.Second},
	})
}
