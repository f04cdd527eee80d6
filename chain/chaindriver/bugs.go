package chaindriver

import (
	"time"

	"github.com/chainraft/chainraft/chain"
	"github.com/chainraft/chainraft/harness"
	"github.com/chainraft/chainraft/nemesis"
)

// SeededBugs implements harness.BugDriver: the chain bugs `chainraft run
// --bug` plants, each with the faults that expose it. The node half of
// each lives in the chain package (chain.ParseBug); the client half of
// head-read is planted (ClientOptions.Bug) in the workload's client
// connections at the end of Start.
// (chain.BugEarlyReply is a node bug too, but only the cluster tests use
// it: it shows without any fault and the harness's table does not list it.)
func (d *Driver) SeededBugs() []harness.SeededBug {
	return []harness.SeededBug{
		{
			Name: chain.BugHeadRead, Store: Name,
			Mistake: "reads served at the head, which has writes the tail has not acknowledged",
			// No fault: the client half of the bug spreads reads over both
			// ends of the chain (every other read of a client at the
			// head). A read at the head shows a write the tail has not
			// applied yet; a later read at the tail, before the write
			// reaches it, shows the value before: not linearizable. The
			// window is the head's and middle's fsync plus two hops, which
			// a dense workload on few keys hits in every run. (Reads only
			// at the head would look linearizable while the head lives: it
			// shows writes in the order they commit.)
			Exposes:        "no fault: reads alternate between head and tail, and a head read runs ahead of the tail",
			Keys:           5,
			AppendFraction: 0.3,
		},
		{
			Name: chain.BugNoResend, Store: Name,
			Mistake: "after a middle node fails, its predecessor does not resend its Sent list",
			Faults:  []nemesis.Fault{{Kind: nemesis.KindKill, Role: nemesis.RoleMiddle}},
			// Down long enough for its session to expire and the master to
			// splice it out; clients wait through the splice.
			Duration:       5 * time.Second,
			Exposes:        "kill a middle node",
			Keys:           5,
			AppendFraction: 0.3,
			RequestTimeout: 8 * time.Second,
			RunTime:        10 * time.Second,
		},
		{
			Name: chain.BugStaleTail, Store: Name,
			Mistake: "a tail keeps serving reads after losing its ZooKeeper session",
			// Cut the tail off from ZooKeeper only: it stays reachable by
			// its clients, its session expires after SessionTimeout, and
			// the master splices it out of every chain; the new chain
			// commits writes it never sees. Clients cache the
			// configuration (chain.Client) and re-read it after a
			// rejection or every few seconds, so a client that has not
			// been rejected since the splice still reads at the old tail:
			// a correct one refuses (no session) and sends the client to
			// the new configuration, the bug answers from its old state.
			// (Pausing the tail instead does not show it: a read queued at
			// the paused tail times out before its session expires.)
			//
			// Mostly reads: a client's first write to the chain after the
			// splice is rejected by the head and refreshes its cache, so
			// the window in which it still reads at the old tail is its
			// run of reads before that write (about one operation at half
			// reads, nine at nine in ten); with half reads, 1 seed in 10
			// missed.
			Faults:       []nemesis.Fault{{Kind: nemesis.KindZKPartition, Role: nemesis.RoleTail}},
			Duration:     6 * time.Second,
			Exposes:      "cut the tail off from ZooKeeper past its session timeout (clients keep their cached configuration; 90% reads)",
			Keys:         5,
			ReadFraction: 0.9,
			RunTime:      12 * time.Second,
		},
		{
			Name: chain.BugCraqDirtyRead, Store: Name,
			Mistake: "a CRAQ read served from a replica's newest dirty version, without asking the tail which version is committed",
			// The driver's clients read in CRAQ mode with this bug, over
			// every member in turn. Delaying every link of a chain's
			// middle holds a write at the head (applied, dirty) for the
			// delay: a read at the head shows it, a later read at the
			// tail, which has not got it, shows the value before. Without
			// the delay the window is a hop and an fsync, which a dense
			// workload also hits, but not in every short run.
			Faults:         []nemesis.Fault{{Kind: nemesis.KindDelay, Role: nemesis.RoleMiddle, Delay: 100 * time.Millisecond}},
			Duration:       3 * time.Second,
			Exposes:        "delay a middle node's links (CRAQ reads spread over the chain)",
			Keys:           5,
			AppendFraction: 0.3,
			RunTime:        10 * time.Second,
		},
		noFsyncBug(),
	}
}
