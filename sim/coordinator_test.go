package sim

import (
	"errors"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/chain"
)

// racingConn creates chain 0's configuration right after the
// coordinator's first GetW of it found nothing: the master writing the
// first configuration between the coordinator's GetW and its ExistsW, as
// it does when a node registers just before the chains are created.
type racingConn struct {
	*zkSession
	data  []byte
	raced bool
}

func (r *racingConn) GetW(path string) ([]byte, *zk.Stat, <-chan zk.Event, error) {
	b, st, ch, err := r.zkSession.GetW(path)
	if path == chain.ChainPath(0) && !r.raced && errors.Is(err, zk.ErrNoNode) {
		r.raced = true
		_, cerr := r.s.create(path, r.data, 0, 0, true)
		if cerr != nil {
			return nil, nil, nil, cerr
		}
	}
	return b, st, ch, err
}

// configNode is a CoordNode that keeps the configurations it is handed.
type configNode struct{ cfgs []chain.Config }

func (n *configNode) SetSession(bool)                      {}
func (n *configNode) SetConfig(c chain.Config)             { n.cfgs = append(n.cfgs, c) }
func (n *configNode) ExtendLease(time.Time, time.Duration) {}

// TestCoordinatorReadsAConfigCreatedDuringItsWatch: a chain configuration
// created between the coordinator's read (no znode) and its exists watch
// reaches the node at once, not at the configuration's next change. The
// configuration is the one the master (this coordinator, elected alone)
// would write, so nothing changes it afterwards: before the fix the node
// never learnt it, and on namespace hosts a chain sat without its head for
// good.
func TestCoordinatorReadsAConfigCreatedDuringItsWatch(t *testing.T) {
	w := newWorld(1)
	srv := newZKServer(w)
	sess := srv.connect(4 * time.Second)
	want := chain.Config{Chain: 0, Epoch: 1, Members: []chain.Member{{ID: 1, Addr: "n1"}}}
	conn := &racingConn{zkSession: sess, data: want.Encode()}
	node := &configNode{}
	coord := chain.NewCoordinator(chain.CoordinatorConfig{SessionTimeout: 4 * time.Second, ID: 1, Addr: "n1",
		Placement: chain.Placement{Chains: 1, Replicas: 1, Nodes: 1}}, conn, node)
	for len(sess.Events) > 0 {
		coord.Session((<-sess.Events).State)
	}
	for range 20 {
		w.now += int64(10 * time.Millisecond)
		coord.Step(time.Unix(0, w.now))
	}
	require.True(t, conn.raced, "the configuration was created during the watch")
	require.NotEmpty(t, node.cfgs, "the node never got the chain's configuration")
	require.Equal(t, want.Epoch, node.cfgs[len(node.cfgs)-1].Epoch)
	require.Equal(t, want.Members, node.cfgs[len(node.cfgs)-1].Members)
}

// losingConn loses the first watch set on chain 0's configuration, as
// go-zookeeper does when re-setting a connection's watches after a
// reconnect fails (go-zookeeper/zk#83): the channel never fires.
type losingConn struct {
	*zkSession
	lost bool
}

func (l *losingConn) GetW(path string) ([]byte, *zk.Stat, <-chan zk.Event, error) {
	b, st, ch, err := l.zkSession.GetW(path)
	if path == chain.ChainPath(0) && !l.lost && err == nil {
		l.lost = true
		ch = make(chan zk.Event)
	}
	return b, st, ch, err
}

// TestCoordinatorRearmsWatchesOnReconnect: a configuration watch lost
// across a reconnect costs the node nothing once the session is back: the
// coordinator sets its watches afresh, and the next configuration reaches
// the node.
func TestCoordinatorRearmsWatchesOnReconnect(t *testing.T) {
	w := newWorld(1)
	srv := newZKServer(w)
	sess := srv.connect(4 * time.Second)
	first := chain.Config{Chain: 0, Epoch: 1, Members: []chain.Member{{ID: 1, Addr: "n1"}}}
	for _, p := range []string{chain.Paths{}.RootOf(), chain.Paths{}.Chains()} {
		_, err := srv.create(p, nil, 0, 0, true)
		require.NoError(t, err)
	}
	_, err := srv.create(chain.ChainPath(0), first.Encode(), 0, 0, true)
	require.NoError(t, err)
	conn := &losingConn{zkSession: sess}
	node := &configNode{}
	coord := chain.NewCoordinator(chain.CoordinatorConfig{SessionTimeout: 4 * time.Second, ID: 1, Addr: "n1",
		Placement: chain.Placement{Chains: 1, Replicas: 1, Nodes: 1}}, conn, node)
	steps := func() {
		for len(sess.Events) > 0 {
			coord.Session((<-sess.Events).State)
		}
		for range 20 {
			w.now += int64(10 * time.Millisecond)
			coord.Step(time.Unix(0, w.now))
		}
	}
	latest := func() uint64 {
		if len(node.cfgs) == 0 {
			return 0
		}
		return node.cfgs[len(node.cfgs)-1].Epoch
	}
	steps()
	require.True(t, conn.lost)
	require.Equal(t, uint64(1), latest())

	second := first
	second.Epoch = 2
	_, err = srv.set(chain.ChainPath(0), second.Encode(), -1, true)
	require.NoError(t, err)
	steps()
	require.Equal(t, uint64(1), latest(), "the lost watch kept the change from the node")

	coord.Session(zk.StateHasSession) // reconnected
	third := first
	third.Epoch = 3
	steps()
	_, err = srv.set(chain.ChainPath(0), third.Encode(), -1, true)
	require.NoError(t, err)
	steps()
	require.Equal(t, uint64(3), latest(), "a change after the reconnect reached the node")
}
