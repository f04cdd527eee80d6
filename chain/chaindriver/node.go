package chaindriver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/chainraft/chainraft/chain"
	"github.com/chainraft/chainraft/harness"
	"github.com/chainraft/chainraft/zkrecipes"
)

// nodeFlags are the flags of `chainraft node chain`.
type nodeFlags struct {
	id             uint64
	listen         string
	dataDir        string
	zk             string
	chains         int
	replicas       int
	nodes          int
	sessionTimeout time.Duration
	detectTimeout  time.Duration
	root           string
	peers          []string
	noFsync        bool
	readAny        bool
	bug            string
}

// usageErrorf is an error about NodeMain's command line. It wraps
// harness.ErrInvalidConfig, which `chainraft node` turns into exit 2 (bad
// usage) rather than 1 (the node failed).
func usageErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: chain node: %s", harness.ErrInvalidConfig, fmt.Sprintf(format, args...))
}

// nodeFlagSet is the flag set NodeMain parses.
func nodeFlagSet(f *nodeFlags) *pflag.FlagSet {
	fs := pflag.NewFlagSet("chainraft node "+Name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned; usage is printed on --help only
	fs.Uint64Var(&f.id, "id", 0, "node id (1..--nodes, never reused)")
	fs.StringVar(&f.listen, "listen", "127.0.0.1:0", "address to listen on, for clients and peers")
	fs.StringVar(&f.dataDir, "data-dir", "", "directory for durable state (required)")
	fs.StringVar(&f.zk, "zk", "", "ZooKeeper ensemble host:port,... (required)")
	fs.IntVar(&f.chains, "chains", DefaultChains, "number of chains (the same on every node)")
	fs.IntVar(&f.replicas, "replicas", DefaultReplicas, "nodes per chain (the same on every node)")
	fs.BoolVar(&f.readAny, "read-any", false, "every member answers reads (CRAQ), and the master deposes every member it removes while live (the same on every node)")
	fs.IntVar(&f.nodes, "nodes", 3, "number of nodes the chains rotate over (the same on every node)")
	fs.DurationVar(&f.sessionTimeout, "session-timeout", 4*time.Second, "ZooKeeper session timeout: the failure-detection time")
	fs.DurationVar(&f.detectTimeout, "detect-timeout", 0, "how long a successor may be silent, or behind without progress, before it is reported to the master (0: half the session timeout)")
	fs.StringVar(&f.root, "zk-root", chain.RootPath, "ZooKeeper znode under which the store keeps its nodes, chains and master election")
	fs.StringSliceVar(&f.peers, "peers", nil, "id=host:port of peers to dial at an address other than their configured one")
	fs.BoolVar(&f.noFsync, "no-fsync", false, "skip fsync (measurements only: unsafe)")
	fs.StringVar(&f.bug, "bug", "", "plant a seeded bug (tests only): "+strings.Join(chain.KnownBugs(), ", "))
	return fs
}

// NodeMain implements harness.NodeDriver: `chainraft node chain ARGS` runs
// one chain node until ctx is done. The chains come from ZooKeeper; the
// placement flags must be the same on every node (the master builds the
// rotation from them), and --peers only overrides where this node dials
// its peers (the harness's proxies). With --help it prints the flags to
// stderr and returns nil.
func (d *Driver) NodeMain(ctx context.Context, args []string) error {
	var f nodeFlags
	fs := nodeFlagSet(&f)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			fmt.Fprintf(os.Stderr, "Usage: chainraft node %s [flags]\n\n%s", Name, fs.FlagUsages())
			return nil
		}
		return usageErrorf("%v", err)
	}
	switch {
	case fs.NArg() > 0:
		return usageErrorf("unexpected argument %q (every setting is a flag)", fs.Arg(0))
	case f.id == 0:
		return usageErrorf("--id must be a positive integer")
	case f.dataDir == "":
		return usageErrorf("--data-dir is required")
	case f.zk == "":
		return usageErrorf("--zk is required")
	}
	if _, err := chain.ParseBug(f.bug); err != nil {
		return usageErrorf("--bug: %v", err)
	}
	placement := chain.Placement{Chains: f.chains, Replicas: f.replicas, Nodes: f.nodes, ReadAny: f.readAny}
	if err := placement.Validate(); err != nil {
		return usageErrorf("--chains, --replicas, --nodes: %v", err)
	}
	if f.id > uint64(f.nodes) {
		return usageErrorf("--id %d is outside 1..--nodes %d", f.id, f.nodes)
	}
	if err := chain.CheckSessionTimeout(f.sessionTimeout); err != nil {
		return usageErrorf("--session-timeout: %v", err)
	}
	if err := chain.CheckRoot(f.root); err != nil {
		return usageErrorf("--zk-root: %v", err)
	}
	if f.detectTimeout < 0 {
		return usageErrorf("--detect-timeout must not be negative, got %v", f.detectTimeout)
	}
	peers, err := parsePeers(f.peers)
	if err != nil {
		return err
	}
	return chain.Run(ctx, chain.RunConfig{
		ID: f.id, Listen: f.listen, DataDir: f.dataDir, NoFsync: f.noFsync,
		ZK: zkrecipes.SplitAddrs(f.zk), SessionTimeout: f.sessionTimeout, DetectTimeout: f.detectTimeout, Root: f.root,
		Placement: placement, Bug: f.bug, PeerAddrs: peers,
	})
}

// parsePeers reads --peers entries id=host:port; none gives nil (dial the
// configured addresses).
func parsePeers(specs []string) (map[uint64]string, error) {
	var out map[uint64]string
	for _, s := range specs {
		idStr, addr, ok := strings.Cut(s, "=")
		id, err := strconv.ParseUint(idStr, 10, 64)
		if !ok || err != nil || id == 0 || addr == "" {
			return nil, usageErrorf("bad --peers entry %q (want id=host:port)", s)
		}
		if out == nil {
			out = map[uint64]string{}
		}
		out[id] = addr
	}
	return out, nil
}
