package raftkv

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"

	"github.com/chainraft/chainraft/kv"
	pb "github.com/chainraft/chainraft/raftkv/raftkvpb"
)

// unknownServer answers every request UNKNOWN (the write may have been
// proposed) and then runs onCall, which the test uses to close the
// client's connections the way the harness frees stuck clients.
type unknownServer struct {
	pb.UnimplementedKVServer
	onCall func()
}

func (s unknownServer) Do(context.Context, *pb.Request) (*pb.Response, error) {
	s.onCall()
	return &pb.Response{Code: pb.Code_CODE_UNKNOWN, Error: "leadership lost"}, nil
}

// A write whose first attempt may have been proposed stays indeterminate
// when the connections then disappear: "no nodes" must not turn it into a
// definite failure, or the checker would rule out a write that happened.
func TestClientNoNodesAfterMaybeAppliedIsIndeterminate(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var conns *Conns
	closed := make(chan struct{})
	gs := grpc.NewServer()
	pb.RegisterKVServer(gs, unknownServer{onCall: func() {
		select {
		case <-closed:
		default:
			close(closed)
			go conns.Close()
		}
	}})
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)

	conns, err = Dial(context.Background(), ClientOptions{Members: []Member{{ID: 1, Addr: lis.Addr().String()}}, RequestTimeout: 5 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { conns.Close() })
	cl := conns.NewClient()

	start := time.Now()
	err = cl.Put(context.Background(), "k", "v")
	require.Error(t, err)
	require.False(t, kv.IsDefinite(err), "a possibly proposed write must end indeterminate, got %v", err)
	require.ErrorIs(t, err, ErrUnknown)
	require.ErrorIs(t, err, errNoNodes)
	require.Less(t, time.Since(start), 4*time.Second, "closing the connections frees the client before its deadline")

	// A read with no nodes fails definitely (reads have no effect).
	_, _, err = cl.Get(context.Background(), "k")
	require.Error(t, err)
	require.True(t, kv.IsDefinite(err), "%v", err)
}
