package chaindriver

import (
	"github.com/chainraft/chainraft/chain"
	"github.com/chainraft/chainraft/harness"
	"github.com/chainraft/chainraft/nemesis"
)

// Power faults. With harness.Env.PowerFS every node's data directory is on
// internal/powerfs (proccluster mounts it), and the nemesis's power fault
// kills nodes and drops what they wrote and did not sync. ZooKeeper's own
// data stays on the bare disk: a power fault cuts the chain's nodes, not
// its configuration center.

// BugNoFsync acknowledges writes without fsync: the nodes run with
// --no-fsync, so a write the tail acknowledges is in every replica's page
// cache and on no disk. It is the driver's bug, not the chain package's
// (chain's --no-fsync is the mechanism, kept for measurements): nodes are
// not passed --bug.
const BugNoFsync = "no-fsync"

// noFsyncBug is the seeded bug's table entry (SeededBugs).
func noFsyncBug() harness.SeededBug {
	return harness.SeededBug{
		Name: BugNoFsync, Store: Name,
		Mistake: "writes acknowledged without fsync: every replica holds them only in its page cache",
		// A kill does not show it (the page cache survives a process),
		// nor does a power cut of one node (its chain's other replicas
		// hold every acknowledged write, and it rejoins from them). Every
		// node at once forgets them all.
		Faults:  []nemesis.Fault{{Kind: nemesis.KindPower, Role: nemesis.RoleAll}},
		Exposes: "power cut of every node at once (a rack losing power)",
		Keys:    5,
		// Down past the session timeout, so the nodes come back to a
		// master that has noticed them gone.
		Duration: 2 * SessionTimeout,
		RunTime:  12 * SessionTimeout / 2,
	}
}

// nodeBug is what a node is started with for env's bug: the --bug it is
// passed (none for the driver's own no-fsync) and whether it skips fsync.
func nodeBug(env harness.Env) (bug string, noFsync bool) {
	if env.Bug == BugNoFsync {
		return "", true
	}
	return env.Bug, env.NoFsync
}

// checkBug refuses a bug neither the driver nor the nodes plant.
func checkBug(name string) error {
	if name == BugNoFsync {
		return nil
	}
	_, err := chain.ParseBug(name)
	return err
}
