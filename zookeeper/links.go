package zookeeper

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/chainraft/chainraft/internal/relay"
	"github.com/chainraft/chainraft/nemesis"
)

// Server-to-server links through the nemesis's proxies.
//
// A ZooKeeper server dials two ports of each peer: quorum (a follower to
// its leader) and election. The nemesis cuts per ordered pair of nodes,
// one proxy per pair (Link{n1, n2}), so both of a pair's ports must cross
// that one proxy. Each server's zoo.cfg names, for each peer, two fronts
// of its own (zkserver.Config.PeerAddrs); a front dials the pair's proxy
// and writes one byte saying which port it stands for; the proxy forwards
// to the peer's mux, which reads the byte and dials the peer's real
// quorum or election port. The proxy sees one TCP stream like any other,
// so its semantics hold: a cut stalls the byte and everything after it, a
// connection accepted during a cut is held undialed until the heal.
//
//	server i ──▶ front(i→j, quorum|election) ──▶ proxy n_i→n_j ──▶ mux j ──▶ server j
type links struct {
	net     *nemesis.Network
	fronts  []*relay.Relay
	muxes   map[int]*relay.Relay
	mu      sync.Mutex
	targets map[int][2]string // server id → its real quorum, election
	front   map[[3]int]string // (from, to, kind) → front address
}

// Tags a front writes before the stream.
const (
	tagQuorum   = 'q'
	tagElection = 'e'
)

// preambleWait bounds the mux's wait for a front's tag. The tag is the
// first byte on the stream, so it comes at once unless a cut holds it; a
// wait this long is a connection a real network would have timed out.
const preambleWait = 30 * time.Second

// relayDialTimeout bounds a relay's dial of the next hop (loopback).
const relayDialTimeout = 5 * time.Second

// newLinks makes the proxies, muxes and fronts for servers 1..n on net.
func newLinks(nw *nemesis.Network, n int) (*links, error) {
	l := &links{net: nw, muxes: map[int]*relay.Relay{}, targets: map[int][2]string{}, front: map[[3]int]string{}}
	for j := 1; j <= n; j++ {
		to := j
		m, err := relay.New(func(c net.Conn) (net.Conn, error) { return l.muxDial(to, c) })
		if err != nil {
			l.Close()
			return nil, err
		}
		l.muxes[j] = m
	}
	for i := 1; i <= n; i++ {
		for j := 1; j <= n; j++ {
			if i == j {
				continue
			}
			p, err := nw.Add(nemesis.Link{From: nemesis.NodeEndpoint(i), To: nemesis.NodeEndpoint(j)}, l.muxes[j].Addr())
			if err != nil {
				l.Close()
				return nil, err
			}
			for _, tag := range []byte{tagQuorum, tagElection} {
				proxy, tag := p.Addr(), tag
				f, err := relay.New(func(net.Conn) (net.Conn, error) { return frontDial(proxy, tag) })
				if err != nil {
					l.Close()
					return nil, err
				}
				l.fronts = append(l.fronts, f)
				l.front[[3]int{i, j, int(tag)}] = f.Addr()
			}
		}
	}
	return l, nil
}

// peerAddrs is zkserver.Config.PeerAddrs: server from reaches server to
// through its fronts; to's real ports are what to's mux dials.
func (l *links) peerAddrs(from, to int, quorum, election string) (string, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.targets[to] = [2]string{quorum, election}
	return l.front[[3]int{from, to, tagQuorum}], l.front[[3]int{from, to, tagElection}]
}

func frontDial(proxy string, tag byte) (net.Conn, error) {
	up, err := net.DialTimeout("tcp", proxy, relayDialTimeout)
	if err != nil {
		return nil, err
	}
	if err := up.SetWriteDeadline(time.Now().Add(relayDialTimeout)); err == nil {
		_, err = up.Write([]byte{tag})
		if err == nil {
			err = up.SetWriteDeadline(time.Time{})
		}
	}
	if err != nil {
		up.Close()
		return nil, err
	}
	return up, nil
}

func (l *links) muxDial(to int, c net.Conn) (net.Conn, error) {
	var tag [1]byte
	if err := c.SetReadDeadline(time.Now().Add(preambleWait)); err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(c, tag[:]); err != nil {
		return nil, err
	}
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		return nil, err
	}
	l.mu.Lock()
	t, ok := l.targets[to]
	l.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("zookeeper: no ports known for server %d", to)
	}
	switch tag[0] {
	case tagQuorum:
		return net.DialTimeout("tcp", t[0], relayDialTimeout)
	case tagElection:
		return net.DialTimeout("tcp", t[1], relayDialTimeout)
	}
	return nil, errors.New("zookeeper: bad link tag")
}

// Close closes every front and mux and waits for their goroutines (the
// proxies are the network's, closed by its owner).
func (l *links) Close() {
	for _, f := range l.fronts {
		f.Close()
	}
	for _, m := range l.muxes {
		m.Close()
	}
}
