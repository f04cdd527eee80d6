package nemesis

import (
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// stall is how long a test waits to be sure a blackholed read does not
// complete: long against loopback latency (tens of µs), short for the suite.
const stall = 150 * time.Millisecond

// server is a loopback TCP server whose accepted connections the test takes
// from conns. Its accept goroutine is stopped by the test's cleanup.
type server struct {
	ln    net.Listener
	conns chan net.Conn
	wg    sync.WaitGroup
	mu    sync.Mutex
	all   []net.Conn
}

func newServer(t testing.TB) *server {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &server{ln: ln, conns: make(chan net.Conn, 16)}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.all = append(s.all, c)
			s.mu.Unlock()
			select {
			case s.conns <- c:
			default:
				_ = c.Close()
			}
		}
	}()
	t.Cleanup(s.close)
	return s
}

func (s *server) addr() string { return s.ln.Addr().String() }

func (s *server) close() {
	_ = s.ln.Close()
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.all {
		_ = c.Close()
	}
}

func (s *server) accept(t testing.TB) net.Conn {
	t.Helper()
	select {
	case c := <-s.conns:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("server accepted no connection")
		return nil
	}
}

// echo serves every connection of s by echoing; its goroutines end when the
// connections close.
func (s *server) echo(t testing.TB) {
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case c := <-s.conns:
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, _ = io.Copy(c, c)
				}()
			case <-done:
				return
			}
		}
	}()
	t.Cleanup(func() { close(done); s.close(); wg.Wait() })
}

func dial(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func newProxy(t testing.TB, target string) *Proxy {
	p, err := NewProxy("127.0.0.1:0", target)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// readN reads exactly n bytes within d.
func readN(t testing.TB, c net.Conn, n int, d time.Duration) []byte {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(d)))
	b := make([]byte, n)
	_, err := io.ReadFull(c, b)
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Time{}))
	return b
}

// requireStalled asserts that a read on c times out: no data, no EOF, no reset.
func requireStalled(t testing.TB, c net.Conn) {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(stall)))
	b := make([]byte, 1)
	n, err := c.Read(b)
	require.Equal(t, 0, n, "read %q through a blackholed link", b[:n])
	require.Error(t, err)
	require.True(t, errors.Is(err, os.ErrDeadlineExceeded), "want a read timeout, got %v", err)
	require.NoError(t, c.SetReadDeadline(time.Time{}))
}

func write(t testing.TB, c net.Conn, s string) {
	t.Helper()
	require.NoError(t, c.SetWriteDeadline(time.Now().Add(5*time.Second)))
	_, err := c.Write([]byte(s))
	require.NoError(t, err)
}

func TestProxyForwardsEcho(t *testing.T) {
	s := newServer(t)
	s.echo(t)
	p := newProxy(t, s.addr())
	c := dial(t, p.Addr())
	for _, msg := range []string{"hello", "chainraft", "x"} {
		write(t, c, msg)
		require.Equal(t, msg, string(readN(t, c, len(msg), 5*time.Second)))
	}
}

func TestProxyBlackholeBothStallsThenHealDelivers(t *testing.T) {
	s := newServer(t)
	s.echo(t)
	p := newProxy(t, s.addr())
	c := dial(t, p.Addr())
	write(t, c, "ping")
	require.Equal(t, "ping", string(readN(t, c, 4, 5*time.Second)))

	p.Blackhole(Both)
	require.Equal(t, Both, p.Blackholed())
	write(t, c, "held") // the write itself succeeds: it is in the socket buffers
	requireStalled(t, c)

	p.Heal()
	require.Equal(t, Direction(0), p.Blackholed())
	require.Equal(t, "held", string(readN(t, c, 4, 5*time.Second)))
	write(t, c, "after")
	require.Equal(t, "after", string(readN(t, c, 5, 5*time.Second)))
}

func TestProxyBlackholeOneDirection(t *testing.T) {
	s := newServer(t)
	p := newProxy(t, s.addr())
	c := dial(t, p.Addr())
	write(t, c, "hi")
	sc := s.accept(t)
	t.Cleanup(func() { _ = sc.Close() })
	require.Equal(t, "hi", string(readN(t, sc, 2, 5*time.Second)))

	// Up cut: the client's bytes are held, the server's still arrive.
	p.Blackhole(Up)
	write(t, c, "up1")
	requireStalled(t, sc)
	write(t, sc, "down1")
	require.Equal(t, "down1", string(readN(t, c, 5, 5*time.Second)))
	p.Heal()
	require.Equal(t, "up1", string(readN(t, sc, 3, 5*time.Second)))

	// Down cut: the reverse.
	p.Blackhole(Down)
	write(t, sc, "down2")
	requireStalled(t, c)
	write(t, c, "up2")
	require.Equal(t, "up2", string(readN(t, sc, 3, 5*time.Second)))
	p.Heal()
	require.Equal(t, "down2", string(readN(t, c, 5, 5*time.Second)))
}

func TestProxyNewConnectionWhileBlackholedWaitsForHeal(t *testing.T) {
	s := newServer(t)
	p := newProxy(t, s.addr())
	p.Blackhole(Down) // a lost SYN-ACK is as fatal to a handshake as a lost SYN
	c := dial(t, p.Addr())
	write(t, c, "early")
	select {
	case <-s.conns:
		t.Fatal("the target saw a connection through a blackholed link")
	case <-time.After(stall):
	}
	requireStalled(t, c)
	p.Heal()
	sc := s.accept(t)
	t.Cleanup(func() { _ = sc.Close() })
	require.Equal(t, "early", string(readN(t, sc, 5, 5*time.Second)))
}

func TestProxyTargetDownResetsClient(t *testing.T) {
	// Reserve two ports, then free them: the proxy takes the first, and
	// nothing listens on the second. (Letting the proxy pick :0 after
	// freeing the target's port can hand it that very port.)
	ln1, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	listen, dead := ln1.Addr().String(), ln2.Addr().String()
	require.NoError(t, ln1.Close())
	require.NoError(t, ln2.Close())
	p, err := NewProxy(listen, dead)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	// The proxy accepts, fails to reach the target and resets: the reset
	// can beat the dialer's own connect completion, so it shows up either
	// as a failed dial or as a failed read, never as silence.
	c, err := net.DialTimeout("tcp", p.Addr(), 5*time.Second)
	if err == nil {
		t.Cleanup(func() { _ = c.Close() })
		require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
		_, err = c.Read(make([]byte, 1))
	}
	require.Error(t, err)
	require.False(t, errors.Is(err, os.ErrDeadlineExceeded), "want a reset or EOF, got a timeout")
}

func TestProxyHalfCloseAndEOF(t *testing.T) {
	s := newServer(t)
	p := newProxy(t, s.addr())
	c := dial(t, p.Addr())
	write(t, c, "bye")
	require.NoError(t, c.(*net.TCPConn).CloseWrite())
	sc := s.accept(t)
	t.Cleanup(func() { _ = sc.Close() })
	require.NoError(t, sc.SetReadDeadline(time.Now().Add(5*time.Second)))
	b, err := io.ReadAll(sc) // ends with the forwarded FIN
	require.NoError(t, err)
	require.Equal(t, "bye", string(b))
	write(t, sc, "ok") // the other half still flows
	require.Equal(t, "ok", string(readN(t, c, 2, 5*time.Second)))
}

func TestProxyDelay(t *testing.T) {
	s := newServer(t)
	s.echo(t)
	p := newProxy(t, s.addr())
	c := dial(t, p.Addr())
	const d = 40 * time.Millisecond
	p.SetDelay(d)
	start := time.Now()
	write(t, c, "slow")
	require.Equal(t, "slow", string(readN(t, c, 4, 5*time.Second)))
	require.GreaterOrEqual(t, time.Since(start), 2*d, "a round trip crosses the delay twice")
	p.SetDelay(0)
	require.Equal(t, time.Duration(0), p.Delay())
}

func TestProxyCloseStopsEverything(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var sconns []net.Conn
		wg.Add(1)
		go func() { // a server that accepts and never reads
			defer wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				sconns = append(sconns, c)
				mu.Unlock()
			}
		}()
		p, err := NewProxy("127.0.0.1:0", ln.Addr().String())
		require.NoError(t, err)
		var clients []net.Conn
		for i := 0; i < 4; i++ {
			c, err := net.DialTimeout("tcp", p.Addr(), 5*time.Second)
			require.NoError(t, err)
			clients = append(clients, c)
			_, err = c.Write([]byte("data"))
			require.NoError(t, err)
			if i == 1 {
				p.Blackhole(Both) // later connections wait for a heal that never comes
			}
		}
		p.SetDelay(time.Hour) // and the earlier ones' next chunk would wait an hour
		_, err = clients[0].Write([]byte("more"))
		require.NoError(t, err)

		require.NoError(t, p.Close())
		require.NoError(t, p.Close(), "Close is idempotent")
		for _, c := range clients {
			_ = c.Close()
		}
		_ = ln.Close()
		wg.Wait()
		mu.Lock()
		for _, c := range sconns {
			_ = c.Close()
		}
		mu.Unlock()
	}()
	requireGoroutinesBack(t, before)
}

// requireGoroutinesBack waits until no more goroutines run than before. It
// polls in the test's own goroutine: require.Eventually would count its own.
func requireGoroutinesBack(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		buf = buf[:runtime.Stack(buf, true)]
		t.Fatalf("goroutines: %d before, %d after:\n%s", before, n, buf)
	}
}

// BenchmarkProxyRoundTrip measures a 64-byte request/echo over loopback,
// directly and through one proxy: the difference is the hop's cost.
func BenchmarkProxyRoundTrip(b *testing.B) {
	for _, mode := range []string{"direct", "proxy"} {
		b.Run(mode, func(b *testing.B) {
			s := newServer(b)
			s.echo(b)
			addr := s.addr()
			if mode == "proxy" {
				addr = newProxy(b, addr).Addr()
			}
			c := dial(b, addr)
			msg := make([]byte, 64)
			buf := make([]byte, 64)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := c.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
