// Package relay is a loopback TCP relay: it accepts connections and
// splices each to the connection a function picks for it. The stores whose
// peers cannot be pointed at one proxy per ordered link (etcd advertises
// one peer URL; ZooKeeper's quorum and election ports are per server) put
// a relay in front and route each accepted connection to the nemesis's
// proxy for its link.
package relay

import (
	"io"
	"net"
	"sync"
)

// Relay accepts connections and splices each to the connection Next
// returns for it. Goroutines: the accept loop, and per connection the one
// serving it and one pump; Close ends them all by closing the listener and
// every connection, and waits.
type Relay struct {
	ln   net.Listener
	next func(net.Conn) (net.Conn, error)

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// New listens on a loopback port and relays every connection accepted
// there to next's; a connection next refuses (an error) is closed, and
// its dialer dials again.
func New(next func(net.Conn) (net.Conn, error)) (*Relay, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &Relay{ln: ln, next: next, conns: map[net.Conn]struct{}{}}
	r.wg.Add(1)
	go r.accept()
	return r, nil
}

// Addr is the relay's listening address.
func (r *Relay) Addr() string { return r.ln.Addr().String() }

func (r *Relay) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		if !r.track(c) {
			c.Close()
			return
		}
		r.wg.Add(1)
		go r.serve(c)
	}
}

func (r *Relay) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

func (r *Relay) untrack(cs ...net.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range cs {
		delete(r.conns, c)
		c.Close()
	}
}

func (r *Relay) serve(c net.Conn) {
	defer r.wg.Done()
	up, err := r.next(c)
	if err != nil {
		r.untrack(c)
		return
	}
	if !r.track(up) {
		r.untrack(c, up)
		return
	}
	done := make(chan struct{})
	go func() {
		pump(up, c)
		close(done)
	}()
	pump(c, up)
	<-done
	r.untrack(c, up)
}

// Close stops accepting, closes every connection and waits for the
// relay's goroutines. It is idempotent.
func (r *Relay) Close() {
	r.mu.Lock()
	r.closed = true
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.ln.Close()
	r.wg.Wait()
}

// pump copies src to dst; an end of stream becomes a half-close, an error
// closes both.
func pump(dst, src net.Conn) {
	_, err := io.Copy(dst, src)
	if cw, ok := dst.(interface{ CloseWrite() error }); ok && err == nil {
		_ = cw.CloseWrite()
		return
	}
	dst.Close()
	src.Close()
}
