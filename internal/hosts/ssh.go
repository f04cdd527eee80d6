package hosts

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"
)

// dialTimeout bounds one SSH connection's TCP connect and handshake.
const dialTimeout = 10 * time.Second

// sshAuth is how the harness proves who it is and checks who it reached.
type sshAuth struct {
	user    string
	signers []ssh.Signer
	// hostKeys checks a host's key against known_hosts: a host whose key
	// is unknown or changed is refused, never trusted on first use.
	hostKeys ssh.HostKeyCallback
}

// userAuth is the user's own SSH setup: the agent (SSH_AUTH_SOCK) and the
// unencrypted keys in ~/.ssh, checked against ~/.ssh/known_hosts.
func userAuth() (sshAuth, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return sshAuth{}, err
	}
	var signers []ssh.Signer
	if sock := os.Getenv("SSH_AUTH_SOCK"); sock != "" {
		if c, err := net.DialTimeout("unix", sock, time.Second); err == nil {
			if ss, err := agent.NewClient(c).Signers(); err == nil {
				signers = append(signers, ss...)
			}
		}
	}
	for _, name := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
		b, err := os.ReadFile(filepath.Join(home, ".ssh", name))
		if err != nil {
			continue
		}
		s, err := ssh.ParsePrivateKey(b)
		if err != nil {
			continue // passphrase-protected: only through the agent
		}
		signers = append(signers, s)
	}
	if len(signers) == 0 {
		return sshAuth{}, errors.New("no SSH key: none in the agent (SSH_AUTH_SOCK) and no unencrypted ~/.ssh/id_ed25519, id_ecdsa or id_rsa")
	}
	kh, err := knownhosts.New(filepath.Join(home, ".ssh", "known_hosts"))
	if err != nil {
		return sshAuth{}, fmt.Errorf("known_hosts: %w", err)
	}
	user := os.Getenv("USER")
	if user == "" {
		user = "root"
	}
	return sshAuth{user: user, signers: signers, hostKeys: kh}, nil
}

func dialSSH(ctx context.Context, addr, user string, auth sshAuth) (*ssh.Client, error) {
	cfg := &ssh.ClientConfig{
		User:            user,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(auth.signers...)},
		HostKeyCallback: auth.hostKeys,
		Timeout:         dialTimeout,
	}
	d := net.Dialer{Timeout: dialTimeout}
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	conn, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(dialTimeout))
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if err != nil {
		conn.Close()
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nil
}

// Run runs a shell command on h with stdin (nil: none) and returns its
// combined output; the session is closed when ctx ends. Output is read to
// its end before the session is waited for: waiting first can lose output
// still in flight.
func (h *Host) Run(ctx context.Context, cmd string, stdin io.Reader) ([]byte, error) {
	s, err := h.client.NewSession()
	if err != nil {
		return nil, fmt.Errorf("host %s: session: %w", h.Name, err)
	}
	defer s.Close()
	if stdin != nil {
		s.Stdin = stdin
	}
	stdout, err := s.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := s.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := s.Start(cmd); err != nil {
		return nil, fmt.Errorf("host %s: %w", h.Name, err)
	}
	var out lockedBuffer
	done := make(chan error, 1)
	go func() {
		var wg sync.WaitGroup
		wg.Add(2)
		for _, r := range []io.Reader{stdout, stderr} {
			go func() {
				defer wg.Done()
				_, _ = io.Copy(&out, r)
			}()
		}
		wg.Wait()
		done <- s.Wait()
	}()
	select {
	case err := <-done:
		if err != nil {
			return out.Bytes(), fmt.Errorf("host %s: %s: %w: %s", h.Name, firstLine(cmd), err, strings.TrimSpace(string(out.Bytes())))
		}
		return out.Bytes(), nil
	case <-ctx.Done():
		s.Close()
		<-done
		return out.Bytes(), fmt.Errorf("host %s: %s: %w", h.Name, firstLine(cmd), ctx.Err())
	}
}

// lockedBuffer is a buffer two copying goroutines may write.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]byte(nil), l.b.Bytes()...)
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i] + " ..."
	}
	if len(s) > 120 {
		s = s[:120] + "..."
	}
	return s
}

// Quote quotes s for a POSIX shell.
func Quote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=,+@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// QuoteAll quotes and joins words for a POSIX shell.
func QuoteAll(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = Quote(w)
	}
	return strings.Join(q, " ")
}
