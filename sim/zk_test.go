package sim

import (
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/stretchr/testify/require"
)

func fired(t *testing.T, ch <-chan zk.Event) zk.Event {
	t.Helper()
	select {
	case ev := <-ch:
		return ev
	default:
		t.Fatal("the watch did not fire")
		return zk.Event{}
	}
}

func notFired(t *testing.T, ch <-chan zk.Event) {
	t.Helper()
	select {
	case ev := <-ch:
		t.Fatalf("the watch fired: %+v", ev)
	default:
	}
}

// A session cut from the server expires after its timeout: its ephemeral
// znodes go and the watches on them fire; a connected one never expires.
func TestZKSessionExpiry(t *testing.T) {
	w := newWorld(1)
	s := newZKServer(w)
	a, b := s.connect(time.Second), s.connect(time.Second)
	_, err := a.Create("/nodes", nil, zk.FlagPersistent, nil)
	require.NoError(t, err)
	_, err = a.Create("/nodes/1", []byte("x"), zk.FlagEphemeral, nil)
	require.NoError(t, err)
	_, st, dataW, err := b.GetW("/nodes/1")
	require.NoError(t, err)
	require.Equal(t, a.SessionID(), st.EphemeralOwner)
	_, _, kidsW, err := b.ChildrenW("/nodes")
	require.NoError(t, err)

	a.setCut(true)
	_, _, err = a.Get("/nodes/1")
	require.ErrorIs(t, err, zk.ErrConnectionClosed)
	w.runUntil(int64(900*time.Millisecond), nil)
	notFired(t, dataW)
	w.runUntil(int64(1100*time.Millisecond), nil)
	require.Equal(t, zk.EventNodeDeleted, fired(t, dataW).Type)
	require.Equal(t, zk.EventNodeChildrenChanged, fired(t, kidsW).Type)
	a.setCut(false)
	_, _, err = a.Get("/nodes")
	require.ErrorIs(t, err, zk.ErrSessionExpired)

	w.runUntil(int64(time.Minute), nil)
	_, _, err = b.Get("/nodes")
	require.NoError(t, err, "a connected session is heard and lives on")
}

// Sequential znodes number up per parent; an existence watch fires on
// creation; data watches are one-shot.
func TestZKSequentialAndWatches(t *testing.T) {
	w := newWorld(1)
	s := newZKServer(w)
	c := s.connect(time.Second)
	_, err := c.Create("/m", nil, 0, nil)
	require.NoError(t, err)
	p1, err := c.Create("/m/n_", nil, zk.FlagEphemeral|zk.FlagSequence, nil)
	require.NoError(t, err)
	p2, err := c.Create("/m/n_", nil, zk.FlagEphemeral|zk.FlagSequence, nil)
	require.NoError(t, err)
	require.Equal(t, "/m/n_0000000000", p1)
	require.Equal(t, "/m/n_0000000001", p2)
	_, err = c.Create(p1+"/x", nil, 0, nil)
	require.ErrorIs(t, err, zk.ErrNoChildrenForEphemerals)

	ok, _, existW, err := c.ExistsW("/cfg")
	require.NoError(t, err)
	require.False(t, ok)
	_, err = c.Create("/cfg", []byte("1"), 0, nil)
	require.NoError(t, err)
	require.Equal(t, zk.EventNodeCreated, fired(t, existW).Type)

	_, _, dataW, err := c.GetW("/cfg")
	require.NoError(t, err)
	_, err = c.Set("/cfg", []byte("2"), 0)
	require.NoError(t, err)
	require.Equal(t, zk.EventNodeDataChanged, fired(t, dataW).Type)
	_, err = c.Set("/cfg", []byte("3"), 1)
	require.NoError(t, err)
	_, ok = <-dataW
	require.False(t, ok, "a watch fires once, then its channel is closed")
	_, err = c.Set("/cfg", []byte("4"), 1)
	require.ErrorIs(t, err, zk.ErrBadVersion)
}

// Multi applies every operation or none: the master's write fenced by its
// election znode fails, and changes nothing, once that znode is gone.
func TestZKMultiFenced(t *testing.T) {
	w := newWorld(1)
	s := newZKServer(w)
	master, other := s.connect(time.Second), s.connect(time.Second)
	_, err := master.Create("/chains", nil, 0, nil)
	require.NoError(t, err)
	_, err = master.Create("/chains/0", []byte("epoch 1"), 0, nil)
	require.NoError(t, err)
	el, err := master.Create("/el", nil, zk.FlagEphemeral, nil)
	require.NoError(t, err)
	_, _, dataW, err := other.GetW("/chains/0")
	require.NoError(t, err)

	_, err = master.Multi(&zk.CheckVersionRequest{Path: el, Version: 0}, &zk.SetDataRequest{Path: "/chains/0", Data: []byte("epoch 2"), Version: 0})
	require.NoError(t, err)
	require.Equal(t, zk.EventNodeDataChanged, fired(t, dataW).Type)

	require.NoError(t, other.Delete(el, -1)) // the master's election znode is gone
	_, _, dataW, err = other.GetW("/chains/0")
	require.NoError(t, err)
	res, err := master.Multi(&zk.CheckVersionRequest{Path: el, Version: 0}, &zk.SetDataRequest{Path: "/chains/0", Data: []byte("epoch 3"), Version: 1})
	require.ErrorIs(t, err, zk.ErrNoNode)
	require.ErrorIs(t, res[0].Error, zk.ErrNoNode)
	b, st, err := other.Get("/chains/0")
	require.NoError(t, err)
	require.Equal(t, "epoch 2", string(b))
	require.Equal(t, int32(1), st.Version)
	notFired(t, dataW)
}

// Close deletes the session's ephemerals at once.
func TestZKClose(t *testing.T) {
	w := newWorld(1)
	s := newZKServer(w)
	a, b := s.connect(time.Second), s.connect(time.Second)
	_, err := a.Create("/e", nil, zk.FlagEphemeral, nil)
	require.NoError(t, err)
	a.Close()
	ok, _, err := b.Exists("/e")
	require.NoError(t, err)
	require.False(t, ok)
	_, err = a.Create("/f", nil, 0, nil)
	require.ErrorIs(t, err, zk.ErrClosing)
}

// An expired session's watches end with EventNotWatching, and its
// connection, back in touch, gets a new session, as go-zookeeper's does.
func TestZKExpiryEndsWatchesAndRenews(t *testing.T) {
	w := newWorld(1)
	s := newZKServer(w)
	a, b := s.connect(time.Second), s.connect(time.Second)
	notified := 0
	a.notify = func() { notified++ }
	_, err := b.Create("/cfg", nil, 0, nil)
	require.NoError(t, err)
	_, _, dataW, err := a.GetW("/cfg")
	require.NoError(t, err)
	_, _, existW, err := a.ExistsW("/missing")
	require.NoError(t, err)
	old := a.SessionID()

	a.setCut(true)
	w.runUntil(int64(1100*time.Millisecond), nil)
	require.Equal(t, zk.EventNotWatching, fired(t, dataW).Type)
	require.Equal(t, zk.EventNotWatching, fired(t, existW).Type)
	require.Positive(t, notified)
	_, err = b.Create("/missing", nil, 0, nil)
	require.NoError(t, err, "no watch of the expired session is left to fire")

	a.setCut(false)
	w.runUntil(int64(1200*time.Millisecond), nil)
	require.NotEqual(t, old, a.SessionID())
	_, err = a.Create("/e", nil, zk.FlagEphemeral, nil)
	require.NoError(t, err)
	var states []zk.State
	for len(a.Events) > 0 {
		states = append(states, (<-a.Events).State)
	}
	require.Equal(t, []zk.State{zk.StateDisconnected, zk.StateExpired, zk.StateHasSession}, states[len(states)-3:])
}
