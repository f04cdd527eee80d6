package hosts

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
)

// control is a host's long-lived command shell: one SSH session whose
// stdin takes commands and whose stdout acknowledges each. A rule change
// or a /proc read then costs a write and a read on an open channel, not a
// new session: on a loaded host sshd's fork, exec and channel setup took
// seconds per session, and a partition that lands seconds late is a
// different partition.
//
// Each command runs in a subshell with its stdin redirected (from
// /dev/null or a here-document carrying its input), so it cannot eat the
// commands after it; its output and then a line "ack-<nonce> <seq> <rc>"
// follow on stdout. A command that misses its deadline takes the shell
// with it: the session is closed and the next command opens a new one, so
// a stuck command never delays the ones after it.
//
// The mutex serializes commands; the reader goroutine owns stdout and ends
// with the session.
type control struct {
	host *Host

	mu    sync.Mutex
	sess  *ssh.Session
	stdin io.WriteCloser
	lines chan string // stdout lines, bounded; closed when the session ends
	nonce string
	seq   int
}

// controlLines bounds the stdout lines buffered between the reader and
// the command waiting for its ack (a reply longer than this waits for the
// command to read it).
const controlLines = 256

// open starts the shell; the caller holds mu.
func (c *control) open(ctx context.Context) error {
	s, err := c.host.client.NewSession()
	if err != nil {
		return fmt.Errorf("host %s: control shell: %w", c.host.Name, err)
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
	s.Stderr = io.Discard
	if err := s.Start("exec sh"); err != nil {
		s.Close()
		return fmt.Errorf("host %s: control shell: %w", c.host.Name, err)
	}
	lines := make(chan string, controlLines)
	go func() {
		defer close(lines)
		r := bufio.NewReader(out)
		for {
			l, err := r.ReadString('\n')
			if l != "" {
				lines <- l
			}
			if err != nil {
				_ = s.Wait()
				return
			}
		}
	}()
	c.sess, c.stdin, c.lines, c.nonce, c.seq = s, in, lines, newID()+newID(), 0
	if _, err := c.exchange(ctx, "true", ""); err != nil {
		c.drop()
		return err
	}
	return nil
}

// drop ends the shell (and whatever it was running); the caller holds mu.
func (c *control) drop() {
	if c.sess != nil {
		c.sess.Close()
		// The reader ends when the session's stdout does, which a host
		// gone from the network (its namespace deleted, its cable pulled)
		// delays until the SSH client is closed: drain in the background
		// rather than wait here, so a Close is never stuck behind it.
		go func(lines <-chan string) {
			for range lines {
			}
		}(c.lines)
	}
	c.sess, c.stdin, c.lines = nil, nil, nil
}

// do runs cmd with input as its stdin and returns its combined output; a
// non-zero exit status is an error carrying the output.
func (c *control) do(ctx context.Context, cmd, input string) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess == nil {
		if err := c.open(ctx); err != nil {
			return nil, err
		}
	}
	out, err := c.exchange(ctx, cmd, input)
	if err != nil {
		if _, ok := err.(exitError); !ok {
			c.drop()
		}
		return out, fmt.Errorf("host %s: %s: %w", c.host.Name, firstLine(cmd), err)
	}
	return out, nil
}

// exitError is a command's non-zero exit status with its output.
type exitError struct {
	rc  int
	out string
}

func (e exitError) Error() string {
	return fmt.Sprintf("exit status %d: %s", e.rc, strings.TrimSpace(e.out))
}

// exchange writes one command and reads up to its ack; the caller holds
// mu. An error other than exitError leaves the shell unusable.
func (c *control) exchange(ctx context.Context, cmd, input string) ([]byte, error) {
	c.seq++
	ack := fmt.Sprintf("ack-%s %d ", c.nonce, c.seq)
	var b strings.Builder
	b.WriteString("(\n" + cmd + "\n) 2>&1 ")
	if input == "" {
		b.WriteString("</dev/null\n")
	} else {
		eof := "CHAINRAFT_EOF_" + c.nonce
		b.WriteString("<<'" + eof + "'\n" + input)
		if !strings.HasSuffix(input, "\n") {
			b.WriteString("\n")
		}
		b.WriteString(eof + "\n")
	}
	// The leading newline puts the ack on a line of its own even after
	// output without a final one; the reader removes it.
	fmt.Fprintf(&b, "printf '\\n%s%%d\\n' $?\n", ack)
	// The writer gets the pipe, not c: a command that misses its deadline
	// drops the shell (c.stdin = nil) while the write may still run.
	written, stdin := make(chan error, 1), c.stdin
	go func() {
		_, err := io.WriteString(stdin, b.String())
		written <- err
	}()
	var out strings.Builder
	for {
		select {
		case err := <-written:
			if err != nil {
				return nil, err
			}
			written = nil
		case l, ok := <-c.lines:
			if !ok {
				return []byte(out.String()), fmt.Errorf("control shell ended")
			}
			rest, isAck := strings.CutPrefix(l, ack)
			if !isAck {
				out.WriteString(l)
				continue
			}
			text := strings.TrimSuffix(out.String(), "\n")
			rc, err := strconv.Atoi(strings.TrimSpace(rest))
			if err != nil {
				return []byte(text), fmt.Errorf("bad ack %q", l)
			}
			if rc != 0 {
				return []byte(text), exitError{rc: rc, out: text}
			}
			return []byte(text), nil
		case <-ctx.Done():
			return []byte(out.String()), ctx.Err()
		}
	}
}

// close ends the shell.
func (c *control) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.drop()
}

// Do runs a short shell command on h through its control shell, with
// input (which may be empty) as its stdin, and returns its combined
// output; ctx is its deadline. Long transfers and processes use sessions
// of their own (Run, Install, Fetch, Start).
func (h *Host) Do(ctx context.Context, cmd, input string) ([]byte, error) {
	return h.ctl.do(ctx, cmd, input)
}
