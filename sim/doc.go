// Package sim is chainraft's deterministic simulator: a store's real
// deterministic cores run in one simulated world per seed, under thousands
// of seeded fault schedules a minute, and every failure replays from its
// seed. It follows FoundationDB's simulation and TigerBeetle's VOPR: the
// seed decides the network's weather, the cluster's size, the workload and
// every fault; a safety phase injects faults while the checker's rules
// judge every reply; a liveness phase then stops all faults and gives the
// cluster a bounded simulated time to make progress.
//
// # Why it is deterministic
//
// The same seed gives the same history.jsonl, byte for byte, because:
//
//   - One goroutine. A seed's world runs start to end on the goroutine that
//     called Run: the cores, the network, the disks, the clients, the fault
//     injector and the checker's input are all driven from the one event
//     loop (world.runUntil). Seeds run in parallel (RunSeeds), but never
//     share anything but the read-only code.
//   - One seeded source. Every random choice — latencies, losses,
//     duplicates, fault kinds, targets and timing, disk tears, client ids,
//     the workload — comes from the world's PCG source, seeded from the
//     seed, in an order fixed by the event order. The workload generator
//     and the partition shapes take seeds drawn from it.
//   - Simulated time that jumps. The clock is a number of nanoseconds that
//     moves only when the next event runs; events at the same instant run
//     in the order they were scheduled (a sequence number breaks ties), so
//     the heap's layout never decides an order.
//   - No map iteration reaches the output. Nodes and steps live in slices;
//     where a map must be walked (the requests waiting on a crashed node,
//     the cuts of a partition) its keys are sorted first. raftkv's Core and
//     etcd raft sort where they iterate (raft's progress tracker visits ids
//     in order). chain.Core lists one commit's replies in map order; the
//     simulated chain node sorts them by token (their order means nothing
//     to the real Node), and the simulated ZooKeeper drops ephemerals and
//     ends watches in path order.
//   - No wall clock or real I/O in the simulated path. Disks are in memory
//     (raftdisk.go), the network is a heap of closures (net.go), and
//     nothing in a world reads time.Now. The one hole etcd raft leaves — it
//     draws election timeouts from crypto/rand — is closed by entropy.go,
//     which routes crypto/rand reads made on a world's goroutine to that
//     world's source. Wall time appears only outside the simulated path:
//     how long a seed took, and the run directory's name and start stamp.
//
// The checker (histories.Check) runs after the world ends, on its history
// alone; its budget is wall time, so a history too hard to check within it
// is "unknown" — never "ok" — and exits 3, like a real run.
//
// # The world
//
//   - Clock and timers: world.go. Each node's ticker is an event repeating
//     at its tick interval times its clock rate (the skew fault changes the
//     rate: a fast or slow clock), started at a random phase.
//   - Network: net.go. Every message takes a drawn delay (some much longer,
//     so messages overtake each other), may be lost or duplicated (the
//     weather is per seed), and meets the cuts in force when it arrives.
//     Clients are never cut, as in the nemesis. A node that is down refuses
//     connections: raft hears its peer is unreachable, a client's attempt
//     fails at once.
//   - Disks: raftdisk.go. raftkv.Storage's three files with what was written
//     and what was synced; a kill keeps the page cache, a power loss keeps
//     only what was synced plus a random prefix of the unsynced tail of the
//     log (the torn final write). The torn-write fault cuts the power in the
//     middle of a Ready, at each step of Storage.Save in turn.
//   - Crash and restart: a restarted node's Core is rebuilt by raftkv.NewCore
//     from what its disk recovers, exactly as StartNode rebuilds it from
//     OpenStorage.
//   - Faults: faults.go. The nemesis's kinds (kill, pause, partition in every
//     shape of nemesis.PartitionGrudge, delay) and the simulator's own
//     (torn-write, one-way cuts, clock skew), and power (as the nemesis
//     has it: only what was synced survives), drawn with
//     overlaps; roles (leader, follower, any, minority) are resolved at
//     injection, as the nemesis resolves them. Each injection and heal is
//     a nemesis.Event, written to nemesis.jsonl.
//
// # The raft store
//
// raft.go drives raftkv.Core the way raftkv.Node does — each event, then
// every Ready in raft's order (persist, send, apply and reply, advance),
// MsgApp and heartbeats sent before the fsync when the term and vote are
// unchanged, snapshots built off the loop (the log rotated when one starts,
// the snapshot put in place up to 20 ticks later unless one from the
// leader overtook it, a crash in between losing it) — with the two seeded
// bugs that live in Node (local-read, early-ack) planted at the same
// places; no-dedup lives in the Core and is planted by CoreConfig.Bug.
// raftclient.go is raftkv.Client on the simulated clock: the shared leader
// guess, the rotation, retries under one request id, and the same rule for
// when a failure is indeterminate. Half the seeds snapshot every few dozen
// entries, so compaction and MsgSnap are exercised.
//
// # Checks
//
// A seed fails when its history is not linearizable (histories.Check), when
// no write and no read called after the faults stopped completed ok within
// Options.LivenessBound ("no progress"), when the replicas do not agree
// once the cluster is quiet ("replicas diverge": every node up, applied =
// committed, the same applied index and data digest), or when a core
// panics (a broken invariant).
//
// # What is not the real code
//
// The workload's operations and the mapping of errors to outcomes come
// from the harness's own stage (harness/workload: Generator, OutcomeOf), so
// a seed draws the same operations as a real run. Two pieces still mirror
// code instead of calling it, because those packages offer no seam: the
// recorder (histories.Recorder reads the wall clock) and raftkv.Node's
// loop and errorCode (they run on goroutines and gRPC). Each copy says what
// it mirrors; giving histories.Recorder a clock would remove the first.
//
// # The chain store
//
// chain.go runs the chain store's real code: a chain.Core per node, driven
// as chain.Node drives it (ticks, the Ready's reports, what need not wait
// for the fsync, the Save, then the rest; the lease and session checks on
// requests and read replies, with the seeded stale-tail bug planted where
// Node has it), and a chain.Coordinator per node on a session of the
// simulated ZooKeeper (zk.go) — registration, lease, configuration
// watches, reports, the election (zkrecipes.Candidacy) and, on the winner,
// the master with its detector. The coordinator is a state machine that
// reads no clock (chain/coordinator.go): the simulator steps it on every
// session event and fired watch (zkSession.notify), on the node's reports,
// and at the time its last step asked for, exactly as RunCoordinator does
// in a node process. chaindisk.go is chain.Storage's files (snapshots with
// their generations, one log of every chain) with what was synced; a
// torn write cuts a Save after some of its snapshot replacements or
// between the log's write and its fsync. chainclient.go is chain.Client
// and its Conns on the simulated clock: the configuration cached per
// client and refreshed on doubt, the retries, head-read's client half, and
// the rule for an indeterminate write. With --read-mode craq the clients
// read at the chain's members in turn and the nodes answer by
// Core.ReadAny; version queries go out at once and the tail's answers only
// while its lease holds, as Node sends them.
//
// The chain store's own faults: zk-partition (a node cut from ZooKeeper:
// the client library reports Disconnected, the session expires after its
// timeout, the connection gets a new session once back), and pause as a
// stopped process has it: the server stops hearing the session, and the
// stopped process notices what happened to it only after it resumes,
// after running the requests that queued meanwhile. A crash leaves the
// session to expire at the server, and the restarted node waits for its
// old registration to go. Chain replication's links are TCP streams, so
// the network keeps them in order and never duplicates (a lost message is
// a reset stream; the Core resends). The end check asks that every
// chain's configuration be whole and its members agree, within 40 s of
// quiet: the master holds a suspected node out for up to 30 s.
//
// What the simulator found in chain, each kept as a regression seed
// (chain_test.go): a joiner promoted past a member that was being held out
// (seed 35), and a new tail left without a predecessor before it caught
// up (seed 427); both lost acknowledged writes, and both are fixed in
// chain.ReconcileExcluding.
//
// # Goroutines
//
// Run starts none. RunSeeds starts its workers, each running seeds one at a
// time until the seeds run out or one fails, and waits for them.
package sim
