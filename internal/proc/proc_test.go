package proc

import (
	"bufio"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) {
	if os.Getenv("PROC_TEST_HELPER") == "harness" {
		helperHarness()
		return
	}
	os.Exit(RunTests(m))
}

// helperHarness plays a harness in a child process: it starts a grandchild
// from a goroutine whose OS thread then exits, prints the grandchild's pid,
// and waits to be killed.
func helperHarness() {
	// Keep the main thread busy with this goroutine, so the goroutine below
	// runs on a thread that the runtime really destroys (the main thread is
	// never destroyed, only parked).
	runtime.LockOSThread()
	type res struct {
		p   *Process
		err error
	}
	ch := make(chan res, 1)
	go func() {
		// Locked and never unlocked: the runtime destroys this thread when
		// the goroutine returns. Without the forker, Pdeathsig would fire.
		runtime.LockOSThread()
		p, err := Start(Spec{Name: "grandchild", Path: "sleep", Args: []string{"1000"}})
		ch <- res{p, err}
	}()
	r := <-ch
	if r.err != nil {
		os.Stdout.WriteString("error " + r.err.Error() + "\n")
		os.Exit(1)
	}
	os.Stdout.WriteString("pid " + strconv.Itoa(r.p.Pid()) + "\n")
	time.Sleep(time.Hour)
}

func alive(pid int) bool {
	st, err := State(pid)
	return err == nil && st != 'Z' && st != 'X'
}

func TestStartKill(t *testing.T) {
	p, err := Start(Spec{Name: "sleep", Path: "sleep", Args: []string{"1000"}})
	require.NoError(t, err)
	require.True(t, p.Running())
	require.True(t, alive(p.Pid()))
	require.NoError(t, p.Kill())
	require.False(t, p.Running())
	select {
	case <-p.Exited():
	default:
		t.Fatal("Exited not closed after Kill")
	}
	require.False(t, alive(p.Pid()))
	require.Error(t, p.ExitErr(), "a SIGKILLed process has a non-nil exit status")
	require.NoError(t, p.Kill(), "Kill of an exited process is not an error")
	require.ErrorIs(t, p.Pause(), ErrNotRunning)
}

func TestPauseResume(t *testing.T) {
	p, err := Start(Spec{Name: "sleep", Path: "sleep", Args: []string{"1000"}})
	require.NoError(t, err)
	defer p.Kill()
	require.NoError(t, p.Pause())
	require.Eventually(t, func() bool { s, _ := State(p.Pid()); return s == 'T' }, 5*time.Second, 10*time.Millisecond)
	require.True(t, p.Paused())
	require.NoError(t, p.Resume())
	require.Eventually(t, func() bool { s, _ := State(p.Pid()); return s == 'S' || s == 'R' }, 5*time.Second, 10*time.Millisecond)
	require.False(t, p.Paused())
	// A paused process still dies of Kill.
	require.NoError(t, p.Pause())
	require.NoError(t, p.Kill())
	require.False(t, alive(p.Pid()))
}

func TestStopRestartAndLog(t *testing.T) {
	log := filepath.Join(t.TempDir(), "sub", "p.log")
	// The shell traps TERM to show Stop sent it, then exits cleanly.
	script := `trap 'echo term; exit 0' TERM; echo start $$; while :; do sleep 0.05; done`
	p, err := Start(Spec{Name: "sh", Path: "sh", Args: []string{"-c", script}, LogPath: log})
	require.NoError(t, err)
	first := p.Pid()
	require.ErrorIs(t, p.Restart(), ErrRunning)
	require.Eventually(t, func() bool { b, _ := os.ReadFile(log); return strings.Contains(string(b), "start") },
		5*time.Second, 10*time.Millisecond, "the trap is installed before start is printed")
	// Stop while paused: SIGCONT must follow SIGTERM.
	require.NoError(t, p.Pause())
	require.NoError(t, p.Stop(5*time.Second))
	require.NoError(t, p.ExitErr(), "the trap exits 0: Stop delivered SIGTERM, not SIGKILL")

	require.NoError(t, p.Restart())
	require.NotEqual(t, first, p.Pid())
	require.True(t, p.Running())
	require.Eventually(t, func() bool { b, _ := os.ReadFile(log); return strings.Count(string(b), "start ") == 2 },
		5*time.Second, 10*time.Millisecond, "log is appended across restarts")
	require.NoError(t, p.Kill())
	b, err := os.ReadFile(log)
	require.NoError(t, err)
	require.Contains(t, string(b), "term")

	// A process ignoring SIGTERM is killed after the timeout.
	qlog := filepath.Join(t.TempDir(), "q.log")
	q, err := Start(Spec{Name: "stubborn", Path: "sh", Args: []string{"-c", `trap '' TERM; echo ready; while :; do sleep 0.05; done`}, LogPath: qlog})
	require.NoError(t, err)
	require.Eventually(t, func() bool { b, _ := os.ReadFile(qlog); return strings.Contains(string(b), "ready") },
		5*time.Second, 10*time.Millisecond)
	t0 := time.Now()
	require.NoError(t, q.Stop(300*time.Millisecond))
	require.GreaterOrEqual(t, time.Since(t0), 300*time.Millisecond)
	require.False(t, q.Running())
}

func TestGroupKillsWholeProcessGroup(t *testing.T) {
	var g Group
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "inner")
	// The shell starts a background sleep in its (own) process group and
	// writes its pid; killing the group must take the sleep too.
	p, err := g.Start(Spec{Name: "sh", Path: "sh", Args: []string{"-c", "sleep 1000 & echo $! > " + pidFile + "; wait"}})
	require.NoError(t, err)
	_, err = g.Start(Spec{Name: "sleep", Path: "sleep", Args: []string{"1000"}})
	require.NoError(t, err)
	var inner int
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return false
		}
		inner, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	}, 5*time.Second, 10*time.Millisecond)
	require.True(t, alive(inner))
	require.NoError(t, g.CloseAll())
	for _, q := range g.Processes() {
		require.False(t, q.Running())
	}
	require.False(t, alive(p.Pid()))
	require.Eventually(t, func() bool { return !alive(inner) }, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, g.CloseAll(), "CloseAll is idempotent")
}

func TestLeaderExitSweepsGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "inner")
	// The leader exits on its own, leaving a member of its group behind.
	p, err := Start(Spec{Name: "sh", Path: "sh", Args: []string{"-c", "sleep 1000 & echo $! > " + pidFile}})
	require.NoError(t, err)
	<-p.Exited()
	b, err := os.ReadFile(pidFile)
	require.NoError(t, err)
	inner, err := strconv.Atoi(strings.TrimSpace(string(b)))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return !alive(inner) }, 5*time.Second, 10*time.Millisecond)
}

func TestPdeathsig(t *testing.T) {
	self, err := os.Executable()
	require.NoError(t, err)
	out := filepath.Join(t.TempDir(), "child.out")
	child, err := Start(Spec{
		Name: "child-harness", Path: self, Args: []string{"-test.run=^$"},
		Env: []string{"PROC_TEST_HELPER=harness"}, LogPath: out,
	})
	require.NoError(t, err)
	defer child.Kill()
	var grand int
	require.Eventually(t, func() bool {
		f, err := os.Open(out)
		if err != nil {
			return false
		}
		defer f.Close()
		s := bufio.NewScanner(f)
		for s.Scan() {
			if v, ok := strings.CutPrefix(s.Text(), "pid "); ok {
				grand, _ = strconv.Atoi(v)
				return grand > 0
			}
			require.NotContains(t, s.Text(), "error")
		}
		return false
	}, 20*time.Second, 20*time.Millisecond)
	// The thread of the goroutine that asked for the grandchild is gone by
	// now; the grandchild must not have died with it.
	time.Sleep(200 * time.Millisecond)
	require.True(t, alive(grand), "grandchild died with the requesting goroutine's thread")
	// SIGKILL the child harness alone (no cleanup code runs in it).
	require.NoError(t, syscall.Kill(child.Pid(), syscall.SIGKILL))
	<-child.Exited()
	require.Eventually(t, func() bool { return !alive(grand) }, 5*time.Second, 10*time.Millisecond,
		"grandchild %d survived its harness", grand)
}

func TestFreeAddrs(t *testing.T) {
	addrs, err := FreeAddrs(5)
	require.NoError(t, err)
	require.Len(t, addrs, 5)
	seen := map[string]bool{}
	for _, a := range addrs {
		require.True(t, strings.HasPrefix(a, "127.0.0.1:"), a)
		require.False(t, seen[a], "duplicate %s", a)
		seen[a] = true
	}
}

func TestKillAll(t *testing.T) {
	before := Live()
	var ps []*Process
	for i := 0; i < 3; i++ {
		p, err := Start(Spec{Name: "sleep", Path: "sleep", Args: []string{"1000"}})
		require.NoError(t, err)
		ps = append(ps, p)
	}
	require.Equal(t, before+3, Live())
	require.NoError(t, KillAll())
	for _, p := range ps {
		require.False(t, p.Running())
	}
	require.Equal(t, before, Live())
}

func TestBuildChainraft(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	path := BuildChainraft(t)
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.NotZero(t, st.Mode()&0o111)
	require.Equal(t, path, BuildChainraft(t), "built once per test binary")
	p, err := Start(Spec{Name: "version", Path: path, Args: []string{"--help"}, LogPath: filepath.Join(t.TempDir(), "v.log")})
	require.NoError(t, err)
	select {
	case <-p.Exited():
	case <-time.After(30 * time.Second):
		t.Fatal("chainraft --help did not exit")
	}
	require.NoError(t, p.ExitErr())
}

func TestReservationHoldsPortsUntilReleased(t *testing.T) {
	r, addrs, err := ReserveAddrs(2)
	require.NoError(t, err)
	defer r.Close()
	require.Len(t, addrs, 2)
	require.NotEqual(t, addrs[0], addrs[1])
	_, err = net.Listen("tcp", addrs[0])
	require.Error(t, err, "a held port cannot be taken")
	r.Release(addrs[0])
	l, err := net.Listen("tcp", addrs[0])
	require.NoError(t, err, "a released port can be listened on at once")
	l.Close()
	r.Release("127.0.0.1:1") // not held: ignored
	r.Close()
	l, err = net.Listen("tcp", addrs[1])
	require.NoError(t, err)
	l.Close()
	var none *Reservation
	none.Release(addrs[0])
	none.Close()
}
