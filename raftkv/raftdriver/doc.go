// Package raftdriver is the raft store's driver: everything the harness
// does to raftkv goes through it, so that the harness names no store. Its
// init registers the driver as "raft" (harness.RegisterDriver);
// cmd/chainraft imports the package for that side effect alone.
//
// # Why it is shaped so
//
// The driver is a value with no state of its own but settings (Driver),
// because the harness keeps one registered value and asks it for clusters;
// each Start returns a Cluster holding everything that run owns. The
// capabilities the harness finds by type assertion are split by what they
// describe: the store (Driver: roles and their jobs, fault kinds, read
// modes, seeded bugs, the node's main) or one running cluster (Cluster:
// clients, the nemesis's Target, replica comparison, CPU and message
// meters). Tests get the concrete *Cluster from StartCluster to reach what
// the harness does not need: the leader, node status, membership by hand.
//
// The processes, their ports, the nemesis's proxies, kill / pause /
// restart and CPU accounting are proccluster's, shared with every driver
// of real processes; this package says only what is raft's: the command
// line of `chainraft node raft`, the peer wiring, what "serving" means (a
// leader answers a linearizable read), who holds each role, and how a
// member fault changes the membership.
//
// Peer wiring. Through the nemesis's network every node dials every other
// through a proxy of its own, so that a partition can cut one link. A raft
// node learns a new member's address from the log — one address for every
// dialer, which would bypass the per-link proxies — so the nodes also get
// "+id=addr" address-only entries for the spare ids (env.SpareNodes, wired
// at start): the proxy they dial if the log ever adds that id. Without the
// network there are no proxies and an added node takes any free port.
//
// Power. Power faults are proccluster's too (data directories on
// internal/powerfs when env.PowerFS); the driver only declares the kind.
// Its own seeded bug no-fsync runs the nodes with --no-fsync instead of
// passing --bug: raftkv's switch is the mechanism, the harness's table
// (SeededBugs) names it a bug, exposed by a power cut of every node.
//
// Groups. --groups G (Driver.Groups) splits the keys over G raft groups of
// --group-size members (default 3), placed and led as the chains are
// (raftkv's doc.go, Several groups); 1, the default, is the plain store of
// one group of every node. The roles are group 0's: "leader" is group 0's
// leader, "follower" its other members. Every group must serve a read
// before Start returns, the replica comparison checks each group, and the
// message counter is per process (the groups share a transport). There
// are no member faults with several groups (FaultKinds leaves them out,
// AddNode and RemoveNode refuse).
//
// Membership. Raft never reuses a node id: a member fault removes a node by
// conf change and its heal adds a fresh id with an empty data directory,
// which catches up from the leader. Target records the replacement
// (nemesis.Replacer) so later faults can target the new node.
//
// # Goroutines
//
// The package starts none in the harness process beyond what its parts
// own: each node process has the waiter goroutine internal/proc gives it,
// stopped by Cluster.Close (through proccluster, which kills every
// process), and the gRPC connections of raftkv.Conns, closed by the same
// Close. Start, the nemesis's calls and the meters run on their callers'
// goroutines.
//
// In a node process (NodeMain) the node's goroutines are raftkv's, stopped
// by Node.Stop; NodeMain adds one, to run the gRPC server's GracefulStop
// at shutdown, which ends by itself or, past its grace, when Stop cuts the
// calls in flight off; NodeMain waits for it either way.
package raftdriver
