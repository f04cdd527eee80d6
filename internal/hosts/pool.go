package hosts

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// Bounds of the harness's own calls to a host.
const (
	// opTimeout bounds one short remote command (a rule set, a signal).
	opTimeout = 15 * time.Second
	// copyTimeout bounds copying the chainraft binary or fetching a
	// node's files.
	copyTimeout = 5 * time.Minute
)

// Host is one machine (or network namespace) the harness drives over SSH.
type Host struct {
	// Name names the host in messages and file names ("h1", or the name
	// given on the command line).
	Name string
	// Addr is the IP address its nodes listen on and peers dial.
	Addr string
	// Base is the host's working directory for this run: the binary, node
	// data directories and logs live below it.
	Base string

	pool   *Pool
	client *ssh.Client
	// guard is the session whose end (the harness gone, the connection
	// lost) removes the host's firewall chain (see guardScript).
	guard      *ssh.Session
	guardStdin io.WriteCloser
	// ctl runs the harness's short commands (rule sets, checks, /proc
	// reads) without a session each.
	ctl *control

	mu        sync.Mutex
	installed map[string]string // local binary's sha256 → remote path
	rules     string            // the rule set last applied
}

// Pool is the hosts of one run. Close ends everything the run started on
// them.
type Pool struct {
	// ID tags everything the run makes: namespaces, the bridge, firewall
	// chains, remote directories.
	ID string
	// Kind is "netns" or "ssh".
	Kind string
	// Hosts in order; nodes are placed on them by NodeHost.
	Hosts []*Host
	// Control is the address the hosts see the harness at (the "client"
	// endpoint of the nemesis).
	Control string
	// Netem says whether the hosts' kernels have netem (delay faults);
	// NetemWhy says why not.
	Netem    bool
	NetemWhy string

	log   io.Writer
	auth  sshAuth
	netns *netnsSet

	closeOnce sync.Once
	closeErr  error
}

// Options shape a pool.
type Options struct {
	// Log receives a line per step (hosts made, binaries copied, cleanup).
	Log io.Writer
}

// Open makes or reaches the hosts spec names: "netns:N" (N network
// namespaces on this machine, made for the run), "a,b,c" (SSH hosts,
// [user@]host[:port]) or "@file" (one such host a line, # comments). It
// first removes what runs killed before their cleanup left on this
// machine (Sweep).
func Open(ctx context.Context, spec string, opts Options) (_ *Pool, err error) {
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	p := &Pool{ID: newID(), log: opts.Log}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	if swept := Sweep(); len(swept) > 0 {
		fmt.Fprintf(p.log, "hosts: removed what killed runs left: %s\n", strings.Join(swept, ", "))
	}
	if n, ok := strings.CutPrefix(spec, "netns:"); ok {
		count, err := strconv.Atoi(n)
		if err != nil || count < 1 || count > 60 {
			return nil, fmt.Errorf("--hosts %s: want netns:N with N from 1 to 60", spec)
		}
		p.Kind = "netns"
		if err := p.openNetns(ctx, count); err != nil {
			return nil, err
		}
	} else {
		names, err := parseList(spec)
		if err != nil {
			return nil, err
		}
		p.Kind = "ssh"
		if p.auth, err = userAuth(); err != nil {
			return nil, fmt.Errorf("--hosts: %w", err)
		}
		for i, n := range names {
			if err := p.reach(ctx, n, fmt.Sprintf("h%d-%s", i+1, safeName(n))); err != nil {
				return nil, err
			}
		}
	}
	if err := p.prepare(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// parseList reads "a,b,c" or "@file".
func parseList(spec string) ([]string, error) {
	var names []string
	if path, ok := strings.CutPrefix(spec, "@"); ok {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("--hosts: %w", err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if i := strings.IndexByte(line, '#'); i >= 0 {
				line = line[:i]
			}
			if line = strings.TrimSpace(line); line != "" {
				names = append(names, line)
			}
		}
	} else {
		for _, n := range strings.Split(spec, ",") {
			if n = strings.TrimSpace(n); n != "" {
				names = append(names, n)
			}
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("--hosts %q names no host", spec)
	}
	return names, nil
}

func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' {
			return r
		}
		return '_'
	}, s)
}

func newID() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// reach connects to a host named [user@]host[:port].
func (p *Pool) reach(ctx context.Context, spec, name string) error {
	user := p.auth.user
	hostport := spec
	if u, h, ok := strings.Cut(spec, "@"); ok {
		user, hostport = u, h
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		host, port = hostport, "22"
	}
	addrs, err := net.DefaultResolver.LookupHost(ctx, host)
	if err != nil || len(addrs) == 0 {
		return fmt.Errorf("--hosts: %s: %v", host, err)
	}
	c, err := dialSSH(ctx, net.JoinHostPort(host, port), user, p.auth)
	if err != nil {
		return fmt.Errorf("--hosts: ssh %s@%s: %w", user, net.JoinHostPort(host, port), err)
	}
	h := &Host{Name: name, Addr: addrs[0], pool: p, client: c, installed: map[string]string{},
		Base: "/tmp/chainraft-" + p.ID}
	h.ctl = &control{host: h}
	if p.Control == "" {
		if la, ok := c.LocalAddr().(*net.TCPAddr); ok {
			p.Control = la.IP.String()
		}
	}
	p.Hosts = append(p.Hosts, h)
	return nil
}

// prepare checks every host (a shell, the tools the harness needs),
// makes its working directory and firewall chain, and starts its guard.
func (p *Pool) prepare(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make([]error, len(p.Hosts))
	netem := make([]string, len(p.Hosts))
	for i, h := range p.Hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = h.prepare(ctx)
			if errs[i] == nil {
				netem[i] = h.checkNetem(ctx)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	p.Netem = true
	for i, why := range netem {
		if why != "" {
			p.Netem = false
			p.NetemWhy = fmt.Sprintf("host %s: %s", p.Hosts[i].Name, why)
		}
	}
	fmt.Fprintf(p.log, "hosts: %d %s host(s) ready, run id %s, firewall chain %s (netem: %v%s)\n",
		len(p.Hosts), p.Kind, p.ID, p.Chain(), p.Netem, map[bool]string{true: "", false: ": " + p.NetemWhy}[p.Netem])
	return nil
}

func (h *Host) prepare(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	out, err := h.Do(ctx, "for t in iptables iptables-restore setsid tar kill; do command -v $t >/dev/null 2>&1 || echo missing $t; done; [ \"$(id -u)\" = 0 ] || echo notroot", "")
	if err != nil {
		return err
	}
	var missing []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if t, ok := strings.CutPrefix(l, "missing "); ok {
			missing = append(missing, t)
		} else if l == "notroot" {
			return fmt.Errorf("host %s: the harness must log in as root (iptables, signals to every node)", h.Name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("host %s lacks %s (Debian: apt-get install iptables util-linux tar procps)", h.Name, strings.Join(missing, ", "))
	}
	c := h.pool.Chain()
	setup := fmt.Sprintf("mkdir -p %s && iptables -w -N %s && iptables -w -I INPUT 1 -j %s && iptables -w -I OUTPUT 1 -j %s",
		Quote(h.Base), c, c, c)
	if _, err := h.Do(ctx, setup, ""); err != nil {
		return err
	}
	return h.startGuard()
}

// guardScript runs for the whole run in a session of its own: when its
// stdin ends, because the harness closed it or died (the kernel closes a
// dead process's connection), it removes the run's firewall chain and
// steps the clock back (clockUndoCmd), so a killed harness leaves no
// partition and no clock fault behind on a real host.
//
// Its pid file names the guard in /tmp: on netns hosts the reaper removes
// it with the namespaces (their processes die before the script's end).
//
// On netns hosts the guard leaves the clock to the reaper: the reaper
// kills every process in the namespaces, and a guard killed between
// taking the clock record and stepping the clock back would leave both
// undone.
func guardScript(chain string, clock bool) string {
	return fmt.Sprintf(`trap '' HUP; echo $$ > /tmp/%s.guard; echo ready; cat >/dev/null; %s; rm -f /tmp/%s.guard`,
		chain, teardownCmd(chain, clock), chain)
}

// teardownCmd removes the run's firewall chain and, with clock, steps the
// host's clock back by what the run recorded.
func teardownCmd(chain string, clock bool) string {
	undo := ""
	if clock {
		undo = clockUndoCmd(chain) + "; "
	}
	return undo + fmt.Sprintf("iptables -w -D INPUT -j %[1]s 2>/dev/null; iptables -w -D OUTPUT -j %[1]s 2>/dev/null; iptables -w -F %[1]s 2>/dev/null; iptables -w -X %[1]s 2>/dev/null; true", chain)
}

func (h *Host) startGuard() error {
	s, err := h.client.NewSession()
	if err != nil {
		return fmt.Errorf("host %s: guard session: %w", h.Name, err)
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
	if err := s.Start(guardScript(h.pool.Chain(), !h.pool.ClockShared())); err != nil {
		s.Close()
		return fmt.Errorf("host %s: guard: %w", h.Name, err)
	}
	ready := make(chan error, 1)
	go func() {
		l, err := bufio.NewReader(out).ReadString('\n')
		if err == nil && strings.TrimSpace(l) != "ready" {
			err = fmt.Errorf("guard said %q", l)
		}
		ready <- err
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case err := <-ready:
		if err != nil {
			s.Close()
			return fmt.Errorf("host %s: guard: %w", h.Name, err)
		}
	case <-time.After(opTimeout):
		s.Close()
		return fmt.Errorf("host %s: guard did not start within %v", h.Name, opTimeout)
	}
	h.guard, h.guardStdin = s, in
	return nil
}

func (h *Host) checkNetem(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	// A qdisc on a dummy-free probe: the loopback's root, added and removed
	// at once in a namespace of the probe's own would be cleaner, but a
	// real host may forbid unshare; lo's qdisc is restored right away.
	out, err := h.Do(ctx, "command -v tc >/dev/null || { echo 'no tc (iproute2)'; exit 0; }; "+
		"ip netns add crprobe-"+h.pool.ID+" 2>/dev/null && { ip netns exec crprobe-"+h.pool.ID+" tc qdisc add dev lo root netem delay 1ms >/dev/null 2>&1 || echo 'the kernel has no netem (sch_netem)'; ip netns del crprobe-"+h.pool.ID+"; exit 0; }; "+
		"tc qdisc show >/dev/null 2>&1 || echo 'tc cannot list qdiscs'", "")
	if err != nil {
		return err.Error()
	}
	return strings.TrimSpace(string(out))
}

// Chain is the run's firewall chain on every host.
func (p *Pool) Chain() string { return chainPrefix + p.ID }

// chainPrefix tags every firewall chain chainraft makes.
const chainPrefix = "CHAINRAFT-"

// NodeHost is the host node id runs on: node 1 on the first host, and so
// on, wrapping around when there are more nodes than hosts.
func (p *Pool) NodeHost(id int) *Host { return p.Hosts[(id-1)%len(p.Hosts)] }

// ServiceHosts returns n hosts for a service beside the nodes (a ZooKeeper
// ensemble): hosts after the first nodes ones when the pool has them (a
// netns pool grows to make them), else the nodes' hosts.
func (p *Pool) ServiceHosts(ctx context.Context, nodes, n int) ([]*Host, error) {
	if p.Kind == "netns" && len(p.Hosts) < nodes+n {
		if err := p.growNetns(ctx, nodes+n-len(p.Hosts)); err != nil {
			return nil, err
		}
	}
	var out []*Host
	for i := 0; i < n; i++ {
		if nodes+i < len(p.Hosts) {
			out = append(out, p.Hosts[nodes+i])
		} else {
			out = append(out, p.Hosts[i%len(p.Hosts)])
		}
	}
	return out, nil
}

// Install copies the local file path to h (once per content) and returns
// its remote path. The copy is a plain `cat >` over a session: no scp or
// sftp needed on the host.
func (h *Host) Install(ctx context.Context, path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sum := sha256.New()
	if _, err := io.Copy(sum, f); err != nil {
		return "", err
	}
	key := hex.EncodeToString(sum.Sum(nil))
	h.mu.Lock()
	defer h.mu.Unlock()
	if r, ok := h.installed[key]; ok {
		return r, nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	remote := h.Base + "/bin/" + key[:12] + "-" + filepath.Base(path)
	ctx, cancel := context.WithTimeout(ctx, copyTimeout)
	defer cancel()
	cmd := fmt.Sprintf("mkdir -p %s/bin && cat > %s.tmp && chmod 755 %s.tmp && mv %s.tmp %s && sha256sum %s",
		Quote(h.Base), Quote(remote), Quote(remote), Quote(remote), Quote(remote), Quote(remote))
	out, err := h.Run(ctx, cmd, f)
	if err != nil {
		return "", err
	}
	if got, _, _ := strings.Cut(strings.TrimSpace(string(out)), " "); got != key {
		return "", fmt.Errorf("host %s: copy of %s arrived with sha256 %s, want %s", h.Name, path, got, key)
	}
	h.installed[key] = remote
	fmt.Fprintf(h.pool.log, "hosts: %s copied to %s:%s\n", filepath.Base(path), h.Name, remote)
	return remote, nil
}

// Require fails naming the commands h lacks (a foreign store's server).
func (h *Host) Require(ctx context.Context, cmds ...string) error {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	var b strings.Builder
	for _, c := range cmds {
		fmt.Fprintf(&b, "command -v %s >/dev/null 2>&1 || [ -x %s ] || echo %s; ", Quote(c), Quote(c), Quote(c))
	}
	out, err := h.Do(ctx, b.String(), "")
	if err != nil {
		return err
	}
	if m := strings.Fields(string(out)); len(m) > 0 {
		return fmt.Errorf("host %s lacks %s: install it there", h.Name, strings.Join(m, ", "))
	}
	return nil
}

// Fetch copies the remote directory dir (and everything below it) into
// the local directory local, as a tar stream over one session.
func (h *Host) Fetch(ctx context.Context, dir, local string) error {
	ctx, cancel := context.WithTimeout(ctx, copyTimeout)
	defer cancel()
	s, err := h.client.NewSession()
	if err != nil {
		return fmt.Errorf("host %s: session: %w", h.Name, err)
	}
	defer s.Close()
	out, err := s.StdoutPipe()
	if err != nil {
		return err
	}
	if err := s.Start(fmt.Sprintf("[ -d %s ] && tar -C %s -cf - . || tar -cf - -T /dev/null", Quote(dir), Quote(dir))); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- untar(out, local) }()
	select {
	case err := <-done:
		if werr := s.Wait(); err == nil && werr != nil {
			err = werr
		}
		if err != nil {
			return fmt.Errorf("host %s: fetching %s: %w", h.Name, dir, err)
		}
		return nil
	case <-ctx.Done():
		s.Close()
		<-done
		return fmt.Errorf("host %s: fetching %s: %w", h.Name, dir, ctx.Err())
	}
}

// untar writes a tar stream's regular files and directories below dir,
// refusing names that would leave it.
func untar(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	for {
		hd, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.Clean(hd.Name)
		if name == "." {
			continue
		}
		if filepath.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return fmt.Errorf("tar entry %q leaves the directory", hd.Name)
		}
		path := filepath.Join(dir, name)
		switch hd.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(path, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		}
	}
}

// netnsGone reports whether the pool's namespaces were already removed,
// so that there is no host left to clean up.
func (p *Pool) netnsGone() bool {
	if p.netns == nil {
		return false
	}
	p.netns.mu.Lock()
	defer p.netns.mu.Unlock()
	return p.netns.gone
}

// Close heals every host's firewall (removing the run's chain), removes
// the run's working directories, ends the sessions and, for netns,
// removes the namespaces, the bridge and the sshd processes. Idempotent.
func (p *Pool) Close() error {
	p.closeOnce.Do(func() {
		var errs []error
		for _, h := range p.Hosts {
			if h.client == nil {
				continue
			}
			if p.netnsGone() {
				h.client.Close()
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
			if _, err := h.Do(ctx, teardownCmd(p.Chain(), true)+"; rm -rf "+Quote(h.Base), ""); err != nil {
				errs = append(errs, err)
			}
			cancel()
			h.ctl.close()
			if h.guard != nil {
				h.guardStdin.Close()
				h.guard.Close()
			}
			h.client.Close()
		}
		if p.netns != nil {
			if err := p.netns.close(); err != nil {
				errs = append(errs, err)
			}
		}
		p.closeErr = errors.Join(errs...)
		fmt.Fprintf(p.log, "hosts: run %s cleaned up (%d hosts)\n", p.ID, len(p.Hosts))
	})
	return p.closeErr
}
