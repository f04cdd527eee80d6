package sim

import (
	"fmt"
	"slices"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/chainraft/chainraft/raftkv"
)

// raftDisk is one raft node's data directory, simulated: the same three
// files as raftkv.Storage ("snap" and "vote", replaced atomically, and "wal",
// an append-only log of entry and hard-state records), each with what has
// been written and what of it is durable.
//
// A process crash (kill) keeps everything written: it is in the page cache.
// A power loss keeps only what was synced, plus a random prefix of the
// unsynced tail of the log cut at a record boundary: the torn final write,
// which the real log's checksums cut at exactly such a boundary
// (internal/wal). A file replaced by rename without fsync (no-fsync) reverts
// to its durable version. Without fsync, the kernel's writeback still makes
// everything durable now and then (writeback).
type raftDisk struct {
	noFsync bool

	snap, snapDurable        *raftpb.Snapshot
	term, vote               uint64
	termDurable, voteDurable uint64
	log                      []walRec
	synced                   int // log[:synced] is durable
	// sealed is the log Rotate sealed ("wal.old"), durable whole, until the
	// snapshot it was rotated for is in place; dropped is one just
	// removed, which a power loss may bring back (the removal is not
	// fsynced).
	sealed, dropped            []walRec
	oldLog                     []walRec // the durable log an unsynced rewrite replaced, or nil
	hs                         *raftpb.HardState
	writes, syncs, powerLosses int
}

// walRec is one record of the log: an entry or a hard state.
type walRec struct {
	ent *raftpb.Entry
	hs  *raftpb.HardState
}

// persist is raftkv.Storage.Save: a leader's snapshot replaces the log
// (snapshot file first, then a rewritten log), anything else is appended.
func (d *raftDisk) persist(hs *raftpb.HardState, ents []*raftpb.Entry, snap *raftpb.Snapshot, sync bool) {
	if raft.IsEmptySnap(snap) {
		d.save(hs, ents, sync)
		return
	}
	d.saveSnapshot(snap)
	if raft.IsEmptyHardState(hs) {
		hs = d.hs
	}
	d.rewrite(hs, ents)
}

// save is raftkv.Storage.Save: a new term or vote goes to the vote file
// first (durably), then entries and the hard state in one write, synced
// when raft says MustSync.
func (d *raftDisk) save(hs *raftpb.HardState, ents []*raftpb.Entry, sync bool) {
	d.saveVote(hs)
	d.log = appendRecs(d.log, hs, ents)
	if !raft.IsEmptyHardState(hs) {
		d.hs = cloneHS(hs)
	}
	d.writes++
	if sync && !d.noFsync {
		d.synced = len(d.log)
		d.syncs++
	}
}

func appendRecs(log []walRec, hs *raftpb.HardState, ents []*raftpb.Entry) []walRec {
	for _, e := range ents {
		log = append(log, walRec{ent: e})
	}
	if !raft.IsEmptyHardState(hs) {
		log = append(log, walRec{hs: cloneHS(hs)})
	}
	return log
}

func (d *raftDisk) saveVote(hs *raftpb.HardState) {
	if raft.IsEmptyHardState(hs) || hs.GetTerm() == d.term && hs.GetVote() == d.vote {
		return
	}
	d.term, d.vote = hs.GetTerm(), hs.GetVote()
	if !d.noFsync {
		d.termDurable, d.voteDurable = d.term, d.vote
	}
}

func (d *raftDisk) saveSnapshot(snap *raftpb.Snapshot) {
	d.snap = snap
	if !d.noFsync {
		d.snapDurable = snap
	}
}

// rotate is raftkv.Storage.Rotate, with fsync on (the simulator rotates
// only then): the log sealed and kept, synced whole, and a new log of hs
// and ents, synced, with the rename of the old one.
func (d *raftDisk) rotate(hs *raftpb.HardState, ents []*raftpb.Entry) {
	d.saveVote(hs)
	d.sealed, d.dropped = d.log, nil
	d.log = appendRecs(nil, hs, ents)
	d.synced = len(d.log)
	if !raft.IsEmptyHardState(hs) {
		d.hs = cloneHS(hs)
	}
	d.writes++
	d.syncs += 2
}

// dropSealed is raftkv.Storage.DropOldLog.
func (d *raftDisk) dropSealed() {
	if d.sealed != nil {
		d.dropped, d.sealed = d.sealed, nil
	}
}

// rewrite is raftkv.Storage.Rewrite: the log replaced, atomically, by one
// holding just hs and ents, then the sealed log dropped.
func (d *raftDisk) rewrite(hs *raftpb.HardState, ents []*raftpb.Entry) {
	defer d.dropSealed()
	d.saveVote(hs)
	if d.noFsync && d.oldLog == nil {
		d.oldLog = slices.Clone(d.log[:d.synced])
	}
	d.log = appendRecs(nil, hs, ents)
	d.synced = 0
	if !d.noFsync {
		d.synced = len(d.log)
		d.oldLog = nil
	}
	if !raft.IsEmptyHardState(hs) {
		d.hs = cloneHS(hs)
	}
	d.writes++
}

// writeback makes everything written durable, as the kernel eventually
// does on its own.
func (d *raftDisk) writeback() {
	d.snapDurable = d.snap
	d.termDurable, d.voteDurable = d.term, d.vote
	d.synced = len(d.log)
	d.oldLog = nil
	d.dropped = nil
}

// powerLoss drops what was not durable; keep picks how many of the log's
// unsynced records survive (the torn write), given how many there are.
func (d *raftDisk) powerLoss(keep func(n int) int) {
	d.powerLosses++
	if d.dropped != nil && keep(2) == 2 {
		d.sealed = d.dropped // the unsynced removal did not reach the disk
	}
	d.dropped = nil
	d.snap = d.snapDurable
	d.term, d.vote = d.termDurable, d.voteDurable
	if d.oldLog != nil {
		d.log, d.oldLog = d.oldLog, nil
		d.synced = len(d.log)
		return
	}
	n := d.synced + keep(len(d.log)-d.synced)
	d.log = d.log[:n:n]
	d.synced = n
}

// open is raftkv.OpenStorage on the simulated files: the snapshot, the vote
// file's term and vote with the log's last commit index, and the log's
// entries (a later entry at index i replacing everything from i on). Like
// the real storage it refuses a log whose hard state is newer than the vote
// file, and rewrites a log left behind a newer snapshot (see
// raftkv.LogMatchesSnapshot).
func (d *raftDisk) open() (*raftkv.Recovered, error) {
	rec := &raftkv.Recovered{}
	if d.snap != nil {
		rec.Snapshot = proto.Clone(d.snap).(*raftpb.Snapshot)
	}
	oldEnts, oldHS, err := replayRecs(d.sealed)
	if err != nil {
		return nil, err
	}
	ents, logHS, err := replayRecs(d.log)
	if err != nil {
		return nil, err
	}
	if logHS == nil {
		logHS = oldHS
	}
	rec.Entries = raftkv.JoinLogs(oldEnts, ents)
	if hs := logHS; hs != nil && (hs.GetTerm() > d.term || hs.GetTerm() == d.term && hs.GetVote() != 0 && hs.GetVote() != d.vote) {
		return nil, fmt.Errorf("%w: vote file holds term %d vote %d, the log a hard state of term %d vote %d: the vote file lost a vote",
			raftkv.ErrCorrupt, d.term, d.vote, hs.GetTerm(), hs.GetVote())
	}
	if d.term != 0 || d.vote != 0 || logHS.GetCommit() != 0 {
		rec.HardState = &raftpb.HardState{Term: proto.Uint64(d.term), Vote: proto.Uint64(d.vote), Commit: proto.Uint64(logHS.GetCommit())}
	}
	d.hs = rec.HardState
	if ents, ok := raftkv.LogMatchesSnapshot(rec.Snapshot, rec.Entries); !ok {
		rec.Entries = ents
		d.rewrite(rec.HardState, nil)
	} else if d.sealed != nil {
		d.rewrite(rec.HardState, rec.Entries) // one log again, as OpenStorage makes it
	}
	return rec, nil
}

// replayRecs is one log file's replay: its entries (a later entry at index
// i replacing everything from i on) and its last hard state.
func replayRecs(log []walRec) ([]*raftpb.Entry, *raftpb.HardState, error) {
	var ents []*raftpb.Entry
	var hs *raftpb.HardState
	for _, r := range log {
		if r.hs != nil {
			hs = r.hs
			continue
		}
		e := proto.Clone(r.ent).(*raftpb.Entry)
		if len(ents) == 0 {
			ents = append(ents, e)
			continue
		}
		first := ents[0].GetIndex()
		switch idx := e.GetIndex(); {
		case idx < first:
			return nil, nil, fmt.Errorf("%w: entry %d before first %d", raftkv.ErrCorrupt, idx, first)
		case idx > first+uint64(len(ents)):
			return nil, nil, fmt.Errorf("%w: entry %d leaves a gap after %d", raftkv.ErrCorrupt, idx, first+uint64(len(ents))-1)
		default:
			ents = append(ents[:idx-first], e)
		}
	}
	return ents, hs, nil
}

func cloneHS(hs *raftpb.HardState) *raftpb.HardState {
	return proto.Clone(hs).(*raftpb.HardState)
}
