package zkrecipes

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"
)

// ConnectTimeout bounds Connect's wait for a session.
const ConnectTimeout = 15 * time.Second

// ErrNoSession: no session was established by the deadline.
var ErrNoSession = errors.New("zkrecipes: no ZooKeeper session")

type quietLogger struct{}

func (quietLogger) Printf(string, ...any) {}

// Connect opens a ZooKeeper connection and waits, at most ConnectTimeout,
// until it has a session: zk.Connect returns before that, and a request sent
// earlier would merely queue. go-zookeeper's reconnect chatter is silenced.
//
// The returned channel is go-zookeeper's own: it holds 6 events and drops
// the rest when nobody reads, so a caller that needs every session state
// change must drain it continuously. The recipes in this package do not need
// it (they learn about session loss through their own watches).
func Connect(addrs []string, sessionTimeout time.Duration) (*zk.Conn, <-chan zk.Event, error) {
	ctx, cancel := context.WithTimeout(context.Background(), ConnectTimeout)
	defer cancel()
	return ConnectContext(ctx, addrs, sessionTimeout)
}

// ConnectContext is Connect with the caller's deadline.
func ConnectContext(ctx context.Context, addrs []string, sessionTimeout time.Duration) (*zk.Conn, <-chan zk.Event, error) {
	return dialZK(ctx, addrs, sessionTimeout, net.DialTimeout)
}

// ConnectOnce is ConnectContext for a connection that never reconnects
// once it has had its session: after the link drops it stays disconnected
// (its requests fail), and the caller dials a new one. It is for a reader
// whose watches are only hints (chain.Conns): go-zookeeper, reconnecting,
// re-sets a connection's watches while its receive loop already writes
// the last zxid they are sent with, unsynchronized (go-zookeeper/zk#35,
// never merged), which the race detector reports; a connection that never
// reconnects never does that.
func ConnectOnce(ctx context.Context, addrs []string, sessionTimeout time.Duration) (*zk.Conn, <-chan zk.Event, error) {
	var had atomic.Bool
	dial := func(network, address string, timeout time.Duration) (net.Conn, error) {
		if had.Load() {
			return nil, errConnectedOnce
		}
		return net.DialTimeout(network, address, timeout)
	}
	conn, events, err := dialZK(ctx, addrs, sessionTimeout, dial)
	had.Store(true)
	return conn, events, err
}

var errConnectedOnce = errors.New("zkrecipes: this connection does not reconnect")

func dialZK(ctx context.Context, addrs []string, sessionTimeout time.Duration, dial zk.Dialer) (*zk.Conn, <-chan zk.Event, error) {
	conn, events, err := zk.Connect(addrs, sessionTimeout, zk.WithLogger(quietLogger{}), zk.WithLogInfo(false), zk.WithDialer(dial))
	if err != nil {
		return nil, nil, fmt.Errorf("zkrecipes: connect %v: %w", addrs, err)
	}
	for {
		select {
		case ev := <-events:
			switch ev.State {
			case zk.StateHasSession:
				return conn, events, nil
			case zk.StateAuthFailed:
				conn.Close()
				return nil, nil, fmt.Errorf("%w: %v: authentication failed", ErrNoSession, addrs)
			}
		case <-ctx.Done():
			conn.Close()
			return nil, nil, fmt.Errorf("%w with %v: %w", ErrNoSession, addrs, ctx.Err())
		}
	}
}

// SplitAddrs splits a connect string "host:port,host:port".
func SplitAddrs(s string) []string {
	var out []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}
