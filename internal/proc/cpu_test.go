package proc

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// spinner is a process that burns one core until killed.
var spinner = Spec{Name: "spin", Path: "sh", Args: []string{"-c", "while :; do :; done"}}

// waitCPU waits until p has used at least d of CPU.
func waitCPU(t *testing.T, p *Process, d time.Duration) {
	t.Helper()
	require.Eventually(t, func() bool { return p.CPUTime() >= d }, 20*time.Second, 10*time.Millisecond,
		"CPU time stayed at %v, below %v", p.CPUTime(), d)
}

func TestCPUTimeSpansIncarnations(t *testing.T) {
	p, err := Start(spinner)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Kill() })
	waitCPU(t, p, 150*time.Millisecond)
	require.NoError(t, p.Kill())
	first := p.CPUTime()
	require.GreaterOrEqual(t, first, 150*time.Millisecond, "a reaped incarnation's CPU time is kept")

	require.NoError(t, p.Restart())
	waitCPU(t, p, first+150*time.Millisecond)
	require.NoError(t, p.Kill())
	require.GreaterOrEqual(t, p.CPUTime(), first+150*time.Millisecond)
}

func TestProcCPUParsesCommandWithSpaces(t *testing.T) {
	// The command name in /proc/<pid>/stat is in parentheses and may hold
	// spaces and parentheses; the fields are counted from the last ')'.
	dir := t.TempDir()
	exe := filepath.Join(dir, "a b) c")
	require.NoError(t, os.Symlink("/bin/sh", exe))
	p, err := Start(Spec{Name: "odd", Path: exe, Args: []string{"-c", "while :; do :; done"}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Kill() })
	waitCPU(t, p, 50*time.Millisecond)
}

func TestCPULimit(t *testing.T) {
	if err := CheckCPULimit(); err != nil {
		t.Skipf("this machine cannot run the test: %v", err)
	}
	spec := spinner
	spec.Name = "limited"
	spec.CPUs = 0.1
	p, err := Start(spec)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Kill() })

	// Start returns when the kernel lets the vforking parent go, which is
	// before the exec has laid out the new environment: until then
	// /proc/<pid>/environ reads empty.
	var env []byte
	require.Eventually(t, func() bool {
		env, err = os.ReadFile("/proc/" + strconv.Itoa(p.Pid()) + "/environ")
		return err == nil && len(env) > 0
	}, 5*time.Second, 5*time.Millisecond, "environ of pid %d stayed unreadable or empty", p.Pid())
	require.Contains(t, strings.Split(string(env), "\x00"), "GOMAXPROCS=1")
	group := cgroupOf(t, p.Pid())
	require.Contains(t, group, "chainraft/"+strconv.Itoa(os.Getpid())+"-limited-")

	// Over 2 s of wall time a spinner under a tenth of a core gets about
	// 0.2 s; unlimited it would get up to 2 s.
	start, began := p.CPUTime(), time.Now()
	time.Sleep(2 * time.Second)
	used, wall := p.CPUTime()-start, time.Since(began)
	require.Less(t, used.Seconds(), 0.1*wall.Seconds()+0.15, "used %v of CPU in %v under a 0.1-core quota", used, wall)

	require.NoError(t, p.Kill())
	l, err := findCgroups()
	require.NoError(t, err)
	require.NoDirExists(t, filepath.Join(filepath.Dir(l.parent), group), "the group goes with the process")
}

// cgroupOf is pid's cgroup path in the hierarchy that has the cpu
// controller, relative to that hierarchy's root.
func cgroupOf(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	require.NoError(t, err)
	l, err := findCgroups()
	require.NoError(t, err)
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		require.Len(t, parts, 3, "line %q of /proc/%d/cgroup", line, pid)
		if l.v2 && parts[0] == "0" || !l.v2 && hasWord(strings.ReplaceAll(parts[1], ",", " "), "cpu") {
			return strings.TrimPrefix(parts[2], "/")
		}
	}
	t.Fatalf("pid %d is in no cpu cgroup: %s", pid, b)
	return ""
}

func TestCPULimitStaleGroupsSwept(t *testing.T) {
	if err := CheckCPULimit(); err != nil {
		t.Skipf("this machine cannot run the test: %v", err)
	}
	l, err := findCgroups()
	require.NoError(t, err)
	// A harness that died (a pid that is no process) left a group behind.
	dead := filepath.Join(l.parent, "999999999-node-1-1")
	require.NoError(t, os.Mkdir(dead, 0o755))
	t.Cleanup(func() { _ = os.Remove(dead) })
	require.NoError(t, CheckCPULimit())
	require.NoDirExists(t, dead)

	require.NoError(t, os.Mkdir(dead, 0o755))
	SweepCPUGroups()
	require.NoDirExists(t, dead, "a harness sweeps when it starts, whether it limits CPU or not")
}
