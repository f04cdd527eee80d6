package etcd

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/chainraft/chainraft/internal/relay"
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
type front struct{ *relay.Relay }

// frontDialTimeout bounds the front's dial of the proxy, a loopback
// listener that accepts at once (a partition holds the connection after
// accepting it, as the proxy's semantics want).
const frontDialTimeout = 5 * time.Second

// newFront is a front whose connections go to dial(from), the proxy of the
// link from the dialer's node; owner maps a pid to the node id it runs (0
// for none).
func newFront(dial func(from int) string, owner func(pid int) int) (*front, error) {
	r, err := relay.New(func(c net.Conn) (net.Conn, error) {
		from, err := dialerNode(c, owner)
		if err != nil {
			return nil, err
		}
		return net.DialTimeout("tcp", dial(from), frontDialTimeout)
	})
	if err != nil {
		return nil, err
	}
	return &front{r}, nil
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
