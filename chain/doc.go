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
//     send before replying, then Advance.
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
//     writes to the head, reads to the tail, retries with the same request
//     id, definite/indeterminate errors as package kv defines them.
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
// # Goroutines and owners
//
//   - Node.run: started by StartNode, stopped by Node.Stop; ends on its own
//     on a storage error (then Node.Err says why and Run returns it).
//   - Transport: one sender per peer, stopped by Transport.Stop (Node.run
//     stops it on exit) or when a peer's address changes.
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
