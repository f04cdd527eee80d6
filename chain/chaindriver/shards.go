package chaindriver

import "github.com/chainraft/chainraft/harness"

var _ harness.ShardedDriver = (*Driver)(nil)

// WithShards implements harness.ShardedDriver: a copy with n chains, its
// replicas per chain and ZooKeeper unchanged (`chainraft scale` runs as
// many chains as nodes).
func (d *Driver) WithShards(n int) harness.Driver {
	c := *d
	c.Chains = n
	return &c
}
