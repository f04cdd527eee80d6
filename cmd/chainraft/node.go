package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// NodeFlags are the flags of `chainraft node`, shared by every store; each
// store reads the ones it needs.
type NodeFlags struct {
	Store    string
	ID       uint64
	Listen   string   // client and peer address, host:port
	Peers    []string // id=host:port of every initial member, self included
	DataDir  string
	NoFsync  bool
	ReadMode string // raft: index | lease
	Join     bool   // raft: start as a node added by conf change, with no initial peers
	ZK       string // chain: ZooKeeper ensemble host:port,...
	Chains   int    // chain: number of chains
	Replicas int    // chain: nodes per chain
	Nodes    int    // chain: total node count the chains rotate over
	Bug      string // a seeded bug, tests only
	// SnapshotEvery is the raft log length between snapshots.
	SnapshotEvery uint64
	// SessionTimeout is the chain node's ZooKeeper session timeout.
	SessionTimeout time.Duration
}

// nodeRunners maps a store name to the function that runs one node of it
// until ctx is done. Each store's node file registers itself from init.
var nodeRunners = map[string]func(ctx context.Context, f NodeFlags) error{}

func init() {
	subcommands = append(subcommands, newNodeCmd)
}

func newNodeCmd() *cobra.Command {
	var f NodeFlags
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Run one node of a store (started by the harness, or by hand)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			run, ok := nodeRunners[f.Store]
			if !ok {
				names := make([]string, 0, len(nodeRunners))
				for n := range nodeRunners {
					names = append(names, n)
				}
				sort.Strings(names)
				return usageErrorf("node: unknown --store %q (known: %s)", f.Store, strings.Join(names, ", "))
			}
			if f.ID == 0 {
				return usageErrorf("node: --id must be a positive integer")
			}
			if f.DataDir == "" {
				return usageErrorf("node: --data-dir is required")
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if err := run(ctx, f); err != nil {
				return withCode(exitRunFailed, fmt.Errorf("node %d: %w", f.ID, err))
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.Store, "store", "", "store: raft or chain")
	fl.Uint64Var(&f.ID, "id", 0, "node id (positive, never reused)")
	fl.StringVar(&f.Listen, "listen", "127.0.0.1:0", "address to listen on")
	fl.StringSliceVar(&f.Peers, "peers", nil, "initial members as id=host:port, self included")
	fl.StringVar(&f.DataDir, "data-dir", "", "directory for durable state")
	fl.BoolVar(&f.NoFsync, "no-fsync", false, "skip fsync (measurements only: unsafe)")
	fl.StringVar(&f.ReadMode, "read-mode", "index", "raft reads: index (ReadIndex) or lease")
	fl.BoolVar(&f.Join, "join", false, "raft: join an existing cluster (added by conf change)")
	fl.StringVar(&f.ZK, "zk", "", "chain: ZooKeeper ensemble host:port,...")
	fl.IntVar(&f.Chains, "chains", 3, "chain: number of chains")
	fl.IntVar(&f.Replicas, "replicas", 3, "chain: nodes per chain")
	fl.IntVar(&f.Nodes, "nodes", 3, "chain: number of nodes the chains rotate over")
	fl.StringVar(&f.Bug, "bug", "", "plant a seeded bug (tests only)")
	fl.Uint64Var(&f.SnapshotEvery, "snapshot-every", 10000, "raft: entries between snapshots")
	fl.DurationVar(&f.SessionTimeout, "session-timeout", 4*time.Second, "chain: ZooKeeper session timeout")
	return cmd
}
