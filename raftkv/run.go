package raftkv

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
)

// stopGrace bounds how long a stopping node waits for its clients' calls
// to finish before it cuts them off.
const stopGrace = 2 * time.Second

// RunConfig is one raft node process's configuration (`chainraft node
// raft`). The fields mean what NodeConfig's do.
type RunConfig struct {
	ID      uint64
	Listen  string
	DataDir string
	NoFsync bool
	// Peers, Addrs and Join: see NodeConfig.
	Peers []Member
	Addrs []Member
	Join  bool
	// Lease serves reads from the leader's lease (NodeConfig.Lease).
	Lease         bool
	SnapshotEvery uint64
	Bug           string
	// Groups, when 2 or more, runs a Host: the process is a member of
	// the groups GroupMembers places on it, GroupSize members each, and
	// Peers lists every node of the store.
	Groups, GroupSize int
	Logf              func(format string, args ...any)
}

// Run runs a raft node until ctx ends: it listens, restores the node from
// its data directory and serves gRPC. Everything it starts is stopped
// before it returns; in-flight client calls get stopGrace to finish.
func Run(ctx context.Context, cfg RunConfig) error {
	if cfg.ID == 0 {
		return errors.New("raftkv: node id 0 is reserved")
	}
	if cfg.Logf == nil {
		l := log.New(os.Stderr, fmt.Sprintf("node %d: ", cfg.ID), log.LstdFlags|log.Lmicroseconds)
		cfg.Logf = l.Printf
	}
	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("raftkv: listen: %w", err)
	}
	ncfg := NodeConfig{ID: cfg.ID, Peers: cfg.Peers, Addrs: cfg.Addrs, Join: cfg.Join, DataDir: cfg.DataDir,
		NoFsync: cfg.NoFsync, Lease: cfg.Lease, SnapshotEvery: cfg.SnapshotEvery, Bug: cfg.Bug,
		Logger: log.New(logfWriter(cfg.Logf), "", 0)}
	var node interface {
		Done() <-chan struct{}
		Err() error
		Stop() error
	}
	var gs *grpc.Server
	var serveErr <-chan error
	groups := "1 group"
	if cfg.Groups > 1 {
		h, err := StartHost(HostConfig{Node: ncfg, Groups: cfg.Groups, GroupSize: cfg.GroupSize})
		if err != nil {
			lis.Close()
			return err
		}
		node = h
		gs, serveErr = ServeHost(h, lis)
		groups = fmt.Sprintf("member of groups %v of %d", h.Groups(), cfg.Groups)
	} else {
		n, err := StartNode(ncfg)
		if err != nil {
			lis.Close()
			return err
		}
		node = n
		gs, serveErr = Serve(n, lis)
	}
	mode := "index"
	if cfg.Lease {
		mode = "lease"
	}
	cfg.Logf("serving on %s, data in %s (fsync %v, read mode %s, %s)", lis.Addr(), cfg.DataDir, !cfg.NoFsync, mode, groups)

	var first error
	select {
	case <-ctx.Done():
	case <-node.Done():
		first = fmt.Errorf("raft node loop: %w", node.Err())
	case err := <-serveErr:
		first = fmt.Errorf("raft grpc: %w", err)
	}
	// GracefulStop waits for calls in flight; past stopGrace, Stop cuts
	// them off, which also makes GracefulStop (and its goroutine) return.
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(stopGrace):
		gs.Stop()
		<-stopped
	}
	if err := node.Stop(); err != nil && first == nil {
		first = err
	}
	return first
}

// logfWriter turns a Logf into the writer of a log.Logger, so the node's
// (and raft's) lines go where the process's other lines go.
type logfWriter func(format string, args ...any)

func (f logfWriter) Write(p []byte) (int, error) {
	f("%s", strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
