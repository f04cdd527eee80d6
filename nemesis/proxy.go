package nemesis

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Direction names one or both halves of a proxied link. Up is the direction
// of the connection's initiator (the dialer) towards the proxy's target; Down
// is the target's replies back to the dialer.
type Direction uint8

// The directions of a link.
const (
	Up   Direction = 1 << iota // dialer → target
	Down                       // target → dialer
	Both = Up | Down
)

func (d Direction) String() string {
	switch d {
	case 0:
		return "none"
	case Up:
		return "up"
	case Down:
		return "down"
	case Both:
		return "both"
	}
	return fmt.Sprintf("Direction(%d)", uint8(d))
}

// proxyDialTimeout bounds the proxy's own connect to its target once the
// link lets the connection through.
const proxyDialTimeout = 5 * time.Second

// proxyChunk is the most one pump reads before forwarding: the amount a
// blackholed direction holds inside the proxy (the rest stays in the kernel's
// socket buffers and, once those fill, pushes back on the sender, as a closed
// TCP window does).
const proxyChunk = 32 << 10

// ErrProxyClosed is returned by operations on a closed Proxy.
var ErrProxyClosed = errors.New("nemesis: proxy closed")

// Proxy is a userspace TCP proxy for one link: it listens on a loopback port
// and forwards every accepted connection to one target address. A blackholed
// direction stalls without a word: nothing is read from its source and
// nothing is written to its destination, connections stay open and no reset
// is sent, so each end sees what it would see across a real partition — a
// peer that has gone silent. On heal, what was held is delivered in order.
//
// Goroutines: the accept loop, and per connection one goroutine that dials
// the target and pumps Down, plus one that pumps Up. Close stops them all and
// waits for them.
type Proxy struct {
	ln     net.Listener
	target string

	ctx    context.Context // cancelled by Close: stops dials, gates and delays
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	holes   Direction     // blackholed directions
	delay   time.Duration // added to each chunk, both directions
	changed chan struct{} // closed and replaced on every change of holes or delay
	conns   map[net.Conn]struct{}
	closed  bool
}

// NewProxy listens on listen ("127.0.0.1:0" picks a free port) and forwards
// to target.
func NewProxy(listen, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("nemesis: proxy listen %s: %w", listen, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		ln:      ln,
		target:  target,
		ctx:     ctx,
		cancel:  cancel,
		changed: make(chan struct{}),
		conns:   map[net.Conn]struct{}{},
	}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr is the address to dial instead of the target.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target is the address the proxy forwards to.
func (p *Proxy) Target() string { return p.target }

// Blackhole stops forwarding in dir, in addition to any direction already
// blackholed.
func (p *Proxy) Blackhole(dir Direction) { p.update(func() { p.holes |= dir & Both }) }

// SetBlackhole makes exactly dir blackholed (0 heals both directions).
func (p *Proxy) SetBlackhole(dir Direction) { p.update(func() { p.holes = dir & Both }) }

// Blackholed reports the directions currently blackholed.
func (p *Proxy) Blackholed() Direction {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.holes
}

// Heal resumes forwarding in both directions and delivers what was held. It
// leaves the delay alone.
func (p *Proxy) Heal() { p.SetBlackhole(0) }

// SetDelay delays every chunk by d after it was read, in both directions
// (0 turns the delay off).
func (p *Proxy) SetDelay(d time.Duration) {
	if d < 0 {
		d = 0
	}
	p.update(func() { p.delay = d })
}

// Delay reports the current per-chunk delay.
func (p *Proxy) Delay() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.delay
}

func (p *Proxy) update(f func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f()
	close(p.changed)
	p.changed = make(chan struct{})
}

// Close stops listening, closes every connection and waits for every
// goroutine of the proxy to return. It is safe to call more than once.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.wg.Wait()
		return nil
	}
	p.closed = true
	conns := make([]net.Conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	p.cancel()
	err := p.ln.Close()
	for _, c := range conns {
		_ = c.Close()
	}
	p.wg.Wait()
	return err
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if p.ctx.Err() != nil {
				return
			}
			// A transient accept error (out of descriptors): back off
			// briefly rather than spin, and stop if closed meanwhile.
			select {
			case <-p.ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		if !p.track(c) {
			_ = c.Close()
			return
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

// waitOpen blocks while dir is blackholed. It returns the delay in force and
// false when the proxy closed meanwhile.
func (p *Proxy) waitOpen(dir Direction) (time.Duration, bool) {
	for {
		p.mu.Lock()
		holes, delay, ch := p.holes, p.delay, p.changed
		p.mu.Unlock()
		if holes&dir == 0 {
			return delay, true
		}
		select {
		case <-ch:
		case <-p.ctx.Done():
			return 0, false
		}
	}
}

// serve owns one accepted connection: it holds the connection until the
// link lets a handshake through (a SYN or its answer lost in either
// direction means no connection in real TCP), dials the target, then pumps.
func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	defer p.untrack(client)
	defer client.Close()
	if _, ok := p.waitOpen(Both); !ok {
		return
	}
	d := net.Dialer{Timeout: proxyDialTimeout}
	server, err := d.DialContext(p.ctx, "tcp", p.target)
	if err != nil {
		// The target refused or is gone: tell the dialer as the kernel
		// would, with a reset.
		abort(client)
		return
	}
	if !p.track(server) {
		_ = server.Close()
		return
	}
	defer p.untrack(server)
	defer server.Close()

	upDone := make(chan struct{})
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer close(upDone)
		p.pump(Up, client, server)
	}()
	p.pump(Down, server, client)
	<-upDone
}

// pump copies src to dst in dir until src ends, an error, or Close. A chunk
// read while dir is blackholed waits in the proxy and is written on heal;
// an end of stream or error waits too, so a peer's FIN or RST is as lost as
// its data while the link is cut.
func (p *Proxy) pump(dir Direction, src, dst net.Conn) {
	buf := make([]byte, proxyChunk)
	for {
		if _, ok := p.waitOpen(dir); !ok {
			return
		}
		n, rerr := src.Read(buf)
		read := time.Now()
		delay, ok := p.waitOpen(dir)
		if !ok {
			return
		}
		if delay > 0 && n > 0 {
			if wait := time.Until(read.Add(delay)); wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-t.C:
				case <-p.ctx.Done():
					t.Stop()
					return
				}
			}
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				abort(src)
				return
			}
		}
		if rerr != nil {
			if errors.Is(rerr, io.EOF) {
				if tc, ok := dst.(*net.TCPConn); ok {
					_ = tc.CloseWrite()
					return
				}
			}
			abort(dst)
			return
		}
	}
}

// abort closes c with a reset instead of a FIN.
func abort(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}
