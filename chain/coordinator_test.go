package chain

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/internal/zkserver"
)

func TestCheckSessionTimeout(t *testing.T) {
	require.NoError(t, CheckSessionTimeout(2*time.Second))
	require.NoError(t, CheckSessionTimeout(MaxSessionTimeout))
	require.ErrorIs(t, CheckSessionTimeout(MaxSessionTimeout+time.Millisecond), ErrSessionTimeout)
	require.ErrorIs(t, CheckSessionTimeout(0), ErrSessionTimeout)
	require.ErrorIs(t, CheckSessionTimeout(-time.Second), ErrSessionTimeout)

	err := Run(context.Background(), RunConfig{ID: 1, ZK: []string{"127.0.0.1:1"}, SessionTimeout: time.Minute,
		Placement: Placement{Chains: 1, Replicas: 1, Nodes: 1}})
	require.ErrorIs(t, err, ErrSessionTimeout, "refused at configuration time, before anything starts")
}

func TestZKLogKeepsTheGrant(t *testing.T) {
	l := &zkLog{got: make(chan struct{})}
	l.Printf("connected to %s", "127.0.0.1:2181")
	require.Zero(t, l.granted())
	l.Printf(zkAuthenticatedFormat, int64(0x1234), int32(6000))
	require.Equal(t, 6*time.Second, l.granted())
	<-l.got
}

// ZooKeeper grants at most its maxSessionTimeout (here 120 ticks of 50 ms =
// 6 s) without an error: the lease must follow the grant, not the 20 s
// asked, or a paused node would serve for 13 s on a session that expired
// after 6.
func TestLeaseFollowsGrantedSessionTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ZooKeeper")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ens, err := zkserver.Start(ctx, zkserver.Config{Dir: t.TempDir(), TickTime: 50 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { ens.Close() })

	n, err := StartNode(NodeConfig{ID: 1, DataDir: t.TempDir(), Chains: 1})
	require.NoError(t, err)
	cctx, ccancel := context.WithCancel(ctx)
	coordErr := make(chan error, 1)
	go func() {
		coordErr <- RunCoordinator(cctx, CoordinatorConfig{ZK: ens.Addrs(), SessionTimeout: 20 * time.Second, ID: 1,
			Addr: "127.0.0.1:1", Placement: Placement{Chains: 1, Replicas: 1, Nodes: 1}, Logf: t.Logf}, n)
	}()
	defer func() {
		ccancel()
		require.NoError(t, <-coordErr)
		require.NoError(t, n.Stop())
	}()
	require.Eventually(t, n.serving, 30*time.Second, 10*time.Millisecond)
	left := time.Duration(n.leaseUntil.Load()) - time.Since(n.start)
	require.LessOrEqual(t, left, 4*time.Second, "lease of %v outlives the granted 6 s session's 2/3", left)
	require.Greater(t, left, time.Duration(0))
}
