// Package zkserver runs a real Apache ZooKeeper — the one Debian packages
// (`zookeeper`, jars from `libzookeeper-java`) — as a test fixture and as the
// configuration center of a chainraft run. Tests and runs use this real
// server, never a fake: the chain store's safety depends on ZooKeeper's
// session and ephemeral-node semantics, which a fake would only imitate.
//
// # How it starts ZooKeeper
//
// It runs `java -cp <zookeeper.jar>:<slf4j-simple.jar>:<conf dir>
// org.apache.zookeeper.server.quorum.QuorumPeerMain <zoo.cfg>` directly, with
// no zkServer.sh, no systemd and no pidfile, as a child process from
// internal/proc (own process group, Pdeathsig, killed on the harness's
// signals). Debian's zookeeper.jar carries a manifest Class-Path naming its
// dependencies, so the jar alone is a complete server class path; slf4j-simple
// gives it a logging binding that writes to stderr, which proc appends to
// <Dir>/zk/<i>.log (Debian ships no binding, and logs would otherwise vanish).
// QuorumPeerMain with no server.N lines runs standalone; with them it runs as
// one member of the ensemble. Each server gets:
//
//   - free loopback ports (client, quorum, election), chosen once and kept
//     across restarts, since the other members' configs name them;
//   - <Dir>/zk/<i>/data with its myid (i+1: ZooKeeper ids start at 1; the API
//     and file names use the 0-based index i);
//   - the admin server disabled (it would bind :8080) and the four-letter
//     words ruok, srvr, stat, mntr and conf enabled: srvr is how readiness and
//     the leader are found, without a client session;
//   - maxClientCnxns=0, because every chainraft node and client connects from
//     127.0.0.1 and the default of 60 per address is easily reached;
//   - -Dzookeeper.forceSync=no unless Config.ForceSync: tests that never crash
//     the machine need not pay a txn-log fsync per write (a SIGKILLed server
//     still has every write in the OS page cache).
//
// Config.PeerAddrs gives each server its own view of its peers' quorum and
// election addresses: a server binds those of its own server.N line and
// dials those of the others, so the zookeeper store can route every
// server-to-server link through the nemesis's proxies. Config.CPUs gives
// each server a CPU quota, as --node-cpus gives any store's nodes. Both are
// off by default, and the chain store's ensembles are unchanged.
//
// A server serves when `srvr` reports a Mode line (standalone, leader,
// follower); `ruok` answers imok earlier than that, so it is not used. Start
// returns once every server serves, or fails by its deadline with the tail of
// the server's log in the error.
//
// # Goroutines
//
// None of its own: the processes' waiters belong to internal/proc. Every
// network call (the four-letter words) has a deadline.
//
// # Invariants
//
//   - every server index keeps its ports and data directory for the
//     Ensemble's life, so Restart(i) rejoins as the same member;
//   - after Close, no server process of the Ensemble is running (Close kills
//     restarted servers too, and may be called again).
package zkserver
