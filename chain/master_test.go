package chain

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/internal/proc"
	"github.com/chainraft/chainraft/internal/zkserver"
	"github.com/chainraft/chainraft/zkrecipes"
)

func TestMain(m *testing.M) { os.Exit(proc.RunTests(m)) }

func startZK(t *testing.T) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ens, err := zkserver.Start(ctx, zkserver.Config{Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { ens.Close() })
	return ens.Addrs()
}

func connectZK(t *testing.T, addrs []string) *zk.Conn {
	t.Helper()
	conn, _, err := zkrecipes.Connect(addrs, 4*time.Second)
	require.NoError(t, err)
	t.Cleanup(conn.Close)
	for _, p := range []string{RootPath, NodesPath, ChainsPath, MasterPath} {
		if _, err := conn.Create(p, nil, zk.FlagPersistent, zk.WorldACL(zk.PermAll)); err != nil {
			require.ErrorIs(t, err, zk.ErrNodeExists)
		}
	}
	return conn
}

func readConfig(t *testing.T, conn *zk.Conn, i int) Config {
	t.Helper()
	b, _, err := conn.Get(ChainPath(i))
	require.NoError(t, err)
	cfg, err := DecodeConfig(b)
	require.NoError(t, err)
	return cfg
}

func register(t *testing.T, conn *zk.Conn, id uint64, addr string) {
	t.Helper()
	_, err := conn.Create(NodePath(id), LiveNode{Addr: addr}.encode(), zk.FlagEphemeral, zk.WorldACL(zk.PermAll))
	require.NoError(t, err)
}

// TestDeposedMasterCannotWrite: a master whose election znode is gone (its
// session expired while it was paused, say) still runs its loop, but its
// Multi fails on the CheckVersion of that znode, so the configuration is
// only ever written by the current master.
func TestDeposedMasterCannotWrite(t *testing.T) {
	addrs := startZK(t)
	c1, c2 := connectZK(t, addrs), connectZK(t, addrs)
	p := Placement{Chains: 1, Replicas: 2, Nodes: 2}
	register(t, c2, 1, "a1")
	register(t, c2, 2, "a2")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	el1 := zkrecipes.NewElection(c1, MasterPath, []byte("1"))
	require.NoError(t, el1.Campaign(ctx))
	m1 := newMaster(c1, Paths{}, 1, p, el1.Path(), t.Logf)
	m1.reconcile(time.Now())
	cfg := readConfig(t, c1, 0)
	require.Equal(t, uint64(1), cfg.Epoch)
	require.Equal(t, []Member{{1, "a1"}, {2, "a2"}}, cfg.Members)

	// m1 is deposed without noticing: its election znode goes away.
	el2 := zkrecipes.NewElection(c2, MasterPath, []byte("2"))
	won := make(chan error, 1)
	go func() { won <- el2.Campaign(ctx) }()
	require.NoError(t, c2.Delete(el1.Path(), -1))
	require.NoError(t, <-won)

	// Node 2 dies. The deposed master's write fails; the new master's lands.
	require.NoError(t, c2.Delete(NodePath(2), -1))
	m1.reconcile(time.Now())
	require.Equal(t, uint64(1), readConfig(t, c1, 0).Epoch, "a deposed master wrote the config")
	m2 := newMaster(c2, Paths{}, 2, p, el2.Path(), t.Logf)
	m2.reconcile(time.Now())
	cfg = readConfig(t, c2, 0)
	require.Equal(t, uint64(2), cfg.Epoch)
	require.Equal(t, []Member{{1, "a1"}}, cfg.Members)
}
