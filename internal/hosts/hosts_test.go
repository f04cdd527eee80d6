package hosts

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/internal/proc"
	"github.com/chainraft/chainraft/nemesis"
)

func TestMain(m *testing.M) { os.Exit(proc.RunTests(m)) }

// needNetns skips a test that needs root and network namespaces, saying
// which is missing.
func needNetns(t *testing.T) {
	t.Helper()
	if err := Available(); err != nil {
		t.Skipf("netns hosts unavailable here: %v", err)
	}
}

func TestParseList(t *testing.T) {
	got, err := parseList("a, root@b:2222 ,c")
	require.NoError(t, err)
	require.Equal(t, []string{"a", "root@b:2222", "c"}, got)
	path := filepath.Join(t.TempDir(), "hosts")
	require.NoError(t, os.WriteFile(path, []byte("# the rack\nx1\n\nx2 # spare\n"), 0o644))
	got, err = parseList("@" + path)
	require.NoError(t, err)
	require.Equal(t, []string{"x1", "x2"}, got)
	_, err = parseList(" , ")
	require.Error(t, err)
}

func TestChildTimes(t *testing.T) {
	require.Equal(t, 61*time.Second+500*time.Millisecond, childTimes("1m1.250s 0m0.250s"))
}

func TestQuote(t *testing.T) {
	require.Equal(t, "abc/d-1", Quote("abc/d-1"))
	require.Equal(t, `'it'\''s'`, Quote("it's"))
	require.Equal(t, "''", Quote(""))
}

// TestNetnsPool makes two namespace hosts and drives them as the harness
// does: a command, a process paused, continued and killed with its exit
// seen, a one-way cut as iptables rules that stop a TCP connection and
// heal, and a Close that leaves nothing behind.
func TestNetnsPool(t *testing.T) {
	needNetns(t)
	ctx := context.Background()
	p, err := Open(ctx, "netns:2", Options{Log: testLog{t}})
	require.NoError(t, err)
	closed := false
	defer func() {
		if !closed {
			p.Close()
		}
	}()
	require.Len(t, p.Hosts, 2)
	h1, h2 := p.Hosts[0], p.Hosts[1]
	out, err := h1.Run(ctx, "ip -o -4 addr show dev eth0", nil)
	require.NoError(t, err)
	require.Contains(t, string(out), h1.Addr)

	// The control shell: output with and without a final newline, input,
	// an exit status, and a command past its deadline, which takes the
	// shell with it while the next command gets a new one.
	out, err = h1.Do(ctx, "printf 'a\\nb'", "")
	require.NoError(t, err)
	require.Equal(t, "a\nb", string(out))
	out, err = h1.Do(ctx, "cat; echo", "x $HOME 'q'\n")
	require.NoError(t, err)
	require.Equal(t, "x $HOME 'q'\n\n", string(out))
	out, err = h1.Do(ctx, "echo oops >&2; exit 3", "")
	require.ErrorContains(t, err, "exit status 3: oops")
	require.Equal(t, "oops\n", string(out))
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = h1.Do(short, "sleep 5", "")
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded)
	out, err = h1.Do(ctx, "echo $$", "")
	require.NoError(t, err)
	require.NotEmpty(t, strings.TrimSpace(string(out)))

	// A listener on h2 (nc is not everywhere: the remote shell's own
	// bash /dev/tcp is not a listener, so sleep stands for the process and
	// the harness's own probe tests reachability).
	sp, err := h2.Start(ProcSpec{Name: "sleeper", Argv: []string{"sleep", "300"}, Dir: h2.Base + "/s", LogPath: h2.Base + "/s.log"})
	require.NoError(t, err)
	require.True(t, sp.Running())
	require.NoError(t, sp.Pause())
	st, err := h2.Do(ctx, "cut -d' ' -f3 /proc/"+strconv.Itoa(sp.Pid())+"/stat; cat /proc/"+strconv.Itoa(sp.Pid())+"/cmdline", "")
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(strings.TrimSpace(string(st)), "T"), "state %q", st)
	require.NoError(t, sp.Resume())
	require.NoError(t, sp.Kill())
	require.False(t, sp.Running())
	require.ErrorContains(t, sp.ExitErr(), "signal 9")
	require.NoError(t, sp.Restart())
	require.True(t, sp.Running())

	// A running process's CPU time is read from the host's /proc; once
	// killed, its exit report keeps it.
	spin, err := h1.Start(ProcSpec{Name: "spinner", Argv: []string{"sh", "-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; exec sleep 300"},
		Dir: h1.Base + "/spin", LogPath: h1.Base + "/spin.log"})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return spin.CPUTime() >= 100*time.Millisecond }, time.Minute, 200*time.Millisecond)
	live := spin.CPUTime()
	require.NoError(t, spin.Kill())
	require.GreaterOrEqual(t, spin.CPUTime(), live-10*time.Millisecond, "the ended incarnation's CPU is kept")

	// h2 reaches h1:22; a one-way cut n2→n1 stops it, the heal brings it
	// back, and the harness's own connections are untouched throughout.
	fw := p.NewFirewall(map[string]Endpoint{
		nemesis.ClientEndpoint:  {},
		nemesis.NodeEndpoint(1): {Host: h1, Ports: []int{22}},
		nemesis.NodeEndpoint(2): {Host: h2},
	})
	probe := "timeout 5 bash -c 'echo > /dev/tcp/" + h1.Addr + "/22' && echo open || echo shut"
	reach := func() string {
		out, err := h2.Do(ctx, probe, "")
		require.NoError(t, err)
		return strings.TrimSpace(string(out))
	}
	require.Equal(t, "open", reach())
	require.NoError(t, fw.Enforce([]nemesis.Cut{{From: nemesis.NodeEndpoint(2), To: nemesis.NodeEndpoint(1)}}, nil))
	rs, err := h1.Rules(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"-A " + p.Chain() + " -s " + h2.Addr + "/32 -d " + h1.Addr + "/32 -p tcp -m tcp --dport 22 -j DROP"}, rs)
	require.Equal(t, "shut", reach())
	require.True(t, reachable(h1.Addr+":22"))
	require.NoError(t, fw.Heal())
	require.Equal(t, "open", reach())
	rs, err = h1.Rules(ctx)
	require.NoError(t, err)
	require.Empty(t, rs)

	require.NoError(t, p.Close())
	closed = true
	require.False(t, sp.Running(), "the process ended with its host")
	// The kernel removes a deleted namespace's interfaces asynchronously,
	// seconds later on a loaded machine.
	waitNoLeftovers(t, 30*time.Second)
}

func reachable(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

type testLog struct{ t *testing.T }

func (l testLog) Write(b []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// wallDrift is how far the wall clock moved against the monotonic one
// since ref.
func wallDrift(ref time.Time) time.Duration {
	now := time.Now()
	return now.Round(0).Sub(ref.Round(0)) - now.Sub(ref)
}

// TestNetnsClockStepRestored steps the clock namespace hosts share (the
// machine's) forward and back, then forward again and lets the reaper,
// which runs when the harness dies, restore it: no clock fault outlives
// its run.
func TestNetnsClockStepRestored(t *testing.T) {
	needNetns(t)
	proc.HoldMachineClock(t)
	ctx := context.Background()
	p, err := Open(ctx, "netns:2", Options{Log: testLog{t}})
	require.NoError(t, err)
	defer p.Close()
	require.True(t, p.ClockShared())
	ref := time.Now()
	near := func(want time.Duration) {
		t.Helper()
		got := wallDrift(ref)
		require.InDelta(t, want.Seconds(), got.Seconds(), 0.25, "the wall clock moved %v against the monotonic one, want %v", got, want)
	}
	require.NoError(t, p.StepClocks(ctx, p.Hosts, 3*time.Second))
	near(3 * time.Second)
	require.NoError(t, p.StepClocks(ctx, p.Hosts[1:], -time.Second))
	near(2 * time.Second)
	require.Contains(t, strings.Join(Leftovers(), "\n"), "clock offset 2000000000 ns")
	require.NoError(t, p.StepClocks(ctx, p.Hosts[:1], -2*time.Second))
	near(0)

	require.NoError(t, p.StepClocks(ctx, p.Hosts, 4*time.Second))
	near(4 * time.Second)
	// The harness's death as the reaper sees it: its pipe closes.
	require.NoError(t, p.netns.close())
	near(0)
	waitNoLeftovers(t, 30*time.Second)
}
