package sim

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/chainraft/chainraft/chain"
	pb "github.com/chainraft/chainraft/chain/chainpb"
)

// chainDisk is one chain node's data directory, simulated as chain.Storage
// lays it out: per chain a snapshot file carrying the chain's generation
// (replaced atomically, fsync'd before the rename), and one log shared by
// every chain whose records carry their chain and generation. Segments are
// not modelled: they change when dead records are deleted, not what is
// read back.
//
// A process crash (kill) keeps everything written. A power loss keeps the
// snapshot files that were synced and the synced part of the log, plus a
// random prefix of its unsynced tail (the torn final write, which the real
// log's checksums cut at a record boundary). Without fsync (NoFsync) only
// the kernel's writeback (writeback) makes anything durable.
type chainDisk struct {
	noFsync bool
	chains  int
	// snap and gen are each chain's snapshot file as written, durable* as
	// it survives a power loss; gen 0 is no file.
	snap, durableSnap []*pb.Snapshot
	gen, durableGen   []uint64
	log               []chainRec
	synced            int
	writes, syncs     int
}

type chainRec struct {
	chain int
	gen   uint64
	ent   *pb.Entry
}

func newChainDisk(chains int, noFsync bool) *chainDisk {
	return &chainDisk{noFsync: noFsync, chains: chains,
		snap: make([]*pb.Snapshot, chains), durableSnap: make([]*pb.Snapshot, chains),
		gen: make([]uint64, chains), durableGen: make([]uint64, chains)}
}

// tear says where a Save is cut by a power failure: after the first
// replaces snapshot replacements, and, if logWritten, after the log's write
// but before its fsync. A nil tear is a whole Save.
type tear struct {
	replaces   int
	logWritten bool
}

// save is chain.Storage.Save: snapshots (and wipes) replace their chain's
// file as they come, each taking the chain's next generation; entries are
// stamped with their chain's generation at their place in the list and go
// to the log in one write and one fsync. With t set it stops where t says
// and reports false: the power failed.
func (d *chainDisk) save(ps []chain.Persist, t *tear) bool {
	var recs []chainRec
	replaced := 0
	for _, p := range ps {
		switch {
		case p.Wipe || p.Snapshot != nil:
			if t != nil && replaced == t.replaces {
				return false
			}
			snap := p.Snapshot
			if p.Wipe {
				snap = &pb.Snapshot{}
			}
			d.gen[p.Chain]++
			d.snap[p.Chain] = snap
			if !d.noFsync {
				d.durableGen[p.Chain], d.durableSnap[p.Chain] = d.gen[p.Chain], snap
			}
			replaced++
		default:
			for _, e := range p.Entries {
				recs = append(recs, chainRec{chain: p.Chain, gen: d.gen[p.Chain], ent: e})
			}
		}
	}
	if t != nil && !t.logWritten {
		return false
	}
	if len(recs) > 0 {
		d.log = append(d.log, recs...)
		d.writes++
	}
	if t != nil {
		return false
	}
	if len(recs) > 0 && !d.noFsync {
		d.synced = len(d.log)
		d.syncs++
	}
	return true
}

// replaces counts the snapshot replacements a Save of ps makes.
func replaces(ps []chain.Persist) int {
	n := 0
	for _, p := range ps {
		if p.Wipe || p.Snapshot != nil {
			n++
		}
	}
	return n
}

// writeback makes everything written durable.
func (d *chainDisk) writeback() {
	copy(d.durableSnap, d.snap)
	copy(d.durableGen, d.gen)
	d.synced = len(d.log)
}

// powerLoss drops what was not durable; keep picks how many of the log's
// unsynced records survive, given how many there are.
func (d *chainDisk) powerLoss(keep func(n int) int) {
	copy(d.snap, d.durableSnap)
	copy(d.gen, d.durableGen)
	n := d.synced + keep(len(d.log)-d.synced)
	d.log = d.log[:n:n]
	d.synced = n
}

// open is chain.OpenStorage on the simulated files: each chain's snapshot,
// then the log's records of the snapshot's generation past it. Like the
// real storage it refuses a record of a generation newer than its chain's
// snapshot (the snapshot it belongs to was lost).
func (d *chainDisk) open() (*chain.Recovered, error) {
	rec := &chain.Recovered{Chains: make([]chain.RecoveredChain, d.chains)}
	out := rec.Chains
	for i := range out {
		if d.gen[i] > 0 {
			out[i].Snapshot = proto.Clone(d.snap[i]).(*pb.Snapshot)
		}
	}
	for k, r := range d.log {
		if r.gen > d.gen[r.chain] {
			return nil, fmt.Errorf("%w: log record %d: chain %d generation %d, past its snapshot's %d",
				chain.ErrCorrupt, k, r.chain, r.gen, d.gen[r.chain])
		}
		if r.gen < d.gen[r.chain] {
			continue
		}
		rs := &out[r.chain]
		if rs.Snapshot == nil || r.ent.GetSeq() > rs.Snapshot.GetLastSeq() {
			rs.Entries = append(rs.Entries, proto.Clone(r.ent).(*pb.Entry))
		}
	}
	return rec, nil
}
