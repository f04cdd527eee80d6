// Package nemesis injects faults into a running cluster — kills, pauses,
// partitions, ZooKeeper faults, membership changes, link delay, power
// cuts, clock steps — from seeded
// schedules that are recorded and can be replayed, and measures how long the
// store takes to recover from each.
//
// # Faults are data
//
// A [Fault] is a record (kind, role, shape, delay, seed), never a closure, so
// that a schedule can be generated from a seed, written to nemesis.jsonl, read
// back and replayed, and compared across the two stores. [Inject] turns a
// Fault into an [Injection] — the same fault with its targets resolved and
// what was applied (the grudge, the cuts, the links) — and [Heal] undoes an
// Injection. Nothing about who was hit lives outside these records, so the
// runner can heal everything at the end, in reverse order, even after its
// context was cancelled.
//
// # The Target interface
//
// The nemesis reaches the world only through [Target], which the harness
// implements for a running cluster (and [ZKTarget] for its ZooKeeper
// ensemble). It is deliberately small: list nodes, resolve a role, kill /
// restart, pause / resume, remove / add a member, and hand out the proxied
// [Network] and the ensemble (either may be nil). The stores never import
// this package; the harness adapts them. A capability a store lacks returns
// an error wrapping [ErrUnsupported]; a role nobody holds, [ErrNoTarget]. The
// [Runner] records such a step as skipped (the event says why) and schedules
// no heal, so one schedule can run against both stores.
//
// Roles are resolved at injection, not when the schedule is made: "kill the
// leader" must hit whoever leads at that moment. The nemesis resolves "any",
// "all", "minority", "node:N" and "zk:N" itself; every other role ("leader",
// "follower", "head", "middle", "tail", "head:1" for chain 1, "master") goes
// to Target.Resolve, and the ZooKeeper roles ("zk-leader", "zk",
// "zk-minority") to ZKTarget. When a role has several holders (followers),
// one is picked with the fault's seed. The resolved ids go into the event
// next to the role spec.
//
// # The proxy: why not toxiproxy
//
// Every node→node, node→ZooKeeper and client→node connection crosses a
// userspace TCP [Proxy] on loopback, one per directed link, so faults need no
// root and no iptables. github.com/Shopify/toxiproxy/v2 was evaluated first
// and not used:
//
//   - It has no blackhole that stalls. Its "timeout" toxic reads the stream
//     and drops the bytes on the floor, and because that corrupts the TCP
//     stream, removing the toxic closes the connection (toxiproxy PR #168).
//     A real partition loses packets, but TCP retransmits them: after the
//     heal the receiver gets the bytes in order, or, if it lasted too long,
//     the connection times out. Dropping bytes mid-stream and then resetting
//     on heal is neither, and a store that survives it has been tested
//     against something no network does.
//   - It accepts a connection and dials the upstream at once, whatever
//     toxics are installed, so a connection opened during a partition is
//     established anyway.
//   - As a library it is a server: NewProxy takes an *ApiServer (logger,
//     metrics), and it pulls in zerolog, prometheus and gorilla/mux. Toxics
//     are per direction (upstream/downstream) and could have been used
//     without the HTTP listener, but the semantics above are the problem,
//     not the packaging.
//
// So the proxy is our own, about 300 lines with comments. Its semantics:
//
//   - Up is the dialer → target direction, Down the replies. A blackholed
//     direction stops reading from its source and writing to its
//     destination. Bytes already read (at most one 32 KiB chunk per
//     direction) wait in the proxy; the rest waits in the kernel's socket
//     buffers and, once those fill, blocks the sender exactly as a closed
//     TCP window would. Connections stay open, nothing is reset. On heal,
//     the held bytes are delivered in order. An end of stream or a reset
//     from one side is held the same way: a FIN is a packet too.
//   - A connection accepted while either direction is blackholed is held
//     without dialing the target until the link heals: a lost SYN or a lost
//     SYN-ACK both keep a real handshake from completing. (The dialer's own
//     connect to the loopback listener does succeed: the kernel completes
//     it before accept. The dialer sees a connection that never answers,
//     which is what a peer behind a partition looks like to an established
//     connection; a store's connect timeout never fires. Stores must bound
//     every call with a deadline anyway.)
//   - A target that refuses (a killed node) makes the proxy reset the
//     accepted connection; a reset from either side is propagated as a
//     reset (SO_LINGER 0), an end of stream as a half-close.
//   - SetDelay delays each chunk by d after it was read, in both
//     directions. A pump is one goroutine per direction, so a delayed chunk
//     also delays the chunks behind it: for the request/response traffic of
//     the stores this is the same as per-message latency.
//   - The pumps' reads and writes carry no deadline, on purpose: a stalled
//     link is the point, and Close bounds them by closing the sockets. The
//     proxy's dial to its target has a 5 s timeout.
//
// A proxy hop costs a few microseconds per traversal (BenchmarkProxyRoundTrip:
// a 64-byte request/echo round trip, which crosses the proxy twice, took
// about 4.7 µs direct and 11–20 µs through one proxy on the shared 2-core
// machine).
//
// # The network and partition shapes
//
// [Network] holds the proxies keyed by [Link] (from endpoint, to endpoint:
// "n1", "zk2", "client"). Faults speak in [Cut]s — "messages from A to B are
// dropped" — which map onto links whichever side dialed: a cut A→B
// blackholes Up on the link A→B and Down on the link B→A. Cuts and delays are
// reference counted, so overlapping faults heal independently. [Network.Wire]
// builds the full set of links for a [Topology] and returns the addresses
// each party must dial.
//
// Partition shapes follow Jepsen and are computed by [PartitionGrudge] from
// the node list and the fault's seed: isolate (the targets, by default one
// random node, against the rest), halves (first ⌊n/2⌋ sorted nodes against
// the rest), random-halves, majorities-ring (each node sees the majority
// window of a shuffled ring centred on it; directional for three or four
// nodes, as Jepsen's), and bridge (two halves joined by one node that sees
// both). Clients are never cut by a partition: as in Jepsen, the workload
// sits outside the cluster's network and reaches every node, so the checker
// sees what each side of a partition does.
//
// zk-partition cuts the targets from every ZooKeeper server and nothing
// else. Traffic among the ZooKeeper servers is not proxied; zk-kill covers
// the ensemble's own failures.
//
// # Clock faults
//
// A clock fault steps the wall clock (CLOCK_REALTIME) of the hosts its
// targets run on by Fault.Step — back or forward, 250 ms to 32 s when
// generated — and its heal steps it back, through a Target that
// implements [ClockStepper] (the harness's, when nodes run on --hosts).
// It is the only clock a harness can move from outside a Go process: Go
// reads its clocks through the vDSO, out of libfaketime's reach; the
// monotonic clock cannot be stepped, and a time namespace offsets it only
// before its first process starts. So the fault tests what it should: a
// store timing its leases on the monotonic clock rides it out, one that
// trusts the wall clock does not (raft's seeded bug wall-lease). Hosts may
// share a clock (netns hosts are one kernel); the Target steps each clock
// once. Nodes on the harness's own machine get clock faults skipped, and
// "all" never includes them: a user asks for them by name.
//
// # Schedules, nemesis.jsonl and replay
//
// [Generate] draws a schedule from a seed: a quiet period, then faults of
// the requested kinds ("all" is kill, pause, partition, zk-partition,
// zk-kill, member and power; delay and clock must be asked for; the harness narrows
// "all" to the kinds the store's driver takes, power only where FUSE can
// mount), each lasting Duration and
// spaced Interval apart (Overlap spaces the starts instead). Kinds are dealt
// in rounds, each round a seeded shuffle of every requested kind, so a run
// long enough for n faults of n kinds sees each kind once: recovery figures
// per kind are the point of a run, and independent draws leave kinds out of
// short runs. Every random choice — kind, role, shape, and each fault's own
// seed for choices made at injection — comes from the seed, so the same
// seed gives the same schedule.
//
// The [Runner] executes a schedule on the recorder's clock and writes one
// [Event] per injection and heal to nemesis.jsonl: time (ns since the run's
// start, the history's clock), step, kind, "inject" or "heal", role spec,
// resolved targets, error, skipped, and on inject lines the fault spec and
// planned offsets. [Replay] rebuilds the steps from those lines; replayed,
// roles are resolved afresh. It prints one line per event as it happens and
// [Runner.HealAll] heals what is still active, latest first, continuing past
// failures.
//
// The Runner keeps the schedule's shape when the world is slow: an
// injection that completes late (a node slow to stop, a conf change waiting
// for a quorum) shifts the rest of the schedule by its lateness, so each
// fault still lasts its Duration and the gaps stay; a heal runs to its end
// even if the run's context ends under it (a heal cut in half leaves a fault
// nothing will undo); every heal error is kept ([Runner.HealErrors]) for the
// end-of-run "healed" check. A Target whose AddMember adds a fresh node
// rather than the same one (raft never reuses ids) implements [Replacer],
// and the heal event records the new id under "added".
//
// # Recovery time
//
// [Recoveries] is a pure function of the history and the events. For each
// inject and each heal that happened (skipped or failed steps are left out):
//
//   - first read / first write: from the event to the return of the
//     earliest-returning ok get (ok put, append or cas) invoked at or after
//     it. Failed and unknown operations do not count.
//   - throughput: from the event to the start of the first 1 s window
//     (s, s+1s] in which ok operations completed at ≥ 80% of their rate
//     over the 5 s before the fault's injection (for a heal too: the 5 s
//     before a heal are the fault), looked for after the dent: the first
//     window below that rate from the event on, ending by the next event
//     of another step (the window right at the event always counts), and
//     absent if not back by then: what follows is that event's doing.
//     Measuring from the dent matters for faults whose effect is delayed (a
//     ZooKeeper session that has yet to expire, an election timeout that
//     has yet to run out): the first windows after them are whole, and a
//     search from the event would call them harmless. 0 means no dent
//     before the next event; absent means no baseline (a fault in the first
//     instant) or the history ended first. The window's start rather than
//     its end is reported so that "no disruption" reads 0, not 1000 ms.
//     First read and first write have no such fix: they time the first ok
//     operation invoked after the event, so a delayed effect reads as a
//     fast recovery there, and throughput is the figure to look at.
//
// [SummarizeRecoveries] gives per fault kind and phase the median and maximum
// of each, and how many events never recovered.
//
// # Annotations
//
// [Annotations] turns events into timeline intervals (tag "nemesis", from
// injection to heal, "kill n2 (leader)", a colour per kind) for the
// Porcupine visualizations; skipped and failed steps are instants.
//
// # Plugging in a cluster
//
// The harness, which may import everything, does the wiring; the stores
// never see this package:
//
//  1. Start a [Network] before the nodes and call [Network.Wire] with the
//     real listen addresses (node peer ports, ZooKeeper client ports, and
//     client ports if separate). Hand node a the addresses in
//     Wiring.Peers[a] (or Wiring.PeerList) for its peers,
//     Wiring.ZKConnect(a) as its ZooKeeper connection string, and give the
//     workload's clients Wiring.Clients. A node must then name its peers by
//     what they say, not by the remote address of a connection: every
//     inbound connection comes from the proxy.
//  2. Implement [Target] over the cluster's processes: Kill is SIGKILL,
//     Restart starts the node on its data directory (same ports, so the
//     proxies need no change), Pause/Resume SIGSTOP/SIGCONT, Resolve asks
//     the store who holds a role right now (and returns ErrUnsupported for
//     roles it does not have), RemoveMember/AddMember go through the store's
//     reconfiguration. Faults overlap only with the Overlap option; a Target
//     should make Restart of a running node and Resume of a running one
//     harmless.
//  3. Per run: steps from [Generate] (or [Replay] of a nemesis.jsonl), a
//     [Runner] with Clock set to the recorder's Now, Events writing
//     nemesis.jsonl, Log the console; [Runner.RunAndHeal] in the nemesis
//     goroutine. After the workload, [Analyze] (history, events) goes into
//     summary.json and [Annotations] onto the timelines.
//
// # Goroutines and owners
//
//   - Proxy: one accept loop, and per connection one goroutine that waits for
//     the link, dials, pumps Down, and one that pumps Up. The Proxy owns them
//     all; Close cancels the proxy's context (stopping dials, gate waits and
//     delays), closes the listener and every socket, and waits for them.
//   - Network owns its proxies; Network.Close closes them.
//   - Runner starts no goroutine: Run and HealAll run on the caller's.
//
// No queue: a pump holds at most one chunk.
package nemesis
