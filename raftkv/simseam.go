package raftkv

import "go.etcd.io/raft/v3/raftpb"

// LogMatchesSnapshot is the rule OpenStorage applies to a log recovered
// with a snapshot (see logMatchesSnapshot), for storages outside this
// package that recover the same files their own way: the deterministic
// simulator's disk (package sim) keeps raft's durable state in memory and
// must rewrite a stale log exactly when Storage would. ok is false when the
// entries after the snapshot cannot be trusted and the log must be
// rewritten empty.
func LogMatchesSnapshot(snap *raftpb.Snapshot, ents []*raftpb.Entry) ([]*raftpb.Entry, bool) {
	return logMatchesSnapshot(snap, ents)
}

// JoinLogs is how OpenStorage joins the log Storage.Rotate sealed with the
// current one (see joinLogs), for the simulator's disk.
func JoinLogs(old, cur []*raftpb.Entry) []*raftpb.Entry { return joinLogs(old, cur) }
