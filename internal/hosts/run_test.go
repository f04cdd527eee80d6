package hosts

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/internal/proc"
)

// waitNoLeftovers waits (bounded) until nothing chainraft's netns runs make
// is left on this machine, and fails naming what is.
func waitNoLeftovers(t *testing.T, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		left := Leftovers()
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("left behind after %v: %s", within, strings.Join(left, "; "))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestRunRaftOnNetnsHosts runs the raft store on three namespace hosts
// under kill, pause and partition (iptables: no proxy in the path) and
// wants exit 0, the nodes' files brought home, and nothing left behind.
func TestRunRaftOnNetnsHosts(t *testing.T) {
	needNetns(t)
	if testing.Short() {
		t.Skip("a 20 s run on three namespace hosts")
	}
	bin := proc.BuildChainraft(t)
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "run", "--store", "raft", "--hosts", "netns:3",
		"--nemesis", "kill,pause,partition", "--nemesis-interval", "3s", "--time-limit", "20s", "--out", out, "--clients", "4")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	require.NoError(t, err, "stdout:\n%s\nstderr:\n%s", stdout, stderr.String())
	require.Contains(t, string(stdout), "verdict:    ok")
	require.Contains(t, stderr.String(), "partition", "the schedule cut the network")
	require.Contains(t, stderr.String(), "firewall chain CHAINRAFT-")
	require.Contains(t, stderr.String(), "network cuts by iptables", "the summary says how cuts were made")
	for _, f := range []string{"nodes/1.log", "nodes/2.log", "nodes/3.log"} {
		_, err := os.Stat(out + "/latest/" + f)
		require.NoError(t, err, "the node's log was brought home")
	}
	waitNoLeftovers(t, 30*time.Second)
}

// TestKilledRunLeavesNothing SIGKILLs a harness in the middle of a run on
// namespace hosts: its reaper removes the namespaces, the bridge and every
// process in them (sshd and the nodes), with no next run needed.
func TestKilledRunLeavesNothing(t *testing.T) {
	needNetns(t)
	if testing.Short() {
		t.Skip("a run on three namespace hosts")
	}
	bin := proc.BuildChainraft(t)
	cmd := exec.Command(bin, "run", "--store", "raft", "--hosts", "netns:3",
		"--nemesis", "partition", "--nemesis-interval", "1s", "--time-limit", "60s", "--out", t.TempDir(), "--clients", "2")
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	defer cmd.Process.Kill()
	// Kill it once a partition is in force: rules, remote nodes and sshds
	// all exist then.
	seen := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		once := false
		for sc.Scan() {
			if !once && strings.Contains(sc.Text(), "injected: partition") {
				once = true
				close(seen)
			}
		}
	}()
	select {
	case <-seen:
	case <-time.After(4 * time.Minute):
		t.Fatal("no partition injected within 4 minutes")
	}
	require.NotEmpty(t, Leftovers(), "the run's namespaces exist while it runs")
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()
	waitNoLeftovers(t, 30*time.Second)
}

// TestSeededBugCaughtOnNetnsHosts plants raft's local-read bug and runs
// its paired faults (isolate the leader, pause the new one) on namespace
// hosts: the partitions are iptables rules, and the bug that proxied
// partitions catch is caught here too (exit 1, not linearizable).
func TestSeededBugCaughtOnNetnsHosts(t *testing.T) {
	needNetns(t)
	if testing.Short() {
		t.Skip("a 20 s run on three namespace hosts")
	}
	bin := proc.BuildChainraft(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "run", "--store", "raft", "--bug", "local-read", "--hosts", "netns:3",
		"--time-limit", "20s", "--out", t.TempDir())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, "stdout:\n%s\nstderr:\n%s", stdout, stderr.String())
	require.Equal(t, 1, ee.ExitCode(), "stderr:\n%s", stderr.String())
	require.Contains(t, string(stdout), "verdict:    illegal")
	require.Contains(t, stderr.String(), "network cuts by iptables: partition isolate leader")
	waitNoLeftovers(t, 30*time.Second)
}
