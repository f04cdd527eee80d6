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
		return chain.Run(ctx, chain.RunConfig{
			ID: f.ID, Listen: f.Listen, DataDir: f.DataDir, NoFsync: f.NoFsync,
			ZK: zkrecipes.SplitAddrs(f.ZK), SessionTimeout: f.SessionTimeout,
			Placement: chain.Placement{Chains: f.Chains, Replicas: f.Replicas, Nodes: f.Nodes},
			Bug:       f.Bug,
		})
	}
}
