package chain

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/internal/relay"
)

// muter relays connections to ZooKeeper and, once muted, silences every
// connection it holds and every one it accepts until unmuted; a connection
// silenced stays silent. That is a server that accepts a reconnect and
// never answers its handshake: go-zookeeper then waits ten receive timeouts
// before it tries again.
type muter struct {
	zk string

	mu       sync.Mutex
	muted    bool
	held     []*muteConn
	accepted chan struct{} // a connection was accepted while muted
}

type muteConn struct {
	net.Conn
	mu     sync.Mutex
	silent bool
}

func (c *muteConn) isSilent() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.silent
}

// Read drops what the server sends while the connection is silent.
func (c *muteConn) Read(b []byte) (int, error) {
	for {
		n, err := c.Conn.Read(b)
		if err != nil || !c.isSilent() {
			return n, err
		}
	}
}

// Write drops what the client sends while the connection is silent.
func (c *muteConn) Write(b []byte) (int, error) {
	if c.isSilent() {
		return len(b), nil
	}
	return c.Conn.Write(b)
}

func (m *muter) next(net.Conn) (net.Conn, error) {
	up, err := net.DialTimeout("tcp", m.zk, 2*time.Second)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	c := &muteConn{Conn: up, silent: m.muted}
	m.held = append(m.held, c)
	if m.muted {
		select {
		case m.accepted <- struct{}{}:
		default:
		}
	}
	return c, nil
}

func (m *muter) mute(on bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.muted = on
	if !on {
		return
	}
	for _, c := range m.held {
		c.mu.Lock()
		c.silent = true
		c.mu.Unlock()
	}
}

// A Conns whose ZooKeeper session is wedged in a reconnect handshake must
// not keep its stale configurations for the minute go-zookeeper would wait:
// it dials afresh. Without that, the harness's clients routed by an old
// epoch for 30 s after a ZooKeeper kill ("wrong epoch") and a nemesis run
// failed its end-of-run availability check.
func TestConnsRedialWedgedZooKeeper(t *testing.T) {
	addrs := startZK(t)
	admin := connectZK(t, addrs)
	cfg := Config{Chain: 0, Epoch: 1, Members: []Member{{ID: 1, Addr: "127.0.0.1:1"}}}
	_, err := admin.Create(ChainPath(0), cfg.Encode(), zk.FlagPersistent, zk.WorldACL(zk.PermAll))
	require.NoError(t, err)

	m := &muter{zk: addrs[0], accepted: make(chan struct{}, 1)}
	rl, err := relay.New(m.next)
	require.NoError(t, err)
	t.Cleanup(rl.Close)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A 3 s session: go-zookeeper notices the silence after 2 s and then
	// waits up to 20 s for a handshake answer.
	conns, err := Dial(ctx, ClientOptions{ZK: []string{rl.Addr()}, Chains: 1, SessionTimeout: 3 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { conns.Close() })
	require.Eventually(t, func() bool { c, _ := conns.Config(0); return c.Epoch == 1 }, 5*time.Second, 50*time.Millisecond)

	m.mute(true)
	select {
	case <-m.accepted: // the session is in its reconnect handshake
	case <-time.After(15 * time.Second):
		t.Fatal("the client did not reconnect to the silent server")
	}
	m.mute(false)
	cfg.Epoch = 2
	_, err = admin.Set(ChainPath(0), cfg.Encode(), -1)
	require.NoError(t, err)
	require.Eventually(t, func() bool { c, _ := conns.Config(0); return c.Epoch == 2 }, 12*time.Second, 100*time.Millisecond,
		"the Conns kept epoch 1 behind a wedged ZooKeeper session")
}
