package chain

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"strings"
	"time"
)

// RunConfig is one chain node process's configuration (`chainraft node
// --store chain`).
type RunConfig struct {
	ID             uint64
	Listen         string
	DataDir        string
	NoFsync        bool
	ZK             []string
	SessionTimeout time.Duration
	// DetectTimeout is the data-path failure detection time (0: half the
	// session timeout; see NodeConfig.DetectTimeout).
	DetectTimeout time.Duration
	// Root is where the store's znodes live (empty: RootPath).
	Root      string
	Placement Placement
	Bug       string
	// PeerAddrs: see NodeConfig.PeerAddrs.
	PeerAddrs map[uint64]string
	Logf      func(format string, args ...any)
}

// Run runs a chain node until ctx ends: it listens, restores the node from
// its data directory, serves gRPC, and joins the configuration through
// ZooKeeper. Everything it starts is stopped before it returns.
func Run(ctx context.Context, cfg RunConfig) error {
	if err := cfg.Placement.Validate(); err != nil {
		return err
	}
	if cfg.ID == 0 || cfg.ID > uint64(cfg.Placement.Nodes) {
		return fmt.Errorf("chain: node id %d outside 1..%d", cfg.ID, cfg.Placement.Nodes)
	}
	if len(cfg.ZK) == 0 {
		return errors.New("chain: --zk is required")
	}
	if cfg.SessionTimeout == 0 {
		cfg.SessionTimeout = 4 * time.Second
	}
	if err := CheckSessionTimeout(cfg.SessionTimeout); err != nil {
		return err
	}
	if err := CheckRoot(cfg.Root); err != nil {
		return err
	}
	if cfg.DetectTimeout == 0 {
		// Half the session: a node cut off from its neighbours is out of
		// its chains well before a dead one's session would expire, and a
		// hiccup of a few ticks is not a suspicion.
		cfg.DetectTimeout = cfg.SessionTimeout / 2
	}
	if cfg.Logf == nil {
		l := log.New(os.Stderr, fmt.Sprintf("node %d: ", cfg.ID), log.LstdFlags|log.Lmicroseconds)
		cfg.Logf = l.Printf
	}
	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("chain: listen: %w", err)
	}
	node, err := StartNode(NodeConfig{ID: cfg.ID, DataDir: cfg.DataDir, NoFsync: cfg.NoFsync, Chains: cfg.Placement.Chains, Bug: cfg.Bug, ReadAny: cfg.Placement.ReadAny,
		PeerAddrs: cfg.PeerAddrs, DetectTimeout: cfg.DetectTimeout, Logger: log.New(logfWriter(cfg.Logf), "", 0)})
	if err != nil {
		lis.Close()
		return err
	}
	gs, serveErr := Serve(node, lis)
	ctx, cancel := context.WithCancel(ctx)
	coordErr := make(chan error, 1)
	go func() {
		coordErr <- RunCoordinator(ctx, CoordinatorConfig{ZK: cfg.ZK, Root: cfg.Root, SessionTimeout: cfg.SessionTimeout, ID: cfg.ID,
			Addr: lis.Addr().String(), Placement: cfg.Placement, Logf: cfg.Logf}, node)
	}()
	cfg.Logf("serving on %s, data in %s", lis.Addr(), cfg.DataDir)

	var first error
	select {
	case <-ctx.Done():
	case <-node.Done():
		first = fmt.Errorf("chain node loop: %w", node.Err())
	case err := <-serveErr:
		first = fmt.Errorf("chain grpc: %w", err)
	case err := <-coordErr:
		first = err
		coordErr <- err
	}
	cancel()
	if err := <-coordErr; err != nil && first == nil && !errors.Is(err, context.Canceled) {
		first = err
	}
	gs.Stop()
	if err := node.Stop(); err != nil && first == nil {
		first = err
	}
	return first
}

// logfWriter turns a Logf into the writer of a log.Logger, so the node's
// lines go where the process's other lines go.
type logfWriter func(format string, args ...any)

func (f logfWriter) Write(p []byte) (int, error) {
	f("%s", strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
