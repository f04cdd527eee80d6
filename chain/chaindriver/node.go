package chaindriver

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/chainraft/chainraft/chain"
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
	peers          []string
	noFsync        bool
	bug            string
}

// NodeMain implements harness.NodeDriver: `chainraft node chain ARGS` runs
// one chain node until ctx is done. The chains come from ZooKeeper; the
// placement flags must be the same on every node (the master builds the
// rotation from them), and --peers only overrides where this node dials
// its peers (the harness's proxies).
func (d *Driver) NodeMain(ctx context.Context, args []string) error {
	var f nodeFlags
	fs := pflag.NewFlagSet("chainraft node "+Name, pflag.ContinueOnError)
	fs.Uint64Var(&f.id, "id", 0, "node id (1..--nodes, never reused)")
	fs.StringVar(&f.listen, "listen", "127.0.0.1:0", "address to listen on, for clients and peers")
	fs.StringVar(&f.dataDir, "data-dir", "", "directory for durable state")
	fs.StringVar(&f.zk, "zk", "", "ZooKeeper ensemble host:port,...")
	fs.IntVar(&f.chains, "chains", DefaultChains, "number of chains")
	fs.IntVar(&f.replicas, "replicas", DefaultReplicas, "nodes per chain")
	fs.IntVar(&f.nodes, "nodes", 3, "number of nodes the chains rotate over")
	fs.DurationVar(&f.sessionTimeout, "session-timeout", 4*time.Second, "ZooKeeper session timeout (the failure-detection time)")
	fs.StringSliceVar(&f.peers, "peers", nil, "id=host:port of peers to dial at an address other than their configured one")
	fs.BoolVar(&f.noFsync, "no-fsync", false, "skip fsync (measurements only: unsafe)")
	fs.StringVar(&f.bug, "bug", "", "plant a seeded bug (tests only)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("node chain: unexpected arguments %q", fs.Args())
	case f.id == 0:
		return errors.New("node chain: --id must be a positive integer")
	case f.dataDir == "":
		return errors.New("node chain: --data-dir is required")
	case f.zk == "":
		return errors.New("node chain: --zk is required")
	}
	peers, err := parsePeers(f.peers)
	if err != nil {
		return err
	}
	return chain.Run(ctx, chain.RunConfig{
		ID: f.id, Listen: f.listen, DataDir: f.dataDir, NoFsync: f.noFsync,
		ZK: zkrecipes.SplitAddrs(f.zk), SessionTimeout: f.sessionTimeout,
		Placement: chain.Placement{Chains: f.chains, Replicas: f.replicas, Nodes: f.nodes},
		Bug:       f.bug, PeerAddrs: peers,
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
			return nil, fmt.Errorf("node chain: bad --peers entry %q (want id=host:port)", s)
		}
		if out == nil {
			out = map[uint64]string{}
		}
		out[id] = addr
	}
	return out, nil
}
