// Package chain is chainraft's chain-replication store (van Renesse &
// Schneider, OSDI 2004) with ZooKeeper as its configuration center. See
// design.md for the protocol; this comment is about the code's shape.
//
// # Pieces
//
//   - [Core] is deterministic: no goroutines, clock or I/O. It holds every
//     chain a node may belong to and is driven by Step (peer messages),
//     Propose and Read (client requests), Tick, SetConfig and SetSession;
//     it emits a [Ready] of things to persist, messages and replies.
//   - [Node] is the one goroutine (run, started by StartNode) that owns a
//     Core. gRPC handlers ([Serve]), the
//     transport and the coordinator reach it through bounded channels. It
//     honours the Ready contract: persist (fsync) before anything is sent,
//     send before replying, then Advance. Its persister goroutine saves
//     the entries of every chain in one fdatasync and sends after it;
//     snapshots are written by a goroutine each (compactions one at a time), and hold
//     back only their own chain's output, and only when they replace its
//     history (design.md, Persistence). A heartbeat goroutine tells the
//     node's predecessors, while its own output is held back, that it is
//     alive (acks marked lagging). All three end with the loop.
//   - [Storage] is the node's durable state; [Transport] the per-peer FIFO
//     senders; [RunCoordinator] the ZooKeeper side (registration, config
//     watches, lease, master election and the master's [Reconcile]).
//   - Failure detection on the data path: the Core suspects a successor
//     that is silent, or behind without progress, for the detection time
//     and puts its suspects in the Ready; the Node hands the latest set (and
//     the epochs it adopted while deposed) to the coordinator, which
//     publishes them in the node znode; the master's detector (detect.go)
//     turns the reports into broken links, takes out a [Cover] of them, and
//     runs [ReconcileExcluding]. design.md has the policy and the safety
//     argument: a tail taken out while its session lives is deposed, and
//     the new tail neither commits nor serves until it stepped down.
//   - [Conns] (from [Dial]) and [Client] are the client side: configs from ZooKeeper,
//     writes to the head, reads to the tail (or, in CRAQ mode, to every
//     member in turn), retries with the same request id,
//     definite/indeterminate errors as package kv defines them.
//
// # Why each client caches its configuration
//
// Conns watches ZooKeeper for the whole process, but a Client routes by
// its own cached copy of each chain's configuration, re-read from Conns
// only after a failed attempt (rejection or timeout) or when the copy is
// 2.5–5 s old (configMaxAge, jittered). An instantly shared view would hide
// a class of faults: a node that keeps answering after the master replaced
// it (BugStaleTail) would never be asked, since every client would leave it
// the moment the new configuration appears. Real clients learn of a change
// by being rejected, so the store must be correct against clients that lag:
// a correct node that is not the tail of the client's epoch, or has no
// session, rejects, and the client refreshes and retries. The cost for a
// correct store is one failed attempt per client per reconfiguration.
//
// # CRAQ reads
//
// `--read-mode craq` (ClientOptions.ReadMode) is CRAQ's apportioned
// queries (Terrace & Freedman, USENIX ATC 2009): the client sends each read
// to the chain's members in turn, and any member answers ([Core.ReadAny]).
// A key's versions are numbered by the chain's sequence. Every node keeps,
// next to its newest state, the versions of each key written above its
// committed sequence (dirty), with the one before them (clean); the ack
// flowing back up from the tail raises committed, and commit cleans the
// versions it covers. A member answers a clean key from its state; for a
// dirty key it asks the tail for its committed sequence Q (a version
// query: a number, not a read; one in flight per chain, covering every
// read that arrived before it left) and answers with the key's newest
// version at or below Q, which it holds. One number per chain instead of
// the paper's per-object version answers every key of the chain, and the
// key's committed version is the newest at or below it.
//
// Why a clean read at a member that is not the tail is linearizable. It is
// answered when the Core reads the state, within the request. (1) The value
// was committed before that: a version is clean only once committed covers
// it, and committed is learned only from the tail (acks, and appends
// relaying them), so the tail had applied it. (2) No newer write of the key
// had committed: a write reaches the tail through every member before it,
// so one the tail committed before the read is held here, and would make
// the key dirty. (2) needs this node upstream of the tail that commits, in
// a chain that holds everything committed: it must be a member of its
// current epoch (not a joiner, not removed), synced in it (an unsynced
// member may follow a node that had not caught up when the chain changed:
// the rotation case in design.md), hold a session and a lease (the Node
// drops read replies after the lease, as at a tail), and know which of its
// keys are dirty: a snapshot installed from the predecessor or restored
// from disk has no versions, so until committed passes its last sequence
// (unsure) every key counts as dirty.
//
// Why a dirty read is. The query leaves after the read arrived and the
// answer comes before the reply, so the tail's state at Q — everything
// committed then — is a state within the read. The tail answers as it
// would serve a read (same epoch, synced, not fenced; its Node sends the
// answer only while its lease holds; otherwise it refuses and the read
// fails, definitely). This node holds every version above its committed,
// and Q is at most its last sequence (it is upstream of the tail); if
// committed has passed Q meanwhile, the version at committed answers: the
// tail committed it after answering and before this node learned it, also
// within the read.
//
// Across reconfiguration. A read waiting for an answer fails when its
// chain's epoch changes (the client retries; a read has no effect), and
// answers are taken only from the tail of the node's current epoch, at that
// epoch. A member that stays keeps its dirty versions: everything a member
// holds reaches the new tail (resent from the Sent list, or committed by
// the new tail on adoption), and the ack cleans it. A node that leaves the
// chain wipes its state and its versions. A new tail after a state
// transfer holds a snapshot without versions; as tail it serves from its
// state, and as a later middle it asks the tail for every key until its
// committed passes the snapshot.
// A new tail fenced behind a deposed one refuses version queries as it
// refuses reads. A node without a session, past its lease, outside the
// chain, joining it, or unsynced answers nothing.
//
// A member removed while its session lives (taken out by the master's
// detector, or moved to restore the rotation) would keep answering clean
// reads at its old epoch until its ZooKeeper watch brings the new
// configuration, while the new chain commits writes it never sees. With
// tail reads only the tail answers, so the master deposes only a removed
// live tail (Config.Deposed); with CRAQ reads it deposes every member it
// removes while live, and the new tail commits nothing until each has
// reported stepping down (or lost its session). That fence is why CRAQ is
// the cluster's setting (Placement.ReadAny, the node's --read-any, set by
// the driver from --read-mode craq) and not only the clients': a
// tail-read cluster does not pay for it, and its members refuse CRAQ
// reads (TestCraqRemovedLiveMiddleIsDeposed,
// TestReadAnyRefusedWithoutCraqPlacement).
//
// # Goroutines and owners
//
//   - Node.run: started by StartNode, stopped by Node.Stop; ends on its own
//     on a storage error (then Node.Err says why and Run returns it).
//   - Transport: one sender per peer, stopped by Transport.Stop (Node.run
//     stops it on exit) or when a peer's address changes; it starts the
//     peer's snapshot sender and waits for it on the way out. A snapshot
//     larger than a chunk goes to that one, in pieces over a stream of its
//     own, while the sender holds back that chain's later messages only
//     (design.md, Reconfiguration); each transfer has a watcher goroutine
//     that cancels it if the transport or peer stops, ended with it.
//   - gRPC server goroutines (the grpc.Server's, stopped by its Stop):
//     a chunked snapshot is assembled on its handler's goroutine, within
//     the sender's deadline, and only the whole message goes to Node.run.
//   - RunCoordinator: config watchers (one per chain), the lease loop, the
//     master campaign (and the master's watch forwarders), a closer; all end
//     when its ctx ends and RunCoordinator waits for them. A master stopped
//     by its ctx does not resign: closing the session deletes its election
//     znode, and a resign on the closed connection retried until
//     zkrecipes' release deadline, past the harness's SIGTERM grace.
//   - The master's detector belongs to the master's loop (one per term);
//     the node's report (suspects, stepped) is written by the loop and read
//     by the coordinator under a mutex, with a one-slot kick channel:
//     level-triggered, so nothing is lost when the coordinator lags.
//   - Conns: one config watcher per chain, a refresher, a closer; Conns.Close.
//     A Client starts no goroutine: its cache is refreshed on its own calls.
//
// # Invariants (checked; a violation panics)
//
//   - A chain's entries apply in sequence order without gaps.
//   - A successor never reports holding more than its predecessor in the same
//     epoch (Update Propagation Invariant).
//   - A restored log replays without gaps after its snapshot.
//
// Kept by the protocol (tested in detect_test.go): a tail whose
// configuration lists a deposed node neither commits nor answers reads, and
// the master drops the entry only after the node adopted the removing epoch
// or lost its session.
//
// Kept by construction (not checked at run time): committed ≤ lastSeq, and
// the Sent list holds committed+1..lastSeq (less after a snapshot).
//
// # Why these choices
//
// The head replies (after the tail's ack reached it) rather than the tail,
// because it holds the client's call; it is still linearizable, as the reply
// follows the commit. Every node applies on receipt, so a new head after a
// head failure already has the state, and a joiner's copy is one snapshot of
// the tail. Safety beyond the paper's fail-stop model comes from epochs on
// every message, the master's fenced Multi writes, no service without a
// session, the lease against pauses (checked on the loop after the Core read
// the state, not only when a request is admitted, and sized from the
// session timeout ZooKeeper granted), the synced latch at a new tail, and
// replies at a chain of one that wait for its own fsync.
//
// # One shape with raftkv
//
// Package raftkv is built to the same plan, so that `diff chain/node.go
// raftkv/node.go` (and core.go, storage.go, client.go, bugs.go, run.go)
// shows what differs between the protocols, not between two authors'
// habits. The shared names:
//
//	concept            both packages                              chain's own part
//	-----------------  -----------------------------------------  -------------------------------
//	recovered state    Recovered, from OpenStorage                per chain: Chains []RecoveredChain
//	core config        CoreConfig{ID, ..., SnapshotEvery, Bug}    Chains, DetectTicks
//	core constructor   NewCore(cfg, rec) (*Core, error)
//	core input         Step(m) error, Tick, Propose, Read         SetConfig, SetSession, Compact
//	core output        HasReady, Ready() Ready, Advance()         replies ride in the Ready
//	node lifecycle     StartNode(cfg) (*Node, error), Stop() error, Done, Err
//	node config        NodeConfig{ID, DataDir, NoFsync, TickInterval, Logger, Bug}
//	gRPC face          Serve(n, lis) (*grpc.Server, <-chan error) (server.go)
//	storage            OpenStorage(dir, ..., noFsync) (*Storage, *Recovered, error); Save, Close
//	transport          Transport: newTransport, Send(m) error,    SetPeer (peers only grow: a node
//	                   Stop, MessagesSent                         serves many chains)
//	client factory     Dial(ctx, ClientOptions) (*Conns, error),  ClientOptions: ZK, Root, Chains
//	                   Conns.NewClient(), Conns.Close
//	client timeouts    ClientOptions.RequestTimeout, AttemptTimeout
//	seeded bugs        bugs.go: KnownBugs, ParseBug, ErrUnknownBug; the unexported bugs struct
//	                   parsed in NewCore, copied by the Node; a client half via ClientOptions.Bug
//	process main       run.go: Run(ctx, RunConfig) error; the driver's NodeMain parses flags
//	errors             errors.go: ErrStopped, ErrCorrupt, ErrUnknown and the store's own
//
// Step returns an error in both: raft's does, and chain's reports a message
// that could never be this node's (misrouted), while the protocol's normal
// leftovers (another epoch, no session) are dropped without one. Advance
// takes no argument in both: the Core remembers the Ready it handed out,
// so a caller cannot acknowledge a stale or foreign one, and etcd raft's
// own RawNode.Advance ignores its argument for the same reason.
package chain
