package hosts

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/chainraft/chainraft/internal/proc"
)

// Bounds of a remote process's signals.
const (
	// killWait bounds the wait for a SIGKILLed remote process to be reaped.
	killWait = 10 * time.Second
	// ackWait bounds the wait for the remote shell to confirm a signal.
	ackWait = 5 * time.Second
)

// ProcSpec is a process to run on a host, and to run again identically.
type ProcSpec struct {
	Name string
	// Argv is the command (its path as the host sees it) and arguments.
	Argv []string
	// Env entries are set for the process.
	Env []string
	// Dir is its working directory (created); LogPath receives its output,
	// appended across incarnations.
	Dir, LogPath string
}

// Proc is a process on a host, tied to one SSH session per incarnation.
// The session runs a small shell (procScript) that starts the process in a
// session and process group of its own, reports its pid and, when it
// ends, its exit status and CPU time; the signals the harness sends are
// lines on the session's stdin, so a pause or kill costs no new
// connection. When stdin ends (the harness closed it, died, or lost the
// connection) the shell kills the whole process group: nothing the run
// started outlives it. Its methods are safe for concurrent use and mirror
// internal/proc's Process.
type Proc struct {
	host *Host
	spec ProcSpec

	mu      sync.Mutex
	sess    *ssh.Session
	stdin   io.WriteCloser
	pid     int
	running bool
	paused  bool
	exited  chan struct{}
	exitErr error
	cpuDone time.Duration
	acks    chan string
}

// procScript is the per-incarnation shell. fd 3 keeps the session's stdin
// for the watchdog (a background job's own stdin is /dev/null). The pid is
// reported once the process leads its own group (setsid runs in the child
// after the fork), so that a signal sent at once reaches it.
func procScript(spec ProcSpec) string {
	env := ""
	if len(spec.Env) > 0 {
		env = "env " + QuoteAll(spec.Env) + " "
	}
	return fmt.Sprintf(`exec 3<&0
mkdir -p %[1]s && cd %[1]s || exit 111
setsid %[2]s%[3]s >>%[4]s 2>&1 </dev/null &
pid=$!
while ! kill -0 -- "-$pid" 2>/dev/null && kill -0 "$pid" 2>/dev/null; do sleep 0.01; done
echo "pid $pid"
( while read -r sig <&3; do kill -s "$sig" -- "-$pid" 2>/dev/null; echo "sig $sig"; done; kill -s KILL -- "-$pid" 2>/dev/null ) &
wd=$!
wait "$pid"; rc=$?
kill -s KILL -- "-$pid" 2>/dev/null
kill "$wd" 2>/dev/null
echo times; times
echo "exit $rc"
`, Quote(spec.Dir), env, QuoteAll(spec.Argv), Quote(spec.LogPath))
}

// Start starts spec on h.
func (h *Host) Start(spec ProcSpec) (*Proc, error) {
	p := &Proc{host: h, spec: spec}
	if err := p.start(); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *Proc) start() error {
	s, err := p.host.client.NewSession()
	if err != nil {
		return fmt.Errorf("host %s: start %s: %w", p.host.Name, p.spec.Name, err)
	}
	in, err := s.StdinPipe()
	if err != nil {
		s.Close()
		return err
	}
	out, err := s.StdoutPipe()
	if err != nil {
		s.Close()
		return err
	}
	if err := s.Start(procScript(p.spec)); err != nil {
		s.Close()
		return fmt.Errorf("host %s: start %s: %w", p.host.Name, p.spec.Name, err)
	}
	r := bufio.NewReader(out)
	pidc := make(chan int, 1)
	exited := make(chan struct{})
	acks := make(chan string, 8)
	p.mu.Lock()
	p.sess, p.stdin, p.running, p.paused, p.exited, p.exitErr, p.acks, p.pid = s, in, true, false, exited, nil, acks, 0
	p.mu.Unlock()
	go p.read(s, r, pidc, exited, acks)
	select {
	case pid := <-pidc:
		if pid == 0 {
			<-exited
			return fmt.Errorf("host %s: start %s: %v", p.host.Name, p.spec.Name, p.ExitErr())
		}
		p.mu.Lock()
		p.pid = pid
		p.mu.Unlock()
		return nil
	case <-time.After(opTimeout):
		s.Close()
		<-exited
		return fmt.Errorf("host %s: start %s: no pid within %v", p.host.Name, p.spec.Name, opTimeout)
	}
}

// read is the incarnation's reader goroutine: it owns the session's
// stdout and ends when the session does, closing exited.
func (p *Proc) read(s *ssh.Session, r *bufio.Reader, pidc chan<- int, exited chan struct{}, acks chan<- string) {
	var exitErr error
	var cpu time.Duration
	sentPid := false
	inTimes := 0
	for {
		line, err := r.ReadString('\n')
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "pid "):
			n, _ := strconv.Atoi(strings.TrimPrefix(line, "pid "))
			if !sentPid {
				pidc <- n
				sentPid = true
			}
		case strings.HasPrefix(line, "sig "):
			select {
			case acks <- strings.TrimPrefix(line, "sig "):
			default:
			}
		case line == "times":
			inTimes = 1
		case inTimes == 1:
			inTimes = 2 // the shell's own times
		case inTimes == 2:
			cpu = childTimes(line) // its children's: the process
			inTimes = 0
		case strings.HasPrefix(line, "exit "):
			rc, _ := strconv.Atoi(strings.TrimPrefix(line, "exit "))
			switch {
			case rc == 0:
			case rc > 128:
				exitErr = fmt.Errorf("signal %d", rc-128)
			default:
				exitErr = fmt.Errorf("exit status %d", rc)
			}
		}
		if err != nil {
			break
		}
	}
	if werr := s.Wait(); exitErr == nil && werr != nil {
		var ee *ssh.ExitError
		if errors.As(werr, &ee) && ee.ExitStatus() == 111 {
			exitErr = fmt.Errorf("cannot make %s on host %s", p.spec.Dir, p.host.Name)
		} else if !errors.As(werr, &ee) {
			exitErr = fmt.Errorf("ssh session to host %s lost: %v", p.host.Name, werr)
		}
	}
	s.Close()
	if !sentPid {
		pidc <- 0
	}
	p.mu.Lock()
	p.running, p.paused = false, false
	p.exitErr = exitErr
	p.cpuDone += cpu
	p.mu.Unlock()
	close(exited)
}

// childTimes parses the second line of the shell's `times`: "0m1.230s 0m0.040s".
func childTimes(line string) time.Duration {
	var total time.Duration
	for _, f := range strings.Fields(line) {
		m, s, ok := strings.Cut(strings.TrimSuffix(f, "s"), "m")
		if !ok {
			continue
		}
		mi, err1 := strconv.Atoi(m)
		sf, err2 := strconv.ParseFloat(s, 64)
		if err1 == nil && err2 == nil {
			total += time.Duration(mi)*time.Minute + time.Duration(sf*float64(time.Second))
		}
	}
	return total
}

// Name is the spec's name.
func (p *Proc) Name() string { return p.spec.Name }

// Host is where the process runs.
func (p *Proc) Host() *Host { return p.host }

// Pid is the remote pid of the current (or last) incarnation.
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pid
}

// Running reports whether the current incarnation has not ended.
func (p *Proc) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.running
}

// Paused reports whether the process was paused and not resumed since.
func (p *Proc) Paused() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.paused && p.running
}

// Exited is closed when the current incarnation has ended.
func (p *Proc) Exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exited
}

// ExitErr is how the last incarnation ended (nil: running or exit 0).
func (p *Proc) ExitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exitErr
}

// CPUTime is the CPU time of every incarnation: the ended ones as their
// shells reported at exit, the running one read from the host's /proc
// through its control shell (bounded by cpuWait; a read that fails counts
// the ended ones only, as internal/proc does for a process it cannot read).
func (p *Proc) CPUTime() time.Duration {
	p.mu.Lock()
	done, pid, running := p.cpuDone, p.pid, p.running
	p.mu.Unlock()
	if !running || pid == 0 {
		return done
	}
	ctx, cancel := context.WithTimeout(context.Background(), cpuWait)
	defer cancel()
	live, err := p.host.groupCPU(ctx, pid)
	if err != nil {
		return done
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pid != pid || !p.running {
		// It ended (or restarted) while being read: its exit report is
		// in cpuDone now, or about to be; the live reading is stale.
		return p.cpuDone
	}
	return done + live
}

// cpuWait bounds one remote CPU reading.
const cpuWait = 5 * time.Second

// userHZ is the unit of utime and stime in /proc/<pid>/stat on every Linux.
const userHZ = 100

// groupCPU is the user and system CPU time of every process in the
// process group pgid on h (a node and whatever it forked), in one read of
// /proc: cat goes on past processes that end meanwhile, and the fields are
// counted after the last ") ", as the command name may hold spaces and
// parentheses.
func (h *Host) groupCPU(ctx context.Context, pgid int) (time.Duration, error) {
	out, err := h.Do(ctx, fmt.Sprintf(`cat /proc/[0-9]*/stat 2>/dev/null | awk -v g=%d '{ sub(/^.*\) /, ""); n = split($0, f, " "); if (n >= 13 && f[3] == g) t += f[12] + f[13] } END { print t + 0 }'`, pgid), "")
	if err != nil {
		return 0, err
	}
	ticks, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("host %s: CPU of group %d: %q", h.Name, pgid, out)
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// signal sends sig to the process group and waits for the shell's ack.
func (p *Proc) signal(sig string) error {
	p.mu.Lock()
	if !p.running {
		p.mu.Unlock()
		return fmt.Errorf("%w: %s", proc.ErrNotRunning, p.spec.Name)
	}
	in, acks, exited := p.stdin, p.acks, p.exited
	p.mu.Unlock()
	if _, err := io.WriteString(in, sig+"\n"); err != nil {
		return fmt.Errorf("host %s: %s: signal %s: %w", p.host.Name, p.spec.Name, sig, err)
	}
	timeout := time.After(ackWait)
	for {
		select {
		case a := <-acks:
			if a != sig {
				continue
			}
			p.mu.Lock()
			switch sig {
			case "STOP":
				p.paused = true
			case "CONT":
				p.paused = false
			}
			p.mu.Unlock()
			return nil
		case <-exited:
			return nil
		case <-timeout:
			return fmt.Errorf("host %s: %s: signal %s not confirmed within %v", p.host.Name, p.spec.Name, sig, ackWait)
		}
	}
}

// Kill SIGKILLs the process group and waits until it has ended.
func (p *Proc) Kill() error {
	exited := p.Exited()
	if err := p.signal("KILL"); err != nil && !errors.Is(err, proc.ErrNotRunning) {
		// The session itself may be broken: closing it makes the shell
		// kill the group.
		p.closeSession()
	}
	select {
	case <-exited:
		return nil
	case <-time.After(killWait):
		p.closeSession()
		return fmt.Errorf("%w: %s on host %s after %v", proc.ErrStuck, p.spec.Name, p.host.Name, killWait)
	}
}

func (p *Proc) closeSession() {
	p.mu.Lock()
	s := p.sess
	p.mu.Unlock()
	if s != nil {
		s.Close()
	}
}

// Stop sends SIGTERM (and SIGCONT, in case it is paused) and SIGKILL after
// timeout.
func (p *Proc) Stop(timeout time.Duration) error {
	exited := p.Exited()
	if err := p.signal("TERM"); err != nil {
		if errors.Is(err, proc.ErrNotRunning) {
			return nil
		}
		return err
	}
	_ = p.signal("CONT")
	select {
	case <-exited:
		return nil
	case <-time.After(timeout):
		return p.Kill()
	}
}

// Pause SIGSTOPs the process group.
func (p *Proc) Pause() error { return p.signal("STOP") }

// Resume SIGCONTs the process group.
func (p *Proc) Resume() error { return p.signal("CONT") }

// Restart starts the process again with the same spec; the previous
// incarnation must have ended.
func (p *Proc) Restart() error {
	if p.Running() {
		return fmt.Errorf("%w: %s", proc.ErrRunning, p.spec.Name)
	}
	return p.start()
}
