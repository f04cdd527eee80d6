package main

import (
	"context"

	"github.com/chainraft/chainraft/chain"
	"github.com/chainraft/chainraft/zkrecipes"
)

func init() {
	nodeRunners["chain"] = func(ctx context.Context, f NodeFlags) error {
		if f.ZK == "" {
			return usageErrorf("node: --zk is required for --store chain")
		}
		// --peers, for a chain node, only overrides where it dials its
		// peers (the harness's proxies); the chains come from ZooKeeper.
		peers, err := parsePeers(f.Peers)
		if err != nil {
			return err
		}
		var addrs map[uint64]string
		for _, p := range peers {
			if addrs == nil {
				addrs = map[uint64]string{}
			}
			addrs[p.ID] = p.Addr
		}
		return chain.Run(ctx, chain.RunConfig{
			PeerAddrs: addrs,
			ID:        f.ID, Listen: f.Listen, DataDir: f.DataDir, NoFsync: f.NoFsync,
			ZK: zkrecipes.SplitAddrs(f.ZK), SessionTimeout: f.SessionTimeout,
			Placement: chain.Placement{Chains: f.Chains, Replicas: f.Replicas, Nodes: f.Nodes},
			Bug:       f.Bug,
		})
	}
}
