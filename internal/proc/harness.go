package proc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// KillAllOnSignal is the harness's opt-in safety net: when the program gets
// SIGINT or SIGTERM, every process this package started is killed, then the
// signal is re-raised so the program dies of it as it would have (a program
// that registered its own handler with signal.Notify gets it instead and
// shuts down its own way). The returned function uninstalls the net; call it
// at the end of main or of the test binary.
func KillAllOnSignal() (stop func()) {
	ch := make(chan os.Signal, 1)
	done := make(chan struct{})
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case sig := <-ch:
			_ = KillAll()
			removeBuilds()
			signal.Stop(ch)
			if s, ok := sig.(syscall.Signal); ok {
				_ = syscall.Kill(os.Getpid(), s)
			}
		case <-done:
			signal.Stop(ch)
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(done) })
		wg.Wait()
	}
}

// RunTests runs a test binary with the safety net: use it as
//
//	func TestMain(m *testing.M) { os.Exit(proc.RunTests(m)) }
//
// Children survive neither a ^C nor a leaky test, and the binary built by
// BuildChainraft is removed at the end.
func RunTests(m *testing.M) int {
	stop := KillAllOnSignal()
	code := m.Run()
	if err := KillAll(); err != nil {
		fmt.Fprintln(os.Stderr, "proc:", err)
	}
	removeBuilds()
	stop()
	return code
}

// FreeAddrs returns n distinct loopback addresses "127.0.0.1:port" that were
// free a moment ago. All n listeners are held open together so the ports are
// distinct; another program may still grab one between Close and use.
func FreeAddrs(n int) ([]string, error) {
	r, addrs, err := ReserveAddrs(n)
	r.Close()
	return addrs, err
}

// Reservation holds loopback ports open until each is released to the
// process that will listen on it. Between a port's choice and its use the
// harness itself binds more ports (the nemesis's proxies, ZooKeeper
// clients), and the kernel may hand any of them a port just closed: a
// node then failed to start with "address already in use". A held port
// cannot be handed out. Its methods are safe for concurrent use, and on a
// nil Reservation do nothing.
type Reservation struct {
	mu sync.Mutex
	ls map[string]net.Listener
}

// ReserveAddrs picks n distinct free loopback addresses and holds them.
func ReserveAddrs(n int) (*Reservation, []string, error) {
	r := &Reservation{ls: map[string]net.Listener{}}
	addrs := make([]string, 0, n)
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			r.Close()
			return nil, nil, fmt.Errorf("proc: free address: %w", err)
		}
		r.ls[l.Addr().String()] = l
		addrs = append(addrs, l.Addr().String())
	}
	return r, addrs, nil
}

// Release frees addr for its process to listen on (Go's listeners set
// SO_REUSEADDR, so it can at once). An address not held is ignored.
func (r *Reservation) Release(addr string) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if l, ok := r.ls[addr]; ok {
		l.Close()
		delete(r.ls, addr)
	}
}

// Close releases every address still held.
func (r *Reservation) Close() {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for a, l := range r.ls {
		l.Close()
		delete(r.ls, a)
	}
}

// ---- BuildChainraft ----

const buildPrefix = "chainraft-bin-"

var (
	buildOnce sync.Once
	buildPath string
	buildDir  string
	buildErr  error
	buildMu   sync.Mutex
)

// BuildChainraft builds ./cmd/chainraft once per test binary and returns the
// executable's path. The temporary directory is removed by RunTests at the
// end of the binary (use it from TestMain); a binary that did not use
// RunTests, or was killed, leaves a directory named after its pid, which the
// next BuildChainraft of any test binary removes once that pid is gone.
func BuildChainraft(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		sweepStaleBuilds()
		buildPath, buildErr = build()
	})
	if buildErr != nil {
		tb.Fatalf("proc: building chainraft: %v", buildErr)
	}
	return buildPath
}

func build() (string, error) {
	gobin := goBinary()
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", buildPrefix+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return "", err
	}
	buildMu.Lock()
	buildDir = dir
	buildMu.Unlock()
	out := filepath.Join(dir, "chainraft")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, gobin, "build", "-o", out, "./cmd/chainraft")
	cmd.Dir = root
	msg, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build ./cmd/chainraft: %w\n%s", err, msg)
	}
	return out, nil
}

// ModuleRoot is the directory of the main module's go.mod, as `go env GOMOD`
// reports it from the current directory.
func ModuleRoot() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, goBinary(), "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("proc: go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("proc: not inside a Go module (go env GOMOD is empty)")
	}
	return filepath.Dir(gomod), nil
}

func goBinary() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}

func removeBuilds() {
	buildMu.Lock()
	defer buildMu.Unlock()
	if buildDir != "" {
		os.RemoveAll(buildDir)
		buildDir = ""
	}
}

// sweepStaleBuilds removes build directories of test binaries that died
// without cleaning up.
func sweepStaleBuilds() {
	ents, err := os.ReadDir(os.TempDir())
	if err != nil {
		return
	}
	for _, e := range ents {
		name := e.Name()
		if !e.IsDir() || !strings.HasPrefix(name, buildPrefix) {
			continue
		}
		rest := strings.TrimPrefix(name, buildPrefix)
		i := strings.IndexByte(rest, '-')
		if i <= 0 {
			continue
		}
		pid, err := strconv.Atoi(rest[:i])
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
			os.RemoveAll(filepath.Join(os.TempDir(), name))
		}
	}
}

// clockLock is the file test binaries lock while they step the machine's
// wall clock.
var clockLock = filepath.Join(os.TempDir(), "chainraft-clock-tests.lock")

// HoldMachineClock makes tb the only test on this machine, across test
// binaries (go test runs packages side by side), that steps the machine's
// wall clock (clock faults on netns hosts) until it ends: a test that
// checks where the clock stands must not see another's step.
func HoldMachineClock(tb testing.TB) {
	tb.Helper()
	f, err := os.OpenFile(clockLock, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		tb.Fatalf("clock lock: %v", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		tb.Fatalf("clock lock: %v", err)
	}
	tb.Cleanup(func() { f.Close() })
}
