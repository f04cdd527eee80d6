package chain

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// inProcessNode runs one node with Run in this process (so the race
// detector sees the node, coordinator, transport and client together).
type inProcessNode struct {
	cancel context.CancelFunc
	done   chan error
}

func startInProcess(t *testing.T, zk []string, id uint64, addr, dir string, p Placement) *inProcessNode {
	ctx, cancel := context.WithCancel(context.Background())
	n := &inProcessNode{cancel: cancel, done: make(chan error, 1)}
	go func() {
		n.done <- Run(ctx, RunConfig{ID: id, Listen: addr, DataDir: dir, ZK: zk, SessionTimeout: 2 * time.Second,
			Placement: p, Logf: func(f string, a ...any) { t.Logf("node %d: "+f, append([]any{id}, a...)...) }})
	}()
	return n
}

func (n *inProcessNode) stop(t *testing.T) {
	n.cancel()
	select {
	case err := <-n.done:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("node did not stop")
	}
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

func TestNodesInProcessStopAndRejoin(t *testing.T) {
	zk := startZK(t)
	p := Placement{Chains: 3, Replicas: 3, Nodes: 3}
	dir := t.TempDir()
	addrs := make([]string, 4)
	nodes := make([]*inProcessNode, 4)
	for id := 1; id <= 3; id++ {
		addrs[id] = freeAddr(t)
		nodes[id] = startInProcess(t, zk, uint64(id), addrs[id], filepath.Join(dir, fmt.Sprint(id)), p)
	}
	defer func() {
		for _, n := range nodes[1:] {
			n.stop(t)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, err := Dial(ctx, ClientOptions{ZK: zk, Chains: p.Chains, RequestTimeout: 5 * time.Second})
	require.NoError(t, err)
	defer r.Close()
	full := func() bool {
		for i := 0; i < p.Chains; i++ {
			cfg, _ := r.Config(i)
			if len(cfg.Members) != 3 || cfg.Joining != nil {
				return false
			}
		}
		return true
	}
	require.Eventually(t, full, 30*time.Second, 20*time.Millisecond)
	cl := r.NewClient()
	for i := 0; i < 30; i++ {
		require.NoError(t, cl.Append(ctx, fmt.Sprintf("k%d", i%5), fmt.Sprintf("<%d>", i)))
	}

	// A graceful stop deletes the node's znode at once: the master splices
	// it out of every chain, which keeps serving.
	nodes[2].stop(t)
	require.Eventually(t, func() bool {
		for i := 0; i < p.Chains; i++ {
			cfg, _ := r.Config(i)
			if cfg.index(2) >= 0 {
				return false
			}
		}
		return true
	}, 20*time.Second, 20*time.Millisecond)
	for i := 30; i < 60; i++ {
		require.NoError(t, cl.Append(ctx, fmt.Sprintf("k%d", i%5), fmt.Sprintf("<%d>", i)))
	}
	// Restarted, it rejoins every chain as the tail, from snapshots; then
	// the master moves nodes to the tail one at a time until every chain
	// is back in its rotated order.
	nodes[2] = startInProcess(t, zk, 2, addrs[2], filepath.Join(dir, "2"), p)
	require.Eventually(t, func() bool {
		if !full() {
			return false
		}
		for i := 0; i < p.Chains; i++ {
			cfg, _ := r.Config(i)
			for j, id := range p.Members(i) {
				if cfg.Members[j].ID != id {
					return false
				}
			}
		}
		return true
	}, 30*time.Second, 20*time.Millisecond, "the chains' rotated order comes back")
	for k := 0; k < 5; k++ {
		want := ""
		for i := k; i < 60; i += 5 {
			want += fmt.Sprintf("<%d>", i)
		}
		v, found, err := cl.Get(ctx, fmt.Sprintf("k%d", k))
		require.NoError(t, err)
		require.True(t, found)
		require.Equal(t, want, v)
	}
}
