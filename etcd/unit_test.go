package etcd

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/kv"
)

// Only errors that prove a write had no effect are definite; a deadline,
// a timeout after the proposal or a broken connection stay unknown.
func TestClassify(t *testing.T) {
	for _, c := range []struct {
		err      error
		definite bool
	}{
		{rpctypes.ErrNoLeader, true},
		{fmt.Errorf("wrapped: %w", rpctypes.ErrTooManyRequests), true},
		{rpctypes.ErrRequestTooLarge, true},
		{status.Error(codes.Unavailable, `connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:1: connect: connection refused"`), true},
		{status.Error(codes.Unknown, "raft proposal dropped"), true},
		{rpctypes.ErrTimeout, false},
		{rpctypes.ErrTimeoutDueToLeaderFail, false},
		{rpctypes.ErrLeaderChanged, false},
		{rpctypes.ErrStopped, false},
		{status.Error(codes.Unavailable, "error reading from server: EOF"), false},
		{status.Error(codes.DeadlineExceeded, "context deadline exceeded"), false},
		{errors.New("anything else"), false},
	} {
		require.Equal(t, c.definite, kv.IsDefinite(classify(c.err)), "%v", c.err)
	}
	require.NoError(t, classify(nil))
}

// The front finds the process that dialed it through /proc and forwards
// the connection to that dialer's link.
func TestFrontFindsTheDialer(t *testing.T) {
	backend, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer backend.Close()
	var dialedFor atomic.Int64 // set on the front's goroutine
	f, err := newFront(func(from int) string { dialedFor.Store(int64(from)); return backend.Addr().String() },
		func(pid int) int {
			if pid == os.Getpid() {
				return 7
			}
			return 0
		})
	require.NoError(t, err)
	defer f.Close()

	c, err := net.DialTimeout("tcp", f.Addr(), time.Second)
	require.NoError(t, err)
	defer c.Close()
	b, err := backend.Accept()
	require.NoError(t, err)
	defer b.Close()
	require.Equal(t, int64(7), dialedFor.Load(), "the dialer is this process, node 7")

	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	require.NoError(t, b.SetDeadline(time.Now().Add(5*time.Second)))
	_, err = c.Write([]byte("ping"))
	require.NoError(t, err)
	buf := make([]byte, 4)
	_, err = b.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "ping", string(buf))
	_, err = b.Write([]byte("pong"))
	require.NoError(t, err)
	_, err = c.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "pong", string(buf))
}

func TestProcAddr(t *testing.T) {
	require.Equal(t, "0100007F:1F90", procAddr(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}))
}
