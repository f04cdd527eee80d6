package zkrecipes

import (
	"context"
	"errors"
	"fmt"
	"strings"
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
	conn, events, err := zk.Connect(addrs, sessionTimeout, zk.WithLogger(quietLogger{}), zk.WithLogInfo(false))
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
