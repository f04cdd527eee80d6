package hosts

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/chainraft/chainraft/internal/proc"
)

// Names of everything a netns pool makes, all carrying the run id, so that
// a sweep touches nothing else: namespaces chainraft-<id>-<i>, the bridge
// crbr-<id>, veth crv<id>-<i>, and the state directory
// <tmp>/chainraft-hosts/<id> (keys, sshd configs, the owner's pid).
const (
	nsPrefix     = "chainraft-"
	bridgePrefix = "crbr-"
	vethPrefix   = "crv"
	// subnetBase: the pool takes the first 10.213.X.0/24 no interface of
	// this machine has an address in.
	subnetBase = "10.213."
)

// StateRoot holds every netns pool's state directory.
func StateRoot() string { return filepath.Join(os.TempDir(), "chainraft-hosts") }

type netnsSet struct {
	id     string
	state  string
	bridge string
	subnet int // X of 10.213.X.0/24
	auth   sshAuth
	hostPK ssh.Signer
	known  string // known_hosts path
	log    io.Writer

	mu     sync.Mutex
	names  []string        // namespaces made
	sshd   []*proc.Process // one per namespace, Pdeathsig: dies with the harness
	gone   bool            // close ran: the hosts are unreachable
	reaper *exec.Cmd
	// reaperPipe is the write end of the reaper's stdin: it closes when the
	// harness exits, however it exits.
	reaperPipe *os.File
}

// Available reports why netns hosts cannot be made here, or nil.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("netns hosts need root (network namespaces, a bridge, iptables)")
	}
	for _, c := range []string{"ip", "iptables", "iptables-restore", "setsid"} {
		if _, err := exec.LookPath(c); err != nil {
			return fmt.Errorf("netns hosts need %s (scripts/deps.sh installs it)", c)
		}
	}
	if _, err := os.Stat(sshdPath); err != nil {
		return fmt.Errorf("netns hosts need %s (apt-get install openssh-server; scripts/deps.sh installs it)", sshdPath)
	}
	return nil
}

const sshdPath = "/usr/sbin/sshd"

func run(ctx context.Context, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (p *Pool) openNetns(ctx context.Context, count int) error {
	if err := Available(); err != nil {
		return err
	}
	s := &netnsSet{id: p.ID, state: filepath.Join(StateRoot(), p.ID), bridge: bridgePrefix + p.ID, log: p.log}
	if err := os.MkdirAll(s.state, 0o700); err != nil {
		return err
	}
	if err := writeOwner(s.state); err != nil {
		return err
	}
	p.netns = s
	// The reaper first: from here on, whatever the harness's end, what
	// follows is undone.
	if err := s.startReaper(); err != nil {
		return err
	}
	if err := s.keys(); err != nil {
		return err
	}
	p.auth = s.auth
	x, err := freeSubnet()
	if err != nil {
		return err
	}
	s.subnet = x
	if err := run(ctx, "ip", "link", "add", s.bridge, "type", "bridge"); err != nil {
		return err
	}
	if err := run(ctx, "ip", "addr", "add", s.gateway()+"/24", "dev", s.bridge); err != nil {
		return err
	}
	if err := run(ctx, "ip", "link", "set", s.bridge, "up"); err != nil {
		return err
	}
	p.Control = s.gateway()
	fmt.Fprintf(p.log, "hosts: bridge %s at %s/24\n", s.bridge, s.gateway())
	return p.growNetns(ctx, count)
}

func (s *netnsSet) gateway() string { return fmt.Sprintf("%s%d.1", subnetBase, s.subnet) }

func (s *netnsSet) hostAddr(i int) string { return fmt.Sprintf("%s%d.%d", subnetBase, s.subnet, 10+i) }

// freeSubnet picks X such that no address of this machine is in
// 10.213.X.0/24.
func freeSubnet() (int, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return 0, err
	}
	used := map[int]bool{}
	for _, a := range addrs {
		ip, _, err := net.ParseCIDR(a.String())
		if err != nil || ip.To4() == nil {
			continue
		}
		if v4 := ip.To4(); v4[0] == 10 && v4[1] == 213 {
			used[int(v4[2])] = true
		}
	}
	for x := 1; x < 255; x++ {
		if !used[x] {
			return x, nil
		}
	}
	return 0, errors.New("hosts: no free 10.213.X.0/24 subnet")
}

// growNetns adds n namespaces, each with an sshd, and connects to them.
func (p *Pool) growNetns(ctx context.Context, n int) error {
	s := p.netns
	for k := 0; k < n; k++ {
		i := len(p.Hosts) + 1
		name := fmt.Sprintf("%s%s-%d", nsPrefix, s.id, i)
		addr := s.hostAddr(i)
		if err := s.addNamespace(ctx, i, name, addr); err != nil {
			return err
		}
		c, err := s.dial(ctx, addr)
		if err != nil {
			return fmt.Errorf("hosts: sshd in %s: %w (see %s)", name, err, filepath.Join(s.state, fmt.Sprintf("sshd-%d.log", i)))
		}
		h := &Host{Name: fmt.Sprintf("h%d", i), Addr: addr, pool: p, client: c, installed: map[string]string{},
			Base: filepath.Join(s.state, "root", fmt.Sprintf("h%d", i))}
		h.ctl = &control{host: h}
		p.Hosts = append(p.Hosts, h)
		if len(p.Hosts) > n { // grown after Open: prepare it now
			if err := h.prepare(ctx); err != nil {
				return err
			}
		}
		fmt.Fprintf(p.log, "hosts: namespace %s at %s, sshd on :22\n", name, addr)
	}
	return nil
}

func (s *netnsSet) addNamespace(ctx context.Context, i int, name, addr string) error {
	s.mu.Lock()
	s.names = append(s.names, name)
	s.mu.Unlock()
	veth := fmt.Sprintf("%s%s-%d", vethPrefix, s.id, i)
	peer := fmt.Sprintf("crp%s-%d", s.id, i)
	steps := [][]string{
		{"ip", "netns", "add", name},
		{"ip", "link", "add", veth, "type", "veth", "peer", "name", peer},
		{"ip", "link", "set", peer, "netns", name},
		{"ip", "link", "set", veth, "master", s.bridge},
		{"ip", "link", "set", veth, "up"},
		{"ip", "-n", name, "link", "set", peer, "name", "eth0"},
		{"ip", "-n", name, "addr", "add", addr + "/24", "dev", "eth0"},
		{"ip", "-n", name, "link", "set", "eth0", "up"},
		{"ip", "-n", name, "link", "set", "lo", "up"},
		{"ip", "-n", name, "route", "add", "default", "via", s.gateway()},
		// A socket closed with a FIN unacknowledged (its peer's namespace
		// already gone) keeps its namespace, and so the veth here, alive
		// while it retries: minutes with the default of 8 retries. One
		// retry and a short FIN timeout let a removed host vanish soon.
		{"ip", "netns", "exec", name, "sysctl", "-q", "-w", "net.ipv4.tcp_orphan_retries=1", "net.ipv4.tcp_fin_timeout=5"},
	}
	for _, st := range steps {
		if err := run(ctx, st[0], st[1:]...); err != nil {
			return err
		}
	}
	cfg := filepath.Join(s.state, fmt.Sprintf("sshd-%d.conf", i))
	conf := fmt.Sprintf(`# chainraft run %s, host %d: removed with the run
ListenAddress %s:22
HostKey %s
AuthorizedKeysFile %s
PidFile none
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
MaxSessions 256
MaxStartups 64
ClientAliveInterval 5
ClientAliveCountMax 3
LogLevel ERROR
`, s.id, i, addr, filepath.Join(s.state, "host_key"), filepath.Join(s.state, "authorized_keys"))
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		return err
	}
	// sshd refuses to start without its privilege separation directory,
	// which the package's service would make at boot.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return err
	}
	p, err := proc.Start(proc.Spec{
		Name: "sshd-" + name, Path: "ip",
		Args:    []string{"netns", "exec", name, sshdPath, "-D", "-e", "-f", cfg},
		LogPath: filepath.Join(s.state, fmt.Sprintf("sshd-%d.log", i)),
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.sshd = append(s.sshd, p)
	s.mu.Unlock()
	return nil
}

// dial connects to a namespace's sshd, retrying while it starts.
func (s *netnsSet) dial(ctx context.Context, addr string) (*ssh.Client, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := dialSSH(ctx, net.JoinHostPort(addr, "22"), "root", s.auth)
		if err == nil {
			return c, nil
		}
		if time.Now().After(deadline) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// keys makes the run's throwaway host key and client key, the
// authorized_keys the sshds accept, and the known_hosts the harness
// checks them against (written as each host is added).
func (s *netnsSet) keys() error {
	mk := func(name string) (ssh.Signer, error) {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		blk, err := ssh.MarshalPrivateKey(priv, "chainraft run "+s.id)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(s.state, name), pem.EncodeToMemory(blk), 0o600); err != nil {
			return nil, err
		}
		return ssh.NewSignerFromKey(priv)
	}
	hostKey, err := mk("host_key")
	if err != nil {
		return err
	}
	clientKey, err := mk("client_key")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(s.state, "authorized_keys"), ssh.MarshalAuthorizedKey(clientKey.PublicKey()), 0o600); err != nil {
		return err
	}
	// Every namespace's sshd shows the same host key; known_hosts lists it
	// for the run's addresses only (the whole /24 as a pattern).
	s.known = filepath.Join(s.state, "known_hosts")
	line := knownhosts.Line([]string{fmt.Sprintf("%s*", subnetBase)}, hostKey.PublicKey())
	if err := os.WriteFile(s.known, []byte(line+"\n"), 0o600); err != nil {
		return err
	}
	kh, err := knownhosts.New(s.known)
	if err != nil {
		return err
	}
	s.hostPK = hostKey
	s.auth = sshAuth{user: "root", signers: []ssh.Signer{clientKey}, hostKeys: kh}
	return nil
}

// reaperScript undoes a netns pool when its stdin ends: the harness closed
// it (Close) or died (the kernel closes a dead process's files, SIGKILL
// included). It runs in a session of its own so that a ^C to the harness's
// process group does not take it down before it has cleaned up.
func reaperScript(id, state string) string {
	return fmt.Sprintf(`cat >/dev/null
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^%[1]s%[2]s-'); do
	for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
	ip netns del "$ns" 2>/dev/null
done
ip link del %[3]s%[2]s 2>/dev/null
%[6]s
rm -rf '%[4]s' '/tmp/%[5]s%[2]s.guard'
true
`, nsPrefix, id, bridgePrefix, state, chainPrefix, clockUndoCmd(chainPrefix+id))
}

func (s *netnsSet) startReaper() error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd := exec.Command("sh", "-c", reaperScript(s.id, s.state))
	cmd.Stdin = r
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return err
	}
	r.Close()
	s.reaper, s.reaperPipe = cmd, w
	return nil
}

// close kills the sshds (and, through the namespaces, everything started
// in them), then lets the reaper remove namespaces, bridge and state, and
// waits for it.
func (s *netnsSet) close() error {
	s.mu.Lock()
	sshd, was := s.sshd, s.gone
	s.gone = true
	s.mu.Unlock()
	if was {
		return nil
	}
	for _, p := range sshd {
		_ = p.Kill()
	}
	if s.reaper == nil {
		return nil
	}
	s.reaperPipe.Close()
	done := make(chan error, 1)
	go func() { done <- s.reaper.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("hosts: cleanup of run %s: %w", s.id, err)
		}
	case <-time.After(30 * time.Second):
		return fmt.Errorf("hosts: cleanup of run %s did not end within 30s", s.id)
	}
	return nil
}

// writeOwner records who owns a state directory: this process's pid and
// start time (a pid alone may be reused).
func writeOwner(dir string) error {
	st, err := startTime(os.Getpid())
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "owner"), []byte(fmt.Sprintf("%d %s\n", os.Getpid(), st)), 0o600)
}

func startTime(pid int) (string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", err
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return "", errors.New("malformed stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return "", errors.New("malformed stat")
	}
	return f[19], nil
}

// alive reports whether the run id's owner still runs.
func alive(id string) bool {
	b, err := os.ReadFile(filepath.Join(StateRoot(), id, "owner"))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return false
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil {
		return false
	}
	st, err := startTime(pid)
	return err == nil && st == f[1]
}

// Sweep removes what netns runs whose harness is gone left on this
// machine: their namespaces (and every process in them), bridges, veths
// and state directories. Only names chainraft makes are looked at, and
// only those of dead owners are touched. It returns what it removed.
func Sweep() []string {
	if os.Geteuid() != 0 {
		return nil
	}
	var removed []string
	ctx := context.Background()
	if out, err := exec.Command("ip", "netns", "list").Output(); err == nil {
		for _, l := range strings.Split(string(out), "\n") {
			f := strings.Fields(l)
			if len(f) == 0 || !strings.HasPrefix(f[0], nsPrefix) {
				continue
			}
			name := f[0]
			id, _, ok := strings.Cut(strings.TrimPrefix(name, nsPrefix), "-")
			if !ok || alive(id) {
				continue
			}
			if pids, err := exec.Command("ip", "netns", "pids", name).Output(); err == nil {
				for _, p := range strings.Fields(string(pids)) {
					if pid, err := strconv.Atoi(p); err == nil {
						_ = syscall.Kill(pid, syscall.SIGKILL)
					}
				}
			}
			if run(ctx, "ip", "netns", "del", name) == nil {
				removed = append(removed, "namespace "+name)
			}
		}
	}
	if ifs, err := net.Interfaces(); err == nil {
		for _, i := range ifs {
			if id, ok := strings.CutPrefix(i.Name, bridgePrefix); ok && !alive(id) {
				if run(ctx, "ip", "link", "del", i.Name) == nil {
					removed = append(removed, "bridge "+i.Name)
				}
			}
		}
	}
	removed = append(removed, sweepClocks()...)
	if ents, err := os.ReadDir(StateRoot()); err == nil {
		for _, e := range ents {
			if !alive(e.Name()) {
				if os.RemoveAll(filepath.Join(StateRoot(), e.Name())) == nil {
					removed = append(removed, "state "+e.Name())
				}
			}
		}
	}
	return removed
}

// Leftovers lists what chainraft's netns runs have on this machine now
// (namespaces, bridges, sshd processes started for them), for tests and
// for a user checking that a run cleaned up.
func Leftovers() []string {
	var out []string
	if b, err := exec.Command("ip", "netns", "list").Output(); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) > 0 && strings.HasPrefix(f[0], nsPrefix) {
				out = append(out, "namespace "+f[0])
			}
		}
	}
	if ifs, err := net.Interfaces(); err == nil {
		for _, i := range ifs {
			if strings.HasPrefix(i.Name, bridgePrefix) || strings.HasPrefix(i.Name, vethPrefix) {
				out = append(out, "interface "+i.Name)
			}
		}
	}
	out = append(out, clockLeftovers()...)
	if ents, err := os.ReadDir("/proc"); err == nil {
		for _, e := range ents {
			if _, err := strconv.Atoi(e.Name()); err != nil {
				continue
			}
			b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
			if err != nil {
				continue
			}
			cmd := strings.ReplaceAll(string(b), "\x00", " ")
			if strings.Contains(cmd, StateRoot()+"/") {
				out = append(out, "process "+e.Name()+": "+strings.TrimSpace(cmd))
			}
		}
	}
	return out
}
