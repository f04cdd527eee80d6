// Package redial is the reconnect policy of the stores' gRPC connections.
//
// gRPC's default reconnect backoff grows to two minutes, and every dial
// that fails while a peer is down (killed, partitioned) grows it: a node
// back after a long fault would stay unreachable long after it is back,
// and a run would measure gRPC rather than the store. Both stores retry a
// peer at most every second.
package redial

import (
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
)

// Options are a store connection's dial options: plaintext, and the
// capped reconnect backoff; extra go after them.
func Options(extra ...grpc.DialOption) []grpc.DialOption {
	return append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: time.Second,
		}),
	}, extra...)
}
