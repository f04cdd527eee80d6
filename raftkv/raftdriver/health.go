package raftdriver

import "github.com/chainraft/chainraft/harness"

var _ harness.HealthWatcher = (*Cluster)(nil)

// Unplanned implements harness.HealthWatcher: a node process that died
// although neither the nemesis nor a membership change stopped it, or a
// full disk under the run directory. The raft store has nothing else the
// harness started.
func (c *Cluster) Unplanned() error { return c.pc.Unplanned() }
