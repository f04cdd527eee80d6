package zkrecipes

import (
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/stretchr/testify/require"
)

func fireWithin(t *testing.T, ch <-chan zk.Event) zk.Event {
	t.Helper()
	require.NotNil(t, ch)
	select {
	case ev := <-ch:
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("the watch did not fire")
		return zk.Event{}
	}
}

// TestCandidacy: the steppable election hands leadership in sequence
// order, one waiter woken per resignation, and reports the loss of a
// leader's znode as ErrSessionLost, after which a new candidacy queues
// behind the others.
func TestCandidacy(t *testing.T) {
	addrs := zkAddrs(t)
	dir := testPath(t, "elect")
	c1, c2 := connect(t, addrs, 4*time.Second), connect(t, addrs, 4*time.Second)
	a, b := NewCandidacy(c1, dir, []byte("a")), NewCandidacy(c2, dir, []byte("b"))

	lead, err := a.Step()
	require.NoError(t, err)
	require.True(t, lead)
	lead, err = b.Step()
	require.NoError(t, err)
	require.False(t, lead)
	require.NotNil(t, b.Watch(), "a waiter watches its predecessor")
	lead, err = b.Step()
	require.NoError(t, err)
	require.False(t, lead, "nothing changed: still waiting")

	_, data, err := Leader(c2, dir)
	require.NoError(t, err)
	require.Equal(t, "a", string(data))

	require.NoError(t, a.Resign())
	fireWithin(t, b.Watch())
	lead, err = b.Step()
	require.NoError(t, err)
	require.True(t, lead)

	// b's znode is deleted behind its back: its guard reports the loss.
	require.NoError(t, c1.Delete(b.Path(), -1))
	fireWithin(t, b.Watch())
	lead, err = b.Step()
	require.ErrorIs(t, err, ErrSessionLost)
	require.False(t, lead)
	_, err = b.Step()
	require.ErrorIs(t, err, ErrSessionLost, "a spent candidacy stays spent")
	require.NoError(t, b.Resign())

	a2 := NewCandidacy(c1, dir, []byte("a2"))
	lead, err = a2.Step()
	require.NoError(t, err)
	require.True(t, lead)
	require.NoError(t, a2.Resign())
}
