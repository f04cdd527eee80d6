package etcd_test

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
	"github.com/chainraft/chainraft/etcd"
	"github.com/chainraft/chainraft/harness"
	"github.com/chainraft/chainraft/histories"
	"github.com/chainraft/chainraft/internal/proc"
	"github.com/chainraft/chainraft/nemesis"
)

// TestMain kills whatever a test leaves running, also on ^C.
func TestMain(m *testing.M) { os.Exit(proc.RunTests(m)) }

// needEtcd skips a test only when there is no etcd binary at all: every
// other failure to start is a failure.
func needEtcd(t *testing.T) {
	t.Helper()
	if _, err := etcd.Binary(); errors.Is(err, etcd.ErrNotInstalled) {
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

// Linearizable reads (the default) pass under kills, pauses and
// partitions, with every end-of-run check (replica hashes included).
func TestLinearizableUnderKillPausePartition(t *testing.T) {
	needEtcd(t)
	out := chainrafttest.Run(t, chainrafttest.Options{
		Store: etcd.Name, Nemesis: "kill,pause,partition", TimeLimit: 7 * time.Second,
		Env: harness.Env{RequestTimeout: 2 * time.Second},
	})
	require.NotNil(t, out)
	require.GreaterOrEqual(t, out.Summary.OpsOK, 500, "a run that did next to nothing proves nothing")
}

// Serializable reads are caught under "partition isolate follower": the
// cut-off member keeps answering serializable reads from its own state
// for the whole partition, while the majority commits writes those reads
// miss.
func TestSerializableCaughtIsolatingAFollower(t *testing.T) {
	needEtcd(t)
	out, err := chainrafttest.Check(context.Background(), chainrafttest.Options{
		Store: etcd.Name, Replay: isolateFollower(t, 1500*time.Millisecond, 4*time.Second),
		TimeLimit: 7 * time.Second,
		Env:       harness.Env{ReadMode: etcd.ReadModeSerializable},
	}, "")
	require.NoError(t, err)
	t.Cleanup(out.Remove)
	require.Equal(t, string(histories.VerdictIllegal), out.Verdict, "stale serializable reads went unnoticed: %s", out.Dir)
}

// A member fault removes a member through the cluster API and adds a
// fresh one, which catches up: the replicas hash the same at the end.
func TestMemberReplaced(t *testing.T) {
	if testing.Short() {
		t.Skip("a member change and a catch-up: not short")
	}
	needEtcd(t)
	chainrafttest.Run(t, chainrafttest.Options{
		Store: etcd.Name, Nemesis: "member", TimeLimit: 6 * time.Second, Interval: 2 * time.Second,
		Env: harness.Env{RequestTimeout: 2 * time.Second},
	})
}
