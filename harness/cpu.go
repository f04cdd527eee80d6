package harness

// Node CPU per client operation: the other cost side of `chainraft
// compare`, next to messages. On one machine every node draws from the same
// cores, so throughput alone cannot show where a design puts its work: a
// raft leader that does most of it and chain tails that share it look alike
// once the cores are full. The CPU time each node process used while the
// workload ran tells them apart, and the busiest node's share per operation
// is what bounds a store whose nodes run on servers of their own.
//
// CPU time is read by the harness, from outside (proc.Process.CPUTime):
// unlike the message counters kept inside the nodes, it spans every
// incarnation of a node killed and restarted during the run. It is read
// next to the message counters, just before the clients start and just
// after they stop.

import (
	"strconv"
	"time"
)

// cpuBetween is each node's CPU time between base and end, in seconds by
// node id; a node absent from base (added during the run) counts from zero.
func cpuBetween(base, end map[uint64]time.Duration) map[string]float64 {
	out := make(map[string]float64, len(end))
	for id, d := range end {
		out[strconv.FormatUint(id, 10)] = (d - base[id]).Seconds()
	}
	return out
}
