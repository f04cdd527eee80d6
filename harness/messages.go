package harness

// Messages between nodes per client operation: the cost side of
// `chainraft compare`. Each store's transport counts the peer messages it
// handed to a stream since the node started (raftkv: raft messages; chain:
// chain messages), and reports the count in its Status (raft) or Digest
// (chain) reply. The harness reads every live node's counter just before
// the clients start and just after they stop, before the end-of-run checks
// (whose final reads would add messages no client operation paid for),
// and sums the differences.

import (
	"time"
)

// messageReadTimeout bounds one node's answer: a node that cannot answer
// in that time is left out rather than holding up the run's end.
const messageReadTimeout = 2 * time.Second

// sumMessages is the messages sent between base and end, summed over the
// nodes in end. A counter below its base belongs to a node restarted
// since (its counter starts again at zero): its whole count is taken, and
// the messages it sent before it went down are lost. A node absent from
// base (added during the run) counts from zero.
func sumMessages(base, end map[uint64]uint64) uint64 {
	var sum uint64
	for id, n := range end {
		if b := base[id]; n >= b {
			sum += n - b
		} else {
			sum += n
		}
	}
	return sum
}
