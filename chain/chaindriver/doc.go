// Package chaindriver is the chain store's driver for the harness: how to
// start a chain cluster, hand out clients, name the nodes holding each
// role, fault them, and run one node (`chainraft node chain`). It
// registers itself as "chain" from init (harness.RegisterDriver); the
// harness names no store, and cmd/chainraft imports this package for its
// side effect only.
//
// # Why it is shaped so
//
// The chain store's settings that no other store has — the number of
// chains and replicas, the ZooKeeper ensemble — are the driver's own
// flags (--chains, --replicas, --zk, --zk-servers), set on the registered
// value; they are checked as they are parsed, because the flags are on
// every run whatever the store, and again by Validate against the run's
// node count, so a placement that cannot work (--nodes below --replicas)
// is refused before anything starts.
//
// Start starts, in order: ZooKeeper (internal/zkserver, under the run
// directory, unless --zk names an ensemble), the node processes through
// harness/proccluster (ports, the nemesis's proxies for node→node,
// node→ZooKeeper and client→node links, CPU accounting, kill / pause /
// restart), then chain.Conns for the workload's clients and the
// harness's own reads of the configuration. It returns once every chain
// has its full membership and answers a read at its tail: a node alone
// cannot tell, because the master builds the chains only once every node
// has registered. The client half of a seeded bug (head-read) goes into
// a second chain.Conns, dialled last for the workload's clients, so
// readiness is judged by correct reads.
//
// Each cluster keeps its znodes under its own root, /chainraft/<run id>
// (the run directory's name, passed to the nodes as --zk-root), so runs
// against one external ensemble (--zk) never see each other's chains; on an
// external ensemble the root is cleared at start (a leftover of a killed
// harness with the same run name) and removed at Close.
//
// The cluster is a harness.HealthWatcher: Unplanned reports a ZooKeeper
// server that died without a zk-kill fault (the nemesis's kills go through
// a wrapper that marks them planned until the heal's restart), a node
// process that exited without the harness stopping it (proccluster), or a
// disk under the run directory with under 32 MiB free; the harness then
// ends the run with exit 4 instead of blaming the store.
//
// Who holds a role is read from ZooKeeper each time it is asked (the
// chain configurations, the master's election node), never remembered:
// a fault must hit whoever holds the role then. The harness's ZooKeeper
// sessions and the end-of-run digests go direct, not through the proxies:
// they observe the store and are no party to it.
//
// # Goroutines and processes
//
// The package starts no goroutine of its own. Its cluster owns: the
// ZooKeeper server processes (the zkserver.Ensemble, when started here),
// the node processes (the proccluster.Cluster, with internal/proc's
// waiter goroutine per process), and the goroutines of its chain.Conns (a watcher
// per chain, a refresher and its session's closer). Cluster.Close stops
// those, then the nodes (SIGTERM so they close their sessions, then
// SIGKILL after a 2 s grace a healthy node never needs: they exit in
// milliseconds), then ZooKeeper; a Start that fails closes what
// it started before returning. NodeMain runs chain.Run, which stops
// everything it starts before it returns.
package chaindriver
