package proc

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// userHZ is the unit of utime and stime in /proc/<pid>/stat. The kernel
// fixes it at 100 for user space on every architecture Go supports on
// Linux, whatever the kernel's own tick rate.
const userHZ = 100

// CPUTime is the CPU time (user and system) the process used over all its
// incarnations: the reaped ones as wait4 reported them, the live one (or a
// zombie not reaped yet) from /proc. A measurement that spans a kill and a
// restart thus counts both lives, which a counter kept inside the process
// could not.
func (p *Process) CPUTime() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	d := p.cpuDone
	if !p.reaped {
		if live, err := procCPU(p.pid); err == nil {
			d += live
		}
	}
	return d
}

// procCPU reads utime+stime of pid, all threads included.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The fields after the command name (which may hold spaces) start
	// with the state, field 3; utime and stime are fields 14 and 15.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("proc: malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("proc: short /proc/%d/stat", pid)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("proc: /proc/%d/stat: %w", pid, err)
	}
	return time.Duration(ut+st) * time.Second / userHZ, nil
}

// A CPU limit puts each incarnation of a process in a cgroup of its own
// with a CFS quota of Spec.CPUs cores. On one machine it makes nodes compete
// for CPU as separate servers would: without it, a store whose work is
// spread over several nodes and one whose work lands on a leader look alike,
// since all of them draw from the same cores. The cgroups live in a
// "chainraft" directory of the cpu hierarchy, named <harness pid>-<process
// name>-<n>; each is removed when its incarnation is reaped, and a harness that
// died without removing its own is swept by the next one (its children died
// with it, by Pdeathsig, so the cgroup is empty).

// cgroupPeriod is the CFS period of the quota: 100 ms, the kernel's default.
const cgroupPeriod = 100 * time.Millisecond

// cgroupLayout is where and how CPU quotas are written on this machine.
type cgroupLayout struct {
	parent string // the chainraft directory
	v2     bool   // cpu.max (cgroup v2) rather than cpu.cfs_quota_us (v1)
}

// cgroupRoot can be replaced by tests; it is where cgroup file systems are
// mounted.
var cgroupRoot = "/sys/fs/cgroup"

// findCgroups picks the cgroup hierarchy with a CPU controller: v1's
// cpu (or cpu,cpuacct) mount, else a v2 root whose controllers include cpu.
func findCgroups() (cgroupLayout, error) {
	for _, d := range []string{"cpu", "cpu,cpuacct", "cpuacct,cpu"} {
		dir := filepath.Join(cgroupRoot, d)
		if _, err := os.Stat(filepath.Join(dir, "cpu.cfs_quota_us")); err == nil {
			return cgroupLayout{parent: filepath.Join(dir, "chainraft")}, nil
		}
	}
	b, err := os.ReadFile(filepath.Join(cgroupRoot, "cgroup.controllers"))
	if err == nil && hasWord(string(b), "cpu") {
		return cgroupLayout{parent: filepath.Join(cgroupRoot, "chainraft"), v2: true}, nil
	}
	return cgroupLayout{}, fmt.Errorf("no cgroup CPU controller under %s (neither a v1 cpu mount nor a v2 root with cpu)", cgroupRoot)
}

// prepare creates the chainraft directory (enabling the cpu controller
// for it on v2) and sweeps groups left by dead harnesses.
func (l cgroupLayout) prepare() error {
	if l.v2 {
		// The root cgroup may hold processes and still give controllers to
		// its children; the chainraft directory holds none, only groups.
		if err := enableController(cgroupRoot); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(l.parent, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", l.parent, err)
	}
	if l.v2 {
		if err := enableController(l.parent); err != nil {
			return err
		}
	}
	return l.sweep()
}

// sweep removes the groups of harnesses that are no longer running.
func (l cgroupLayout) sweep() error {
	entries, err := os.ReadDir(l.parent)
	if err != nil {
		return fmt.Errorf("read %s: %w", l.parent, err)
	}
	for _, e := range entries {
		pidText, _, ok := strings.Cut(e.Name(), "-")
		if !e.IsDir() || !ok {
			continue
		}
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid == os.Getpid() || !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			continue // ours, or a harness alive (EPERM: alive, another user's)
		}
		_ = syscall.Rmdir(filepath.Join(l.parent, e.Name())) // fails only if not empty: left alone
	}
	return nil
}

func enableController(dir string) error {
	f := filepath.Join(dir, "cgroup.subtree_control")
	b, err := os.ReadFile(f)
	if err != nil {
		return fmt.Errorf("read %s: %w", f, err)
	}
	if hasWord(string(b), "cpu") {
		return nil
	}
	if err := os.WriteFile(f, []byte("+cpu"), 0o644); err != nil {
		return fmt.Errorf("enable the cpu controller in %s: %w", f, err)
	}
	return nil
}

// groupSeq numbers the groups this harness creates.
var groupSeq atomic.Uint64

// cpuGroup is one incarnation's cgroup.
type cpuGroup struct{ dir string }

// newCPUGroup creates the cgroup of one incarnation with a quota of cpus
// cores.
func newCPUGroup(name string, cpus float64) (*cpuGroup, error) {
	l, err := findCgroups()
	if err != nil {
		return nil, err
	}
	if err := l.prepare(); err != nil {
		return nil, err
	}
	// One group per incarnation, never reused: the waiter of a reaped
	// incarnation may still be removing its group when the next starts.
	dir := filepath.Join(l.parent, fmt.Sprintf("%d-%s-%d", os.Getpid(), strings.ReplaceAll(name, "/", "_"), groupSeq.Add(1)))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	g := &cpuGroup{dir: dir}
	period := cgroupPeriod.Microseconds()
	quota := int64(math.Round(cpus * float64(period)))
	if quota < 1000 {
		quota = 1000 // the kernel's minimum quota is 1 ms
	}
	var werr error
	if l.v2 {
		werr = os.WriteFile(filepath.Join(dir, "cpu.max"), fmt.Appendf(nil, "%d %d", quota, period), 0o644)
	} else {
		werr = errors.Join(
			os.WriteFile(filepath.Join(dir, "cpu.cfs_period_us"), fmt.Appendf(nil, "%d", period), 0o644),
			os.WriteFile(filepath.Join(dir, "cpu.cfs_quota_us"), fmt.Appendf(nil, "%d", quota), 0o644))
	}
	if werr != nil {
		g.remove()
		return nil, fmt.Errorf("set the CPU quota of %s: %w", dir, werr)
	}
	return g, nil
}

// add moves pid (all its threads) into the group.
func (g *cpuGroup) add(pid int) error {
	if err := os.WriteFile(filepath.Join(g.dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		return fmt.Errorf("move pid %d into %s: %w", pid, g.dir, err)
	}
	return nil
}

// remove deletes the group (nil: no group); its processes must have been
// reaped. The kernel may take a moment to let go of a group whose last task
// just exited, hence the retries.
func (g *cpuGroup) remove() {
	if g == nil {
		return
	}
	for i := 0; i < 50; i++ {
		err := syscall.Rmdir(g.dir)
		if err == nil || errors.Is(err, syscall.ENOENT) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// SweepCPUGroups removes the CPU-limit cgroups left by harnesses that were
// killed before they could remove them (their node processes died with
// them, by Pdeathsig, so the groups are empty). A harness calls it when it
// starts; it does nothing on a machine without them.
func SweepCPUGroups() {
	l, err := findCgroups()
	if err != nil {
		return
	}
	if _, err := os.Stat(l.parent); err == nil {
		_ = l.sweep()
	}
}

// CheckCPULimit reports whether this machine lets the harness give a
// process a CPU quota (Spec.CPUs): a cgroup CPU controller it can write.
func CheckCPULimit() error {
	g, err := newCPUGroup("check", 1)
	if err != nil {
		return fmt.Errorf("cannot limit a process's CPU here: %w", err)
	}
	g.remove()
	return nil
}

// gomaxprocs is the GOMAXPROCS a Go child should run with under a quota of
// cpus cores: no more threads running Go code than it has cores' worth of
// time, which is what a server of that size would have.
func gomaxprocs(cpus float64) int {
	return max(1, int(math.Ceil(cpus)))
}

// hasWord reports whether the space-separated list s holds w.
func hasWord(s, w string) bool {
	for _, f := range strings.Fields(s) {
		if f == w {
			return true
		}
	}
	return false
}
