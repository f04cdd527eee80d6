package etcd

import (
	"bufio"
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
)

// A front is the peer address one member advertises when the run's links
// go through the nemesis's proxies.
//
// Why it exists: an etcd member advertises one peer URL, and every other
// member dials that same URL, while a partition cuts links per ordered pair
// (n1→n2 apart from n3→n2), one proxy each. So a member's advertised URL is
// a front in the harness that, for each connection it accepts, finds which
// member dialed it and forwards the connection to that pair's proxy
// (proccluster's Dial(from, to)), which forwards it to the member's real
// peer port. The dialer is found by the connection itself: on loopback both
// ends of a TCP connection are this machine's sockets, so /proc/net/tcp
// names the inode of the dialing socket and /proc/<pid>/fd names the
// process holding it — one of the members' processes, whose pids the
// cluster knows. This needs no change to etcd and no knowledge of its peer
// protocol (a header such as X-Server-From is on raft messages, not on
// every request a member's connection carries).
//
// A connection whose dialer cannot be found (it closed at once, or a
// process that is no member) is closed: the member dials again.
type front struct {
	to   int
	ln   net.Listener
	dial func(from int) string // the proxy address for from→to
	// owner maps a pid to the node id it runs; 0 for none.
	owner func(pid int) int

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// frontDialTimeout bounds the front's dial of the proxy, a loopback
// listener that accepts at once (a partition holds the connection after
// accepting it, as the proxy's semantics want).
const frontDialTimeout = 5 * time.Second

func newFront(to int, dial func(from int) string, owner func(pid int) int) (*front, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f := &front{to: to, ln: ln, dial: dial, owner: owner, conns: map[net.Conn]struct{}{}}
	f.wg.Add(1)
	go f.accept()
	return f, nil
}

// Addr is the address the member advertises.
func (f *front) Addr() string { return f.ln.Addr().String() }

func (f *front) accept() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		if !f.track(c) {
			c.Close()
			return
		}
		f.wg.Add(1)
		go f.serve(c)
	}
}

func (f *front) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *front) untrack(cs ...net.Conn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range cs {
		delete(f.conns, c)
		c.Close()
	}
}

// serve finds the dialer of c, connects to its proxy and splices the two.
func (f *front) serve(c net.Conn) {
	defer f.wg.Done()
	from, err := dialerNode(c, f.owner)
	if err != nil || from == 0 {
		f.untrack(c)
		return
	}
	up, err := net.DialTimeout("tcp", f.dial(from), frontDialTimeout)
	if err != nil {
		f.untrack(c)
		return
	}
	if !f.track(up) {
		f.untrack(c, up)
		return
	}
	splice(c, up)
	f.untrack(c, up)
}

// Close stops accepting, closes every connection and waits for the
// front's goroutines.
func (f *front) Close() {
	f.mu.Lock()
	f.closed = true
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.ln.Close()
	f.wg.Wait()
}

// splice copies both ways until both directions end; an end of stream is
// passed on as a half-close, and an error closes both.
func splice(a, b net.Conn) {
	done := make(chan struct{})
	go func() {
		pump(b, a)
		close(done)
	}()
	pump(a, b)
	<-done
}

func pump(dst, src net.Conn) {
	_, err := io.Copy(dst, src)
	if cw, ok := dst.(interface{ CloseWrite() error }); ok && err == nil {
		_ = cw.CloseWrite()
		return
	}
	dst.Close()
	src.Close()
}

// dialerNode finds the node whose process holds the other end of the
// loopback connection c (see front).
func dialerNode(c net.Conn, owner func(pid int) int) (int, error) {
	remote, ok1 := c.RemoteAddr().(*net.TCPAddr)
	local, ok2 := c.LocalAddr().(*net.TCPAddr)
	if !ok1 || !ok2 {
		return 0, errors.New("not TCP")
	}
	inode, err := socketInode(remote, local)
	if err != nil {
		return 0, err
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	want := "socket:[" + inode + "]"
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		id := owner(pid)
		if id == 0 {
			continue
		}
		fds, err := os.ReadDir(filepath.Join("/proc", e.Name(), "fd"))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if l, err := os.Readlink(filepath.Join("/proc", e.Name(), "fd", fd.Name())); err == nil && l == want {
				return id, nil
			}
		}
	}
	return 0, fmt.Errorf("no member holds socket %s", inode)
}

// socketInode finds, in /proc/net/tcp, the inode of the socket bound at
// local with peer remote (the dialer's side of a connection we accepted:
// its local address is our remote one).
func socketInode(dialer, listener *net.TCPAddr) (string, error) {
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return "", err
	}
	defer f.Close()
	l, r := procAddr(dialer), procAddr(listener)
	s := bufio.NewScanner(f)
	for s.Scan() {
		fs := strings.Fields(s.Text())
		if len(fs) >= 10 && fs[1] == l && fs[2] == r {
			return fs[9], nil
		}
	}
	return "", fmt.Errorf("no socket %s→%s in /proc/net/tcp", dialer, listener)
}

// procAddr is a as /proc/net/tcp prints it: the IPv4 address as a
// little-endian hex word, the port big-endian.
func procAddr(a *net.TCPAddr) string {
	ip := a.IP.To4()
	if ip == nil {
		return ""
	}
	return fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], a.Port)
}
