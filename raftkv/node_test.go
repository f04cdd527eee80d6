package raftkv

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"

	"github.com/chainraft/chainraft/kv"
)

// inProcess runs Nodes with their gRPC servers in the test process, so the
// race detector sees the node loop, the transport and the client together.
type inProcess struct {
	t       *testing.T
	members []Member
	dirs    map[uint64]string
	nodes   map[uint64]*Node
	servers map[uint64]*grpc.Server
}

func startInProcess(t *testing.T, n int) *inProcess {
	c := &inProcess{t: t, dirs: map[uint64]string{}, nodes: map[uint64]*Node{}, servers: map[uint64]*grpc.Server{}}
	for i := 1; i <= n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := l.Addr().String()
		l.Close()
		c.members = append(c.members, Member{ID: uint64(i), Addr: addr})
		c.dirs[uint64(i)] = t.TempDir()
	}
	for _, m := range c.members {
		c.start(m.ID)
	}
	t.Cleanup(func() {
		for id := range c.nodes {
			c.stop(id)
		}
	})
	return c
}

func (c *inProcess) start(id uint64) {
	var addr string
	for _, m := range c.members {
		if m.ID == id {
			addr = m.Addr
		}
	}
	n, err := StartNode(NodeConfig{ID: id, Peers: c.members, DataDir: c.dirs[id], TickInterval: 20 * time.Millisecond})
	require.NoError(c.t, err)
	var lis net.Listener
	require.Eventually(c.t, func() bool {
		lis, err = net.Listen("tcp", addr)
		return err == nil
	}, 5*time.Second, 20*time.Millisecond, "listen on %s", addr)
	c.nodes[id] = n
	c.servers[id], _ = Serve(n, lis)
}

func (c *inProcess) stop(id uint64) {
	c.servers[id].Stop()
	require.NoError(c.t, c.nodes[id].Stop())
	delete(c.nodes, id)
	delete(c.servers, id)
}

func (c *inProcess) leader() uint64 {
	var lead uint64
	require.Eventually(c.t, func() bool {
		for id, n := range c.nodes {
			st, err := n.Status(context.Background(), true)
			if err == nil && st.Role == "StateLeader" {
				lead = id
				return true
			}
		}
		return false
	}, 10*time.Second, 20*time.Millisecond, "a leader is elected")
	return lead
}

func TestNodesOverGRPC(t *testing.T) {
	c := startInProcess(t, 3)
	conns, err := Dial(context.Background(), ClientOptions{Members: c.members, RequestTimeout: 5 * time.Second, AttemptTimeout: 500 * time.Millisecond})
	require.NoError(t, err)
	defer conns.Close()
	ctx := context.Background()

	var wg sync.WaitGroup
	var mu sync.Mutex
	acked, failed := map[string]bool{}, map[string]bool{}
	stop := make(chan struct{})
	for i := range 4 {
		cl := conns.NewClient()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				v := fmt.Sprintf("%d-%d;", i, n)
				err := cl.Append(ctx, "k", v)
				mu.Lock()
				if err == nil {
					acked[v] = true
				} else if kv.IsDefinite(err) {
					failed[v] = true
				}
				mu.Unlock()
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	old := c.leader()
	c.stop(old) // the leader goes away mid-workload
	time.Sleep(500 * time.Millisecond)
	c.start(old) // and comes back from its data directory
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()

	cl := conns.NewClient()
	v, found, err := cl.Get(ctx, "k")
	require.NoError(t, err)
	require.True(t, found)
	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, acked)
	for a := range acked {
		require.Equal(t, 1, strings.Count(v, a), "acknowledged append %q lost or applied twice", a)
	}
	for a := range failed {
		require.NotContains(t, v, a, "an append reported as certainly failed took effect")
	}
	// The restarted node converges on the leader's state.
	lead := c.leader()
	ls, err := c.nodes[lead].Status(ctx, true)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		st, err := c.nodes[old].Status(ctx, true)
		return err == nil && st.Applied >= ls.Commit
	}, 5*time.Second, 20*time.Millisecond)
	swapped, err := cl.CAS(ctx, "k", v, "x")
	require.NoError(t, err)
	require.True(t, swapped)
	// The digest, hashed off the loop, is there only when asked for, and
	// covers the data.
	plain, err := c.nodes[lead].Status(ctx, false)
	require.NoError(t, err)
	require.Empty(t, plain.Digest)
	after, err := c.nodes[lead].Status(ctx, true)
	require.NoError(t, err)
	require.NotEmpty(t, ls.Digest)
	require.NotEqual(t, ls.Digest, after.Digest, "the swap changed the data")
	require.Equal(t, kv.Digest(map[string]string{"k": "x"}), after.Digest)
}

// TestClientClassifiesHonestly: a write proposed by a leader that then
// cannot reach a quorum is indeterminate, and indeed commits once the quorum
// is back; a read that cannot be served is definite (it has no effect).
func TestClientClassifiesHonestly(t *testing.T) {
	c := startInProcess(t, 3)
	conns, err := Dial(context.Background(), ClientOptions{Members: c.members, AttemptTimeout: 300 * time.Millisecond})
	require.NoError(t, err)
	defer conns.Close()
	ctx := context.Background()
	cl := conns.NewClient()
	require.NoError(t, cl.Put(ctx, "k", "1"))

	lead := c.leader()
	var others []uint64
	for _, m := range c.members {
		if m.ID != lead {
			others = append(others, m.ID)
		}
	}
	for _, id := range others {
		c.stop(id)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Second)
	err = cl.Put(wctx, "k", "2")
	cancel()
	require.Error(t, err)
	require.False(t, kv.IsDefinite(err), "a proposed write without a quorum is indeterminate: %v", err)
	require.ErrorIs(t, err, ErrUnknown)

	rctx, cancel := context.WithTimeout(ctx, time.Second)
	_, _, err = cl.Get(rctx, "k")
	cancel()
	require.True(t, kv.IsDefinite(err), "a failed read had no effect: %v", err)

	// With one follower back, only the old leader has an up-to-date enough
	// log to win; its entry then commits.
	c.start(others[0])
	v, _, err := conns.NewClient().Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, "2", v, "the indeterminate write did take effect once a quorum was back")
}
