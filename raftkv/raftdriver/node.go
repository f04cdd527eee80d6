package raftdriver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/chainraft/chainraft/harness"
	"github.com/chainraft/chainraft/raftkv"
)

// nodeFlags are `chainraft node raft`'s flags.
type nodeFlags struct {
	id            uint64
	listen        string
	peers         []string
	dataDir       string
	noFsync       bool
	readMode      string
	join          bool
	bug           string
	snapshotEvery uint64
}

// stopGrace bounds how long a stopping node waits for its clients' calls
// to finish before it cuts them off.
const stopGrace = 2 * time.Second

// usageErrorf is an error about NodeMain's command line. It wraps
// harness.ErrInvalidConfig, which `chainraft node` turns into exit 2 (bad
// usage) rather than 1 (the node failed).
func usageErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: raft node: %s", harness.ErrInvalidConfig, fmt.Sprintf(format, args...))
}

// nodeFlagSet is the flag set NodeMain parses; its usage is NodeUsage.
func nodeFlagSet(f *nodeFlags) *pflag.FlagSet {
	fs := pflag.NewFlagSet("chainraft node raft", pflag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned, usage printed on --help only
	fs.Uint64Var(&f.id, "id", 0, "node id (positive, never reused)")
	fs.StringVar(&f.listen, "listen", "127.0.0.1:0", "address to listen on, for clients and peers")
	fs.StringSliceVar(&f.peers, "peers", nil, "initial members as id=host:port, self included; +id=host:port is only where to dial id if the log adds it")
	fs.StringVar(&f.dataDir, "data-dir", "", "directory for durable state (required)")
	fs.BoolVar(&f.noFsync, "no-fsync", false, "skip fsync (measurements only: unsafe)")
	fs.StringVar(&f.readMode, "read-mode", ReadModeIndex, "reads: index (ReadIndex) or lease")
	fs.BoolVar(&f.join, "join", false, "join an existing cluster (added by conf change)")
	fs.StringVar(&f.bug, "bug", "", "plant a seeded bug (tests only): "+strings.Join(raftkv.KnownBugs(), ", "))
	fs.Uint64Var(&f.snapshotEvery, "snapshot-every", 10000, "log entries between snapshots (0: raftkv's default)")
	return fs
}

// NodeUsage is `chainraft node raft`'s flags, for help text.
func NodeUsage() string {
	var f nodeFlags
	return nodeFlagSet(&f).FlagUsages()
}

// nodeConfig parses args into the node's configuration and the address to
// listen on. Every error names the flag at fault and wraps
// harness.ErrInvalidConfig.
func nodeConfig(args []string) (raftkv.NodeConfig, string, error) {
	var f nodeFlags
	fs := nodeFlagSet(&f)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return raftkv.NodeConfig{}, "", err
		}
		return raftkv.NodeConfig{}, "", usageErrorf("%v", err)
	}
	if fs.NArg() > 0 {
		return raftkv.NodeConfig{}, "", usageErrorf("unexpected argument %q (every setting is a flag)", fs.Arg(0))
	}
	if f.id == 0 {
		return raftkv.NodeConfig{}, "", usageErrorf("--id must be a positive integer")
	}
	if f.dataDir == "" {
		return raftkv.NodeConfig{}, "", usageErrorf("--data-dir is required")
	}
	var plain, book []string
	for _, p := range f.peers {
		// "+id=addr" is an address-only entry: where to dial node id if the
		// log ever makes it a member (the harness's proxies), not a member.
		if rest, ok := strings.CutPrefix(p, "+"); ok {
			book = append(book, rest)
		} else {
			plain = append(plain, p)
		}
	}
	peers, err := parsePeers(plain)
	if err != nil {
		return raftkv.NodeConfig{}, "", err
	}
	addrs, err := parsePeers(book)
	if err != nil {
		return raftkv.NodeConfig{}, "", err
	}
	lease, err := leaseMode(f.readMode)
	if err != nil {
		return raftkv.NodeConfig{}, "", usageErrorf("--read-mode %q (want %s or %s)", f.readMode, ReadModeIndex, ReadModeLease)
	}
	bug, err := raftkv.ParseBug(f.bug)
	if err != nil {
		return raftkv.NodeConfig{}, "", usageErrorf("--bug: %v", err)
	}
	if !f.join {
		found := false
		for _, p := range peers {
			found = found || p.ID == f.id
		}
		if !found {
			return raftkv.NodeConfig{}, "", usageErrorf("--peers must include this node (%d) unless --join", f.id)
		}
	}
	return raftkv.NodeConfig{
		ID:            f.id,
		Peers:         peers,
		Addrs:         addrs,
		Join:          f.join,
		DataDir:       f.dataDir,
		NoFsync:       f.noFsync,
		Lease:         lease,
		SnapshotEvery: f.snapshotEvery,
		Bug:           bug,
	}, f.listen, nil
}

// NodeMain implements harness.NodeDriver: `chainraft node raft ARGS`. It
// runs one node until ctx is done (SIGTERM or SIGINT), then stops it
// cleanly; SIGKILL is what the nemesis uses to test the unclean path. With
// --help it prints the flags to stderr and returns nil.
func (*Driver) NodeMain(ctx context.Context, args []string) error {
	cfg, listen, err := nodeConfig(args)
	if errors.Is(err, pflag.ErrHelp) {
		fmt.Fprintf(os.Stderr, "Usage: chainraft node raft [flags]\n\n%s", NodeUsage())
		return nil
	}
	if err != nil {
		return err
	}
	logger := log.New(os.Stderr, fmt.Sprintf("raft%d ", cfg.ID), log.LstdFlags|log.Lmicroseconds)
	cfg.Logger = logger
	lis, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("node raft %d: --listen: %w", cfg.ID, err)
	}
	n, err := raftkv.StartNode(cfg)
	if err != nil {
		lis.Close()
		return fmt.Errorf("node raft %d: %w", cfg.ID, err)
	}
	srv := raftkv.Serve(n, lis)
	mode := ReadModeIndex
	if cfg.Lease {
		mode = ReadModeLease
	}
	logger.Printf("serving on %s (data %s, fsync %v, read mode %s)", lis.Addr(), cfg.DataDir, !cfg.NoFsync, mode)
	select {
	case <-ctx.Done():
	case <-n.Done():
	}
	// GracefulStop waits for calls in flight; past stopGrace, Stop cuts
	// them off, which also makes GracefulStop (and its goroutine) return.
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(stopGrace):
		srv.Stop()
		<-stopped
	}
	if err := n.Stop(); err != nil {
		return fmt.Errorf("node raft %d: %w", cfg.ID, err)
	}
	return nil
}

// parsePeers parses id=host:port entries.
func parsePeers(specs []string) ([]raftkv.Member, error) {
	var out []raftkv.Member
	for _, s := range specs {
		idStr, addr, ok := strings.Cut(s, "=")
		id, err := strconv.ParseUint(idStr, 10, 64)
		if !ok || err != nil || id == 0 || addr == "" {
			return nil, usageErrorf("bad --peers entry %q (want id=host:port)", s)
		}
		out = append(out, raftkv.Member{ID: id, Addr: addr})
	}
	return out, nil
}
