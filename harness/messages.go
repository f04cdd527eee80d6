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
	"context"
	"time"
)

// messageCounter is a cluster whose nodes count the peer messages they
// send. The memory store is not one, and its summary has no message row.
type messageCounter interface {
	// PeerMessagesSent reads each live node's counter; a node that is
	// down, paused or does not answer is left out.
	PeerMessagesSent(ctx context.Context) map[uint64]uint64
}

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

// PeerMessagesSent implements messageCounter.
func (c *RaftCluster) PeerMessagesSent(ctx context.Context) map[uint64]uint64 {
	out := map[uint64]uint64{}
	for _, id := range c.Nodes() {
		if p := c.Process(id); p == nil || !p.Running() || p.Paused() {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, messageReadTimeout)
		st, err := c.conns.Status(sctx, id)
		cancel()
		if err != nil {
			continue
		}
		out[id] = st.GetPeerMessagesSent()
	}
	return out
}

// PeerMessagesSent implements messageCounter. A node's counter covers all
// its chains; it comes with the node's digest of chain 0, which every node
// serves.
func (c *ChainCluster) PeerMessagesSent(ctx context.Context) map[uint64]uint64 {
	out := map[uint64]uint64{}
	for _, n := range c.Nodes() {
		if n.Proc == nil || !n.Proc.Running() || n.Proc.Paused() {
			continue
		}
		dctx, cancel := context.WithTimeout(ctx, messageReadTimeout)
		d, err := c.router.Digest(dctx, n.Addr, 0)
		cancel()
		if err != nil {
			continue
		}
		out[n.ID] = d.GetPeerMessagesSent()
	}
	return out
}
