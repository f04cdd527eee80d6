package zkserver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/chainraft/chainraft/internal/proc"
)

// Sentinel errors.
var (
	// ErrNotInstalled: java or the ZooKeeper jars are missing.
	ErrNotInstalled = errors.New("zkserver: ZooKeeper is not installed (run `make deps`, or scripts/deps.sh)")
	// ErrNotServing: a server did not start serving by the deadline.
	ErrNotServing = errors.New("zkserver: server not serving")
	// ErrNoLeader: no running server reports itself as leader or standalone.
	ErrNoLeader = errors.New("zkserver: no leader")
	// ErrClosed: the ensemble was closed.
	ErrClosed = errors.New("zkserver: ensemble closed")
)

// Config shapes an ensemble.
type Config struct {
	// Dir is the run (or test) directory; everything goes below Dir/zk.
	Dir string
	// Servers is 1 (standalone) or 3 (an ensemble). Default 1.
	Servers int
	// TickTime is ZooKeeper's tick; the session timeout a client may get is
	// clamped to [2, 120] ticks. Default 500ms.
	TickTime time.Duration
	// ForceSync makes the servers fsync their transaction log per write.
	ForceSync bool
	// StartTimeout bounds the wait for every server to serve. Default 30s.
	StartTimeout time.Duration
	// JavaOpts are extra JVM options.
	JavaOpts []string
	// PeerAddrs, when set, gives the addresses server from dials to reach
	// server to's quorum and election ports (ids are myids, 1-based), given
	// where to listens. A server binds the addresses of its own server.N
	// line and dials those of the others' lines, so each server's zoo.cfg
	// can name other addresses for its peers — the nemesis's proxies — and
	// server-to-server links can then be cut. Nil: every server dials
	// where the others listen. It may be called again with new listen
	// addresses if a start is retried on new ports.
	PeerAddrs func(from, to int, quorum, election string) (string, string)
	// CPUs, when positive, is each server's CPU quota in cores
	// (proc.Spec.CPUs): the zookeeper store's nodes are these servers, and
	// --node-cpus must hold for them as for any store's nodes.
	CPUs float64
}

// Ensemble is a running set of ZooKeeper servers started by this package.
type Ensemble struct {
	cfg     Config
	zkDir   string
	clients []string // client address per server
	// quorum and election are where each server listens for its peers.
	quorum, election []string
	servers          []*proc.Process
	group            proc.Group

	mu     sync.Mutex
	closed bool
}

// Installation is where java and the ZooKeeper jars were found.
type Installation struct {
	Java      string
	ClassPath []string
}

// Find locates java and the ZooKeeper server jars. Overrides: JAVA (a java
// executable) and ZOOKEEPER_CLASSPATH (a ':'-separated class path).
func Find() (Installation, error) {
	var inst Installation
	java := os.Getenv("JAVA")
	if java == "" {
		if jh := os.Getenv("JAVA_HOME"); jh != "" {
			if _, err := os.Stat(filepath.Join(jh, "bin", "java")); err == nil {
				java = filepath.Join(jh, "bin", "java")
			}
		}
	}
	if java == "" {
		p, err := exec.LookPath("java")
		if err != nil {
			return inst, fmt.Errorf("%w: no java in PATH", ErrNotInstalled)
		}
		java = p
	}
	inst.Java = java
	if cp := os.Getenv("ZOOKEEPER_CLASSPATH"); cp != "" {
		inst.ClassPath = strings.Split(cp, ":")
		return inst, nil
	}
	jar := findServerJar()
	if jar == "" {
		return inst, fmt.Errorf("%w: no zookeeper.jar in /usr/share/java or /usr/share/zookeeper", ErrNotInstalled)
	}
	inst.ClassPath = []string{jar}
	dir := filepath.Dir(jar)
	// An upstream tarball layout (lib/*.jar) has no manifest Class-Path.
	if libs, _ := filepath.Glob(filepath.Join(dir, "lib", "*.jar")); len(libs) > 0 {
		inst.ClassPath = append(inst.ClassPath, libs...)
	}
	for _, binding := range []string{"/usr/share/java/slf4j-simple.jar", filepath.Join(dir, "slf4j-simple.jar")} {
		if _, err := os.Stat(binding); err == nil {
			inst.ClassPath = append(inst.ClassPath, binding)
			break
		}
	}
	return inst, nil
}

var serverJarRE = regexp.MustCompile(`/zookeeper(-[0-9][0-9.]*)?\.jar$`)

func findServerJar() string {
	for _, c := range []string{
		"/usr/share/java/zookeeper.jar",
		"/usr/share/zookeeper/zookeeper.jar",
	} {
		if _, err := os.Stat(c); err == nil {
			return c
		}
	}
	if m, _ := filepath.Glob("/usr/share/zookeeper/zookeeper-[0-9]*.jar"); len(m) > 0 {
		return m[0]
	}
	// Ask dpkg where the packages put it.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "dpkg", "-L", "libzookeeper-java", "zookeeper").Output()
	if err != nil && len(out) == 0 {
		return ""
	}
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if serverJarRE.MatchString(line) {
			if _, err := os.Stat(line); err == nil {
				return line
			}
		}
	}
	return ""
}

// Start starts cfg.Servers ZooKeeper servers and waits until all serve. On
// error nothing is left running.
func Start(ctx context.Context, cfg Config) (*Ensemble, error) {
	if cfg.Servers == 0 {
		cfg.Servers = 1
	}
	if cfg.Servers < 1 {
		return nil, fmt.Errorf("zkserver: Servers=%d", cfg.Servers)
	}
	if cfg.TickTime == 0 {
		cfg.TickTime = 500 * time.Millisecond
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 30 * time.Second
	}
	if cfg.Dir == "" {
		return nil, errors.New("zkserver: Config.Dir is empty")
	}
	inst, err := Find()
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(filepath.Join(cfg.Dir, "zk"))
	if err != nil {
		return nil, err
	}
	// Ports picked by FreeAddrs can be taken by someone else before the JVM
	// binds them; a start that fails that way is retried on new ports.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		e, err := start(ctx, cfg, inst, dir)
		if err == nil {
			return e, nil
		}
		lastErr = err
		if ctx.Err() != nil || !errors.Is(err, ErrNotServing) {
			break
		}
	}
	return nil, lastErr
}

func start(ctx context.Context, cfg Config, inst Installation, dir string) (*Ensemble, error) {
	n := cfg.Servers
	ports, err := proc.FreeAddrs(3 * n)
	if err != nil {
		return nil, err
	}
	e := &Ensemble{cfg: cfg, zkDir: dir}
	e.quorum = make([]string, n)
	e.election = make([]string, n)
	for i := 0; i < n; i++ {
		e.quorum[i], e.election[i] = ports[3*i+1], ports[3*i+2]
	}
	// servers is server from's view of the ensemble: its own line where it
	// listens, the others where it dials them (Config.PeerAddrs).
	servers := func(from int) string {
		if n == 1 {
			return ""
		}
		var b strings.Builder
		for i := 0; i < n; i++ {
			q, el := e.quorum[i], e.election[i]
			if i != from && cfg.PeerAddrs != nil {
				q, el = cfg.PeerAddrs(from+1, i+1, q, el)
			}
			fmt.Fprintf(&b, "server.%d=%s:%s\n", i+1, q, port(el))
		}
		return b.String()
	}
	tick := cfg.TickTime.Milliseconds()
	if tick < 1 {
		tick = 1
	}
	specs := make([]proc.Spec, n)
	for i := 0; i < n; i++ {
		client := ports[3*i]
		e.clients = append(e.clients, client)
		sdir := filepath.Join(dir, strconv.Itoa(i))
		data := filepath.Join(sdir, "data")
		if err := os.MkdirAll(data, 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(data, "myid"), []byte(strconv.Itoa(i+1)+"\n"), 0o644); err != nil {
			return nil, err
		}
		zooCfg := fmt.Sprintf(`# written by chainraft internal/zkserver
tickTime=%d
initLimit=10
syncLimit=5
dataDir=%s
clientPort=%s
clientPortAddress=127.0.0.1
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr,stat,mntr,conf
minSessionTimeout=%d
maxSessionTimeout=%d
%s`, tick, data, port(client), 2*tick, 120*tick, servers(i))
		cfgPath := filepath.Join(sdir, "zoo.cfg")
		if err := os.WriteFile(cfgPath, []byte(zooCfg), 0o644); err != nil {
			return nil, err
		}
		args := []string{
			"-Xms32m", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
			// No /tmp/hsperfdata_<user>/<pid> left behind by a SIGKILL.
			"-XX:-UsePerfData",
			"-Dzookeeper.jmx.log4j.disable=true",
			"-Dzookeeper.admin.enableServer=false",
			"-Dorg.slf4j.simpleLogger.showDateTime=true",
			"-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSSZ",
		}
		if !cfg.ForceSync {
			args = append(args, "-Dzookeeper.forceSync=no")
		}
		args = append(args, cfg.JavaOpts...)
		args = append(args,
			"-cp", strings.Join(append(append([]string(nil), inst.ClassPath...), sdir), ":"),
			"org.apache.zookeeper.server.quorum.QuorumPeerMain", cfgPath)
		specs[i] = proc.Spec{
			Name:    fmt.Sprintf("zk-%d", i),
			Path:    inst.Java,
			Args:    args,
			Dir:     sdir,
			LogPath: filepath.Join(dir, strconv.Itoa(i)+".log"),
			CPUs:    cfg.CPUs,
		}
	}
	for i := 0; i < n; i++ {
		p, err := e.group.Start(specs[i])
		if err != nil {
			e.group.CloseAll()
			return nil, err
		}
		e.servers = append(e.servers, p)
	}
	wctx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	defer cancel()
	for i := 0; i < n; i++ {
		if err := e.waitServing(wctx, i); err != nil {
			e.group.CloseAll()
			return nil, err
		}
	}
	return e, nil
}

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// ConnectString is the ensemble as a ZooKeeper connect string ("h:p,h:p").
func (e *Ensemble) ConnectString() string { return strings.Join(e.clients, ",") }

// Addrs are the servers' client addresses, by index.
func (e *Ensemble) Addrs() []string { return append([]string(nil), e.clients...) }

// Size is the number of servers.
func (e *Ensemble) Size() int { return len(e.servers) }

// Process is server i's process, for the nemesis (pause, kill).
func (e *Ensemble) Process(i int) *proc.Process { return e.servers[i] }

// LogPath is server i's log file.
func (e *Ensemble) LogPath(i int) string { return e.servers[i].Spec().LogPath }

func (e *Ensemble) check(i int) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	if i < 0 || i >= len(e.servers) {
		return fmt.Errorf("zkserver: no server %d (ensemble of %d)", i, len(e.servers))
	}
	return nil
}

// Kill SIGKILLs server i (a crash: its data directory stays).
func (e *Ensemble) Kill(i int) error {
	if err := e.check(i); err != nil {
		return err
	}
	return e.servers[i].Kill()
}

// Restart starts a killed server i again on its ports and data directory and
// waits until it serves (a lone survivor of an ensemble cannot serve: the
// deadline is Config.StartTimeout or ctx, whichever comes first).
func (e *Ensemble) Restart(ctx context.Context, i int) error {
	if err := e.check(i); err != nil {
		return err
	}
	if err := e.servers[i].Restart(); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, e.cfg.StartTimeout)
	defer cancel()
	return e.waitServing(wctx, i)
}

// Close kills every server. It is idempotent.
func (e *Ensemble) Close() error {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	return e.group.CloseAll()
}

// Mode is server i's mode as `srvr` reports it: "standalone", "leader",
// "follower", or an error while it does not serve.
func (e *Ensemble) Mode(i int) (string, error) {
	out, err := FourLetter(e.clients[i], "srvr", 2*time.Second)
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(out, "\n") {
		if m, ok := strings.CutPrefix(line, "Mode: "); ok {
			return strings.TrimSpace(m), nil
		}
	}
	return "", fmt.Errorf("%w: %s: %s", ErrNotServing, e.servers[i].Name(), strings.TrimSpace(out))
}

// Leader is the index of the server that leads (or the standalone server).
func (e *Ensemble) Leader() (int, error) {
	for i, p := range e.servers {
		if !p.Running() || p.Paused() {
			continue
		}
		m, err := e.Mode(i)
		if err == nil && (m == "leader" || m == "standalone") {
			return i, nil
		}
	}
	return -1, ErrNoLeader
}

// WaitServing waits until server i serves, or ctx ends.
func (e *Ensemble) WaitServing(ctx context.Context, i int) error {
	if err := e.check(i); err != nil {
		return err
	}
	return e.waitServing(ctx, i)
}

func (e *Ensemble) waitServing(ctx context.Context, i int) error {
	p := e.servers[i]
	exited := p.Exited()
	var last error
	for {
		if _, err := e.Mode(i); err == nil {
			return nil
		} else {
			last = err
		}
		select {
		case <-exited:
			return fmt.Errorf("%w: %s exited (%v) before serving; log %s:\n%s",
				ErrNotServing, p.Name(), p.ExitErr(), p.Spec().LogPath, tail(p.Spec().LogPath, 15))
		case <-ctx.Done():
			return fmt.Errorf("%w: %s not serving: %v (last: %v); log %s:\n%s",
				ErrNotServing, p.Name(), ctx.Err(), last, p.Spec().LogPath, tail(p.Spec().LogPath, 15))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// FourLetter sends a ZooKeeper four-letter word to addr and returns the
// answer, within timeout.
func FourLetter(addr, cmd string, timeout time.Duration) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return "", err
	}
	if _, err := conn.Write([]byte(cmd)); err != nil {
		return "", err
	}
	b, err := io.ReadAll(conn)
	if err != nil {
		return string(b), err
	}
	return string(b), nil
}

// tail returns the last n lines of a file, for error messages.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var lines []string
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64*1024), 1024*1024)
	for s.Scan() {
		lines = append(lines, s.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}
