package proc

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// Sentinel errors callers branch on.
var (
	// ErrNotRunning: the operation needs a live child and there is none.
	ErrNotRunning = errors.New("proc: process not running")
	// ErrRunning: Restart of a process whose previous incarnation still runs.
	ErrRunning = errors.New("proc: process still running")
	// ErrStuck: the child did not die within the kill deadline (for example
	// stuck in uninterruptible sleep).
	ErrStuck = errors.New("proc: process did not exit after SIGKILL")
)

// killWait bounds how long Kill waits for the kernel to reap a SIGKILLed
// child. A SIGKILLed process normally vanishes in microseconds; one stuck in
// an uninterruptible disk wait is reported rather than waited on forever.
const killWait = 10 * time.Second

// Spec describes a process to start, and to restart identically.
type Spec struct {
	// Name identifies the process in errors and logs ("node-2", "zk-1").
	Name string
	// Path is the executable; a bare name is looked up in PATH.
	Path string
	Args []string
	// Dir is the working directory; empty means the harness's.
	Dir string
	// LogPath receives stdout and stderr, appended (a restart keeps the
	// earlier incarnations' output). Parent directories are created. Empty
	// discards the output.
	LogPath string
	// Env entries are added to the harness's environment (later wins).
	Env []string
	// CPUs, when positive, gives every incarnation a CPU quota of that many
	// cores in a cgroup of its own (cpu.go), and GOMAXPROCS to match unless
	// Env sets it. It needs a cgroup CPU controller the harness may write
	// (CheckCPULimit); Start fails without one.
	CPUs float64
}

// Process is a child process that can be killed, paused and restarted. Its
// methods are safe for concurrent use.
type Process struct {
	spec Spec

	mu      sync.Mutex
	cmd     *exec.Cmd
	pid     int
	reaped  bool // the current incarnation was reaped: its pgid is no longer ours
	paused  bool
	exited  chan struct{}
	waitErr error
	// cpuDone is the CPU time of the incarnations reaped so far.
	cpuDone time.Duration
}

// Start starts spec in its own process group, with Pdeathsig=SIGKILL.
func Start(spec Spec) (*Process, error) {
	p := &Process{spec: spec}
	if err := p.start(); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *Process) start() error {
	path := p.spec.Path
	if !strings.Contains(path, "/") {
		lp, err := exec.LookPath(path)
		if err != nil {
			return fmt.Errorf("proc: start %s: %w", p.spec.Name, err)
		}
		path = lp
	}
	cmd := exec.Command(path, p.spec.Args...)
	cmd.Dir = p.spec.Dir
	var env []string
	var group *cpuGroup
	if p.spec.CPUs > 0 {
		g, err := newCPUGroup(p.spec.Name, p.spec.CPUs)
		if err != nil {
			return fmt.Errorf("proc: start %s: %w", p.spec.Name, err)
		}
		group = g
		env = append(env, "GOMAXPROCS="+strconv.Itoa(gomaxprocs(p.spec.CPUs)))
	}
	env = append(env, p.spec.Env...)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	var logf *os.File
	if p.spec.LogPath != "" {
		if err := os.MkdirAll(filepath.Dir(p.spec.LogPath), 0o755); err != nil {
			group.remove()
			return fmt.Errorf("proc: start %s: %w", p.spec.Name, err)
		}
		f, err := os.OpenFile(p.spec.LogPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			group.remove()
			return fmt.Errorf("proc: start %s: %w", p.spec.Name, err)
		}
		logf = f
		// *os.File is handed to the child directly: no copying goroutine.
		cmd.Stdout = f
		cmd.Stderr = f
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}

	if err := fork(cmd); err != nil {
		if logf != nil {
			logf.Close()
		}
		group.remove()
		return fmt.Errorf("proc: start %s: %w", p.spec.Name, err)
	}
	exited := make(chan struct{})
	p.mu.Lock()
	p.cmd = cmd
	p.pid = cmd.Process.Pid
	p.reaped = false
	p.paused = false
	p.exited = exited
	p.waitErr = nil
	p.mu.Unlock()
	register(p)
	go p.wait(cmd, logf, exited, group)
	if group != nil {
		// The child runs unlimited for the moment it takes to get here: a
		// v1 cgroup cannot be entered at fork. Startup is not measured.
		if err := group.add(cmd.Process.Pid); err != nil {
			_ = p.Kill()
			return fmt.Errorf("proc: start %s: %w", p.spec.Name, err)
		}
	}
	return nil
}

// wait is the waiter goroutine of one incarnation; see doc.go.
func (p *Process) wait(cmd *exec.Cmd, logf *os.File, exited chan struct{}, group *cpuGroup) {
	pid := cmd.Process.Pid
	waitNoReap(pid)
	p.mu.Lock()
	// The leader is a zombie: its pgid is still reserved. Sweep members it
	// left behind, then reap.
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	err := cmd.Wait()
	if st := cmd.ProcessState; st != nil {
		p.cpuDone += st.UserTime() + st.SystemTime()
	}
	p.reaped = true
	p.paused = false
	p.waitErr = err
	p.mu.Unlock()
	if logf != nil {
		logf.Close()
	}
	group.remove()
	unregister(p)
	close(exited)
}

// waitNoReap blocks until pid has exited, leaving it unreaped.
func waitNoReap(pid int) {
	const (
		pPID    = 1
		wEXITED = 0x4
		wNOWAIT = 0x1000000
	)
	var info [128]byte // siginfo_t
	for {
		_, _, errno := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(pid),
			uintptr(unsafe.Pointer(&info[0])), wEXITED|wNOWAIT, 0, 0)
		if errno == syscall.EINTR {
			continue
		}
		if errno != 0 {
			// ECHILD cannot happen for our own unreaped child; if it does,
			// cmd.Wait below reports the real state.
			return
		}
		return
	}
}

// Name is the Spec's name.
func (p *Process) Name() string { return p.spec.Name }

// Spec returns the spec the process was started with.
func (p *Process) Spec() Spec { return p.spec }

// Pid is the pid of the current (or last) incarnation.
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pid
}

// Exited is closed when the current incarnation has exited and been reaped.
// A Restart makes a new channel: fetch it again after restarting.
func (p *Process) Exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exited
}

// Running reports whether the current incarnation has not been reaped yet (a
// paused process is running).
func (p *Process) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.reaped
}

// Paused reports whether the process was paused and not resumed since.
func (p *Process) Paused() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.paused && !p.reaped
}

// ExitErr is the last incarnation's exit status as exec.Cmd.Wait reports it,
// nil while it runs or after a clean exit.
func (p *Process) ExitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waitErr
}

// signal sends sig to the process group, only while the leader is unreaped.
func (p *Process) signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reaped {
		return fmt.Errorf("%w: %s", ErrNotRunning, p.spec.Name)
	}
	if err := syscall.Kill(-p.pid, sig); err != nil && err != syscall.ESRCH {
		return fmt.Errorf("proc: %s: signal %v: %w", p.spec.Name, sig, err)
	}
	switch sig {
	case syscall.SIGSTOP:
		p.paused = true
	case syscall.SIGCONT:
		p.paused = false
	}
	return nil
}

// Kill SIGKILLs the process group and waits until the leader is reaped. A
// process that already exited is not an error.
func (p *Process) Kill() error {
	exited := p.Exited()
	if err := p.signal(syscall.SIGKILL); err != nil && !errors.Is(err, ErrNotRunning) {
		return err
	}
	select {
	case <-exited:
		return nil
	case <-time.After(killWait):
		return fmt.Errorf("%w: %s (pid %d) after %v", ErrStuck, p.spec.Name, p.Pid(), killWait)
	}
}

// Stop asks the process to exit (SIGTERM, plus SIGCONT in case it is paused)
// and SIGKILLs it if it has not exited within timeout.
func (p *Process) Stop(timeout time.Duration) error {
	exited := p.Exited()
	if err := p.signal(syscall.SIGTERM); err != nil {
		if errors.Is(err, ErrNotRunning) {
			return nil
		}
		return err
	}
	_ = p.signal(syscall.SIGCONT)
	select {
	case <-exited:
		return nil
	case <-time.After(timeout):
		return p.Kill()
	}
}

// Pause stops the process group with SIGSTOP: it keeps its sockets and
// sessions but does nothing, as in a long GC pause or a VM freeze.
func (p *Process) Pause() error { return p.signal(syscall.SIGSTOP) }

// Resume continues a paused process group with SIGCONT.
func (p *Process) Resume() error { return p.signal(syscall.SIGCONT) }

// Restart starts the process again with the same Spec (same arguments, same
// data directory, same log file, appended). The previous incarnation must
// have exited.
func (p *Process) Restart() error {
	if p.Running() {
		return fmt.Errorf("%w: %s", ErrRunning, p.spec.Name)
	}
	return p.start()
}

// State is the kernel's one-letter state of the process (R, S, D, T, Z, ...)
// from /proc/<pid>/stat, or an error if it is gone.
func State(pid int) (byte, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name is in parentheses and may contain spaces: the state
	// follows the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 || i+2 >= len(b) {
		return 0, fmt.Errorf("proc: malformed /proc/%d/stat", pid)
	}
	return b[i+2], nil
}

// ---- the forker ----

type forkReq struct {
	cmd  *exec.Cmd
	done chan error
}

var (
	forkOnce sync.Once
	forkCh   chan forkReq
)

// fork starts cmd from the forker goroutine's locked, immortal OS thread, so
// Pdeathsig means "the harness process died" and nothing else.
func fork(cmd *exec.Cmd) error {
	forkOnce.Do(func() {
		forkCh = make(chan forkReq)
		go forker()
	})
	req := forkReq{cmd: cmd, done: make(chan error, 1)}
	forkCh <- req
	return <-req.done
}

func forker() {
	// Never unlocked and never returns: this thread must outlive every child.
	runtime.LockOSThread()
	for req := range forkCh {
		req.done <- req.cmd.Start()
	}
}

// ---- the package-wide registry ----

var (
	liveMu sync.Mutex
	live   = map[*Process]struct{}{}
)

func register(p *Process) {
	liveMu.Lock()
	live[p] = struct{}{}
	liveMu.Unlock()
}

func unregister(p *Process) {
	liveMu.Lock()
	delete(live, p)
	liveMu.Unlock()
}

// Live is the number of started processes not yet reaped.
func Live() int {
	liveMu.Lock()
	defer liveMu.Unlock()
	return len(live)
}

// KillAll kills every process this package started that is still running,
// and waits for them. It is the harness's last line of defence.
func KillAll() error {
	liveMu.Lock()
	ps := make([]*Process, 0, len(live))
	for p := range live {
		ps = append(ps, p)
	}
	liveMu.Unlock()
	return killAll(ps)
}

func killAll(ps []*Process) error {
	// Signal all first, so they die in parallel, then wait.
	for _, p := range ps {
		_ = p.signal(syscall.SIGKILL)
	}
	var errs []error
	for _, p := range ps {
		if err := p.Kill(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Group tracks the processes of one cluster so they can be stopped together.
type Group struct {
	mu    sync.Mutex
	procs []*Process
}

// Start starts spec and adds it to the group.
func (g *Group) Start(spec Spec) (*Process, error) {
	p, err := Start(spec)
	if err != nil {
		return nil, err
	}
	g.Add(p)
	return p, nil
}

// Add puts a process under the group's care.
func (g *Group) Add(p *Process) {
	g.mu.Lock()
	g.procs = append(g.procs, p)
	g.mu.Unlock()
}

// Processes lists the group's processes in the order they were added.
func (g *Group) Processes() []*Process {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]*Process(nil), g.procs...)
}

// CloseAll SIGKILLs every process of the group and waits for them. It may be
// called more than once (a process restarted in between is killed again).
func (g *Group) CloseAll() error {
	return killAll(g.Processes())
}
