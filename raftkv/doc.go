// Package raftkv is the raft side of chainraft: a linearizable key-value
// store on go.etcd.io/raft/v3 (v3.7, the pointer API), run as real node
// processes by the harness. It mirrors package chain noun for noun — Core,
// Node, Storage, Transport, Client — so the two can be read side by side;
// design.md walks through roles, the write and read paths, persistence,
// reconfiguration and crash recovery.
//
// # Core and Node
//
// [Core] wraps raft.RawNode, the raft log mirror raft reads from
// (raft.MemoryStorage), the state machine (fsm.go: data, dedup table,
// membership with addresses) and the bookkeeping of local requests. It has
// no goroutines, clock or I/O: the tests drive several Cores over an
// in-memory network with chosen message loss, crashes and restarts.
//
// [Node] owns one Core from one goroutine (run, started by StartNode;
// [Run] is the process's main around it). It selects over the ticker,
// inbound peer messages, proposals, reads, membership requests, transport
// reports, status requests and stop, folds whatever else is queued into the
// same turn (so one Ready, one fdatasync and one round of messages serve
// many requests), and handles each Ready in etcd raft's order: persist
// (entries, hard state, snapshot; fdatasync when MustSync), send, apply and
// reply, Advance. Every queue is bounded: a full request queue answers
// ErrOverloaded (definite: nothing was proposed), a full peer queue (4096
// messages or 64 MB) drops the message (raft retransmits) and reports the
// peer unreachable. Core drops repeats of a probing append (same index and
// term to the same follower within 2 ticks): etcd raft resends the whole
// window on every heartbeat response from a probing follower, and a
// follower resumed after a pause answers hundreds of held ReadIndex
// heartbeats at once — unthrottled, that flood starved the leader's loop
// for seconds (design.md, Crash recovery).
//
// # Several groups (multi-raft)
//
// One raft group puts every write and every read through one leader, so
// adding nodes adds replicas, not capacity. With RunConfig.Groups = G > 1
// the keys are split over G groups by kv.ShardOf — the map chain's
// ChainOf uses, so C chains and C groups split the same keys alike — and
// group g lives on GroupMembers(nodes, size, g): the nodes g, g+1, ...
// (mod N), as chain g's replicas are. A process is a [Host]: one Node per
// group it is a member of, each with its own Core, loop, ticker and
// storage (DataDir/group-<g>), all sharing one Transport and one gRPC
// server. A peer message carries its group (MessageBatch.groups, absent
// for a single group, whose wire format is unchanged) and a request names
// its group (Request.group); a process with no replica of it answers
// CODE_NOT_MEMBER and the client tries the next node. Each group prefers
// its first member as leader (CoreConfig.Preferred): that member campaigns
// soon after it starts, and a leader hands leadership back to it once it
// is caught up, so the leaders stay spread as the chains' heads are.
// Membership changes are single-group only.
//
// # Error classes
//
// A request the node refuses before proposing (not the leader, raft dropped
// it, queue full, malformed) is definite. Once proposed, a lost leadership,
// a timeout or a stop is indeterminate (wraps [ErrUnknown]): the entry may
// still commit under the next leader. [Client] retries under the same
// request id until a definite answer or its deadline; the dedup table in
// the replicated state (last sequence and its result per client id, also in
// snapshots) makes a retried write apply at most once and return its first
// result. Reads have no effect, so their failures are definite.
//
// # Reads
//
// Reads go to the leader and use ReadIndex (ReadOnlySafe): a heartbeat round
// confirms leadership, then the read waits until applied >= the read index.
// All reads queued while a round is in flight share the next round, so a
// round costs one heartbeat for hundreds of reads. Every round has a fresh
// request context and a timeout in ticks (raft drops read requests
// silently). Lease mode (ReadOnlyLeaseBased, which requires CheckQuorum)
// skips the round and trusts the leader's lease: faster, and unsafe under
// process pauses or clock skew — a deliberate negative control.
//
// # Storage: a write-ahead log of our own
//
// [Storage] is a data directory with three files in internal/wal's framing
// (shared with the chain store): "snap", the newest snapshot, and "vote",
// the term and vote, each a checksummed file replaced atomically
// (temporary file, fsync, rename, directory fsync); and "wal", an
// append-only log of checksummed records [type][protobuf] holding raft
// entries and hard states after the snapshot. The vote file is written
// before any hard state that carries a new term or vote (two fsyncs per
// election, none per write), so a cut of the log's last record can never
// take term and vote with it. One Ready is one write(2) and at most one fdatasync. We chose
// this over bbolt because the raft log is append-only and truncated only at
// its tail: bbolt's copy-on-write B+tree would cost page writes, a meta page
// and two fsyncs per transaction for what is a sequential append, and
// its durability knobs would hide the one thing the harness wants to
// measure — the fsync on the commit path. A bad record is cut on open only
// when nothing valid follows it (a torn final write, internal/wal/doc.go
// argues why that is the only provable case); damage with a valid record
// after it is lost durable state, and the node refuses to start
// ([ErrCorrupt], naming the file and offset). A crash between a leader
// snapshot's rename and the log rewrite leaves the old log behind the new
// snapshot; OpenStorage keeps its entries above the snapshot only if they
// continue it (logMatchesSnapshot) and otherwise rewrites the log empty.
// Every SnapshotEvery applied entries that carry as many bytes as the
// state (Core.snapshotDue: a big state is not rewritten for a few small
// writes), or SnapshotBytes of them, the node snapshots the state machine and rewrites the log to the entries after
// the compaction point (at most SnapshotKeep entries and SnapshotBytes/8
// bytes stay for followers that lag a little; further behind, they get the
// snapshot). The applied index is the snapshot's index: the state machine
// is rebuilt from the snapshot plus the committed entries raft redelivers
// (Config.Applied = snapshot index), and deduplication makes that replay
// exact.
//
// A snapshot is built off the loop (Core.StartSnapshot, SnapshotJob): the
// loop copies the state machine's maps (their values are immutable
// strings), a goroutine marshals the copy and writes it beside the durable
// snapshot ("snap.next", fsynced), and the loop then renames it into place
// and rewrites the log — or drops it, if a snapshot from the leader
// overtook it. On the loop, a gigabyte's marshal and write stopped the
// node for seconds: no heartbeats, elections everywhere. raft's
// MemoryStorage keeps its snapshot without the data, which the state
// machine already holds once; a leader's snapshot sender reads the data
// from the durable file piece by piece as it sends (Storage.OpenSnapshot),
// and hands on the last piece only once the file's checksum has held.
// The snapshot is written the same way, streamed from the copied maps to
// the file (Storage.PrepareJob): at no point does a node hold a second,
// marshalled copy of its state.
//
// # Seeded bugs
//
// For the harness's detection tests, NodeConfig.Bug (`chainraft node
// --bug`) plants one of three classic mistakes (bugs.go): local-read (reads
// from the receiving node's state, no ReadIndex), early-ack (a write
// acknowledged on proposal) and no-dedup (the dedup table skipped). Off by
// default; ParseBug is the one place that accepts names, and each planted
// branch is marked SEEDED BUG and guarded by a flag only it sets.
//
// # Goroutines
//
//   - Node.run: owns the Core, the Storage and the waiters; ends on Stop or
//     on a storage error (then Node.Err says why and the process exits).
//   - Transport: one sender per peer, owning that peer's gRPC client stream
//     and queue, and one snapshot sender per peer owning its chunked
//     transfers (one queued at a time); both stopped by SetPeers (peer
//     removed) or Transport.Stop (from run's exit, or Host.Stop when the
//     groups share it).
//   - Host: one watcher per group's Node, ending when that node's loop
//     does (Host.Stop stops every loop, then the transport).
//   - gRPC server goroutines (owned by the grpc.Server that Serve returns,
//     stopped by its Stop): client requests block on a reply channel or
//     their deadline; peer streams decode messages and hand them to run
//     without blocking; a chunked snapshot is assembled on its stream's
//     handler, within the sender's deadline, and waits for room in run's
//     queue (until that deadline) only once whole.
//
// # Snapshots in pieces
//
// A MsgSnap carries the leader's whole state, so it grows with the data:
// at 1 GB it is past what one gRPC message may carry (256 MB here) and
// would hold the peer's stream, and every heartbeat behind it, for as long
// as it travels. One whose data is larger than a chunk (4 MiB, package
// internal/chunk) goes to the peer's snapshot sender instead: the message
// without its data, then the data itself in 4 MiB pieces, over a Snapshot
// stream of its own, the data shared with raft's storage rather than
// copied. The receiver steps it into raft only once every announced byte
// came and the sender closed the stream, then answers; the sender reports
// the snapshot finished or failed to raft on that answer. The receiver
// refuses a transfer above 2 GiB at its first piece, holds at most 4 GiB
// of transfers at a time, and accepts only a stream whose deadline is
// within 10 s plus its size at 8 MiB/s: a transfer whose sender died or was
// cut off ends at that deadline and its pieces are dropped, never applied,
// and raft, told it failed, sends a new one. The sender gives a transfer
// up sooner when one piece waits 5 s to be sent (the receiver stopped
// reading), so that raft does not wait the whole deadline to try again.
//
// # Invariants (violations panic)
//
//   - entries apply in index order with no gap, each exactly once;
//   - a committed entry decodes as a command or a conf change;
//   - a received snapshot moves the applied index forward;
//   - the hard state's commit never exceeds the last recovered entry.
//
// # One shape with chain
//
// Package chain is built to the same plan (its doc.go has the same table),
// so that `diff chain/node.go raftkv/node.go` (and core.go, storage.go,
// client.go, bugs.go, run.go) shows what differs between the protocols,
// not between two authors' habits. The shared names:
//
//	concept            both packages                              raftkv's own part
//	-----------------  -----------------------------------------  -------------------------------
//	recovered state    Recovered, from OpenStorage                Snapshot, HardState, Entries
//	core config        CoreConfig{ID, ..., SnapshotEvery, Bug}    Bootstrap, raft's ticks, Lease
//	core constructor   NewCore(cfg, rec) (*Core, error)
//	core input         Step(m) error, Tick, Propose, Read         AddNode, RemoveNode, Report*
//	core output        HasReady, Ready() Ready, Advance()         Apply() []Reply between them
//	node lifecycle     StartNode(cfg) (*Node, error), Stop() error, Done, Err
//	node config        NodeConfig{ID, DataDir, NoFsync, TickInterval, Logger, Bug}
//	gRPC face          Serve(n, lis) (*grpc.Server, <-chan error) (server.go)
//	storage            OpenStorage(dir, ..., noFsync) (*Storage, *Recovered, error); Save, Close
//	transport          Transport: newTransport, Send(m) error,    SetPeers (the membership is
//	                   Stop, MessagesSent                         one list, replaced whole)
//	client factory     Dial(ctx, ClientOptions) (*Conns, error),  ClientOptions.Members
//	                   Conns.NewClient(), Conns.Close
//	client timeouts    ClientOptions.RequestTimeout, AttemptTimeout
//	seeded bugs        bugs.go: KnownBugs, ParseBug, ErrUnknownBug; the unexported bugs struct
//	                   parsed in NewCore, copied by the Node (no client half here)
//	process main       run.go: Run(ctx, RunConfig) error; the driver's NodeMain parses flags
//	errors             errors.go: ErrStopped, ErrCorrupt, ErrUnknown and the store's own
//
// Apply is raft's own step: committed entries apply only after the Ready
// is durable and sent, where chain applies on receipt and its replies ride
// in the Ready. Apply and Advance take no argument: the Core remembers the
// Ready it handed out (etcd raft's RawNode.Advance ignores its argument
// too). Dial takes a ctx although raftkv's connections open lazily: chain's
// Dial waits for ZooKeeper, and one signature keeps the drivers alike.
package raftkv
