package chain

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	pb "github.com/chainraft/chainraft/chain/chainpb"
)

// loneNode runs a Node (no ZooKeeper) as the only member of chain 0, with a
// session and a long lease.
func loneNode(t *testing.T, bug string) *Node {
	n, err := StartNode(NodeConfig{ID: 1, DataDir: t.TempDir(), Chains: 1, TickInterval: time.Hour, Bug: bug})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, n.Stop()) })
	n.SetSession(true)
	n.ExtendLease(time.Now(), time.Hour)
	n.SetConfig(Config{Chain: 0, Epoch: 1, Members: []Member{{ID: 1, Addr: "n1"}}})
	require.Eventually(t, func() bool {
		st, err := n.Status(context.Background())
		return err == nil && st[0].Epoch == 1
	}, 5*time.Second, time.Millisecond)
	return n
}

// blockLoop parks the node's loop until the returned func is called, as a
// SIGSTOP would between admitting a request and serving it.
func blockLoop(t *testing.T, n *Node) func() {
	entered, release := make(chan struct{}), make(chan struct{})
	n.inspectc <- func(*Core) { close(entered); <-release }
	<-entered
	var once sync.Once
	f := func() { once.Do(func() { close(release) }) }
	t.Cleanup(f) // a failed test must not leave the loop parked (Stop waits for it)
	return f
}

// queue calls do() in the background and waits until the request is queued
// for the (blocked) loop: it passed do()'s admission check.
func queue(t *testing.T, n *Node, r request) <-chan Reply {
	out := make(chan Reply, 1)
	before := len(n.reqc)
	go func() { out <- n.do(context.Background(), r) }()
	require.Eventually(t, func() bool { return len(n.reqc) > before }, 5*time.Second, time.Millisecond)
	return out
}

func expireLease(n *Node) { n.leaseUntil.Store(int64(time.Since(n.start))) }

// A read admitted while the lease held, but reached by the loop only after
// it ran out (the process was paused meanwhile; the coordinator has not yet
// seen the session expire), is refused: the master may have spliced this
// tail out and the new tail committed writes it never saw.
func TestReadQueuedAcrossLeaseExpiryIsRefused(t *testing.T) {
	n := loneNode(t, "")
	ctx := context.Background()
	w := n.do(ctx, request{write: true, chain: 0, epoch: 1, update: &pb.Update{Client: 7, ClientSeq: 1, Op: pb.Op_OP_PUT, Key: "k", Value: "v1"}})
	require.Equal(t, pb.Status_STATUS_OK, w.Status, w.Err)

	release := blockLoop(t, n)
	read := queue(t, n, request{chain: 0, epoch: 1, key: "k"})
	write := queue(t, n, request{write: true, chain: 0, epoch: 1, update: &pb.Update{Client: 7, ClientSeq: 2, Op: pb.Op_OP_PUT, Key: "k", Value: "v2"}})
	expireLease(n)
	require.True(t, n.session.Load(), "the session flag has not flipped: only the lease knows")
	release()

	r := <-read
	require.Equal(t, pb.Status_STATUS_UNAVAILABLE, r.Status, "stale read served after the lease ran out: %+v", r)
	r = <-write
	require.Equal(t, pb.Status_STATUS_UNAVAILABLE, r.Status, "write proposed after the lease ran out: %+v", r)
	st, err := n.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(1), st[0].LastSeq, "the refused write was not proposed (a definite refusal)")

	// With the lease back, the node serves again.
	n.ExtendLease(time.Now(), time.Hour)
	r = n.do(ctx, request{chain: 0, epoch: 1, key: "k"})
	require.Equal(t, pb.Status_STATUS_OK, r.Status, r.Err)
	require.Equal(t, "v1", r.Value)
}

// The seeded stale-tail bug still serves such a read (the hook the
// harness's detection test relies on).
func TestStaleTailBugServesAfterLease(t *testing.T) {
	n := loneNode(t, BugStaleTail)
	release := blockLoop(t, n)
	read := queue(t, n, request{chain: 0, epoch: 1, key: "k"})
	expireLease(n)
	release()
	require.Equal(t, pb.Status_STATUS_OK, (<-read).Status)
}

// At a chain of one, a read may see a write that only this node holds: its
// reply waits until that write is on disk, or a crash could unsay it.
func TestLoneTailReadWaitsForItsOwnFsync(t *testing.T) {
	n, err := newNode(NodeConfig{ID: 1, DataDir: t.TempDir(), Chains: 1})
	require.NoError(t, err)
	t.Cleanup(func() { n.storage.Close() })
	// No loop: the test drives the loop's steps itself and plays persister.
	n.core.SetSession(true)
	n.session.Store(true)
	n.ExtendLease(time.Now(), time.Hour)
	n.core.SetConfig(Config{Chain: 0, Epoch: 1, Members: []Member{{ID: 1, Addr: "n1"}}})

	wc, rc := make(chan Reply, 1), make(chan Reply, 1)
	n.request(request{write: true, chain: 0, epoch: 1, update: &pb.Update{Client: 7, ClientSeq: 1, Op: pb.Op_OP_PUT, Key: "k", Value: "v"}, replyc: wc})
	n.request(request{chain: 0, epoch: 1, key: "k", replyc: rc})
	require.NoError(t, n.handleReady())
	require.Empty(t, rc, "read of a write not yet fsync'd answered before the fsync")
	require.Empty(t, wc)
	require.Len(t, n.persistc, 1)

	// A second read in a later Ready, while the first batch is still
	// unsaved, waits too.
	rc2 := make(chan Reply, 1)
	n.request(request{chain: 0, epoch: 1, key: "k", replyc: rc2})
	require.NoError(t, n.handleReady())
	require.Empty(t, rc2, "read answered while an earlier write is still unsaved")

	close(n.persistc)
	n.persister()
	for _, c := range []chan Reply{wc, rc, rc2} {
		require.Len(t, c, 1)
		r := <-c
		require.Equal(t, pb.Status_STATUS_OK, r.Status, r.Err)
	}
	require.Zero(t, n.pendingSaves.Load())

	// Nothing pending: a read is answered at once.
	n.persistc = make(chan *batchOut, 4)
	rc3 := make(chan Reply, 1)
	n.request(request{chain: 0, epoch: 1, key: "k", replyc: rc3})
	require.NoError(t, n.handleReady())
	require.Len(t, rc3, 1)
	require.Equal(t, "v", (<-rc3).Value)
}

// A node back from a lost session serves again only once the loop has
// applied the configurations the coordinator re-read before saying so: it
// must not serve, even for a moment, as the tail of a chain it was spliced
// out of while it had no session.
func TestRegainedSessionWaitsForQueuedConfigs(t *testing.T) {
	n := loneNode(t, "")
	require.True(t, n.serving())
	release := blockLoop(t, n)
	n.SetSession(false)
	require.False(t, n.serving(), "losing the session stops service at once")
	// Meanwhile the master moved the chain on without this node.
	n.SetConfig(Config{Chain: 0, Epoch: 2, Members: []Member{{ID: 2, Addr: "n2"}}})
	n.SetSession(true)
	require.False(t, n.serving(), "serving again before the newer configuration is applied")
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	r := n.do(ctx, request{chain: 0, epoch: 1, key: "k"})
	cancel()
	release()
	require.Equal(t, pb.Status_STATUS_UNAVAILABLE, r.Status, "read under the old epoch admitted: %+v", r)
	require.Eventually(t, n.serving, 5*time.Second, time.Millisecond)
	st, err := n.Status(context.Background())
	require.NoError(t, err)
	require.Equal(t, uint64(2), st[0].Epoch)
	require.False(t, st[0].Tail)
	r = n.do(context.Background(), request{chain: 0, epoch: 1, key: "k"})
	require.Equal(t, pb.Status_STATUS_WRONG_EPOCH, r.Status)
}
