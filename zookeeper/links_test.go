package zookeeper

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/nemesis"
)

// A front carries its port's traffic through the pair's one proxy to the
// peer's real quorum or election port, and a cut of the pair stalls it.
func TestLinksRouteBothPortsThroughThePairsProxy(t *testing.T) {
	nw := nemesis.NewNetwork()
	defer nw.Close()
	l, err := newLinks(nw, 2)
	require.NoError(t, err)
	defer l.Close()

	quorum, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer quorum.Close()
	election, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer election.Close()
	q, e := l.peerAddrs(1, 2, quorum.Addr().String(), election.Addr().String())
	require.NotEqual(t, q, e)
	require.Len(t, nw.Links(), 2, "one proxy per ordered pair, n1→n2 and n2→n1")

	roundTrip := func(front string, backend net.Listener) (net.Conn, net.Conn) {
		c, err := net.DialTimeout("tcp", front, time.Second)
		require.NoError(t, err)
		_, err = c.Write([]byte("hi"))
		require.NoError(t, err)
		b, err := backend.Accept()
		require.NoError(t, err)
		require.NoError(t, b.SetReadDeadline(time.Now().Add(5*time.Second)))
		buf := make([]byte, 2)
		_, err = b.Read(buf)
		require.NoError(t, err)
		require.Equal(t, "hi", string(buf))
		return c, b
	}
	c1, b1 := roundTrip(q, quorum)
	defer c1.Close()
	defer b1.Close()
	c2, b2 := roundTrip(e, election)
	defer c2.Close()
	defer b2.Close()

	nw.Cut([]nemesis.Cut{{From: "n1", To: "n2"}})
	_, err = c1.Write([]byte("xx"))
	require.NoError(t, err)
	require.NoError(t, b1.SetReadDeadline(time.Now().Add(300*time.Millisecond)))
	_, err = b1.Read(make([]byte, 2))
	require.Error(t, err, "a cut n1→n2 stalls the quorum link")
	nw.HealAll()
	require.NoError(t, b1.SetReadDeadline(time.Now().Add(5*time.Second)))
	buf := make([]byte, 2)
	_, err = b1.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "xx", string(buf), "held bytes arrive after the heal")
}

// The host provider keeps the order given and reports a full round.
func TestOrderedHostProvider(t *testing.T) {
	h := &ordered{}
	require.NoError(t, h.Init([]string{"a", "b", "c"}))
	var got []string
	var retry []bool
	for range 4 {
		s, r := h.Next()
		got, retry = append(got, s), append(retry, r)
	}
	require.Equal(t, []string{"a", "b", "c", "a"}, got)
	require.Equal(t, []bool{false, false, false, true}, retry)
	h.Connected() // on "a"
	s, r := h.Next()
	require.Equal(t, "a", s, "a dropped session tries its server again first")
	require.False(t, r)
}
