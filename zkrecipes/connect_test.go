package zkrecipes

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

// A ConnectOnce connection whose link drops stays down, where a
// ConnectContext one dials again (and, doing so, re-sets its watches).
func TestConnectOnceNeverReconnects(t *testing.T) {
	addrs := zkAddrs(t)
	var mu sync.Mutex
	var accepted int
	var conns []net.Conn
	rl, err := relay.New(func(net.Conn) (net.Conn, error) {
		c, err := net.Dial("tcp", addrs[0])
		mu.Lock()
		defer mu.Unlock()
		accepted++
		if err == nil {
			conns = append(conns, c)
		}
		return c, err
	})
	require.NoError(t, err)
	t.Cleanup(rl.Close)
	cut := func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
		conns = nil
	}
	dials := func() int {
		mu.Lock()
		defer mu.Unlock()
		return accepted
	}

	for _, once := range []bool{false, true} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		connectFn := ConnectContext
		if once {
			connectFn = ConnectOnce
		}
		c, _, err := connectFn(ctx, []string{rl.Addr()}, 4*time.Second)
		cancel()
		require.NoError(t, err)
		_, _, _, err = c.ExistsW("/")
		require.NoError(t, err, "a watch to re-set")
		before := dials()
		cut()
		if !once {
			require.Eventually(t, func() bool { return c.State() == zk.StateHasSession && dials() > before },
				10*time.Second, 20*time.Millisecond, "ConnectContext's connection dials again")
		} else {
			time.Sleep(3 * time.Second)
			require.Equal(t, before, dials(), "ConnectOnce's connection never dials again")
			require.NotEqual(t, zk.StateHasSession, c.State())
		}
		c.Close()
	}
}
