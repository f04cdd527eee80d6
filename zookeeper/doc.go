// Package zookeeper is chainraft's driver for a real ZooKeeper ensemble
// as the store under test: `--store zookeeper` runs --nodes (default 3,
// odd) ZooKeeper servers from Debian's jars through internal/zkserver —
// the same code that starts the chain store's configuration center — and
// judges them like any other store. Its init registers it; cmd/chainraft
// imports it for that alone.
//
// # The store
//
// One znode per key, a child of /chainraft-kv (the key path-escaped), its
// data the value; an absent znode is an absent key, empty data an empty
// value. Servers fsync their transaction log unless --no-fsync
// (zookeeper.forceSync). Every workload client has a session of its own
// (go-zookeeper), whose first server is dealt round the ensemble; it moves
// to the next server only when that one fails (a host provider that keeps
// the order, where go-zookeeper's default shuffles).
//
//   - get: getData, after a sync with --read-mode sync (the default): sync
//     makes the session's server catch up with the leader first. With
//     --read-mode local it is a plain getData, answered from the server's
//     own state: sequentially consistent, not linearizable.
//   - put: setData at any version; if the znode is absent, create; if that
//     finds it created meanwhile, setData again.
//   - cas: getData (in the read mode), then setData at the version read;
//     BadVersion (someone wrote in between) reads again. An absent key
//     never matches.
//   - append: getData, then setData(old+value) at the version read, or
//     create when absent; again after BadVersion, NoNode or NodeExists.
//
// # How each outcome is classified
//
// NoNode, NodeExists and BadVersion are answers of requests that had no
// effect, so the loops above are safe. A write request's error is
// definite (fail) only when the request cannot have applied: zk.ErrNoServer,
// which go-zookeeper gives only to requests it never sent, or a request
// not started because the deadline had passed; a read failing inside cas
// or append before any write of it could apply is definite too. Every
// other error — the connection closed with the request sent or queued
// (queued requests go out on the next connection), the session expired,
// the deadline with the request in flight — is unknown (info).
//
// go-zookeeper's calls take no context. Each request runs on a goroutine
// of its own and the operation returns at its deadline, leaving the
// request in flight (unknown, if it writes); a request to a silent server
// ends after the session's receive timeout (two thirds of SessionTimeout),
// every pending request at the session's Close.
//
// # Faults
//
// The store's nodes are the servers (node id = myid). kill is SIGKILL and
// its heal a restart on the same ports and data directory, waiting until
// the server serves; pause is SIGSTOP / SIGCONT; roles leader and
// follower come from each server's `srvr` at injection. With the
// nemesis's network, client sessions dial the client proxies, and the
// server-to-server links — quorum and election — cross one proxy per
// ordered pair: each server's zoo.cfg names fronts for its peers
// (zkserver.Config.PeerAddrs), a front tags the stream with the port it
// stands for, and a mux behind the pair's proxy dials that port (links.go).
// A partition therefore cuts what a real one would: a follower cut from
// its leader goes on answering its sessions from its own state until the
// leader's silence lasts syncLimit × tickTime (2.5 s), then stops serving;
// an isolated leader loses its quorum and steps down. Membership is
// static (no dynamic reconfiguration), so no member faults; zk-kill and
// zk-partition would be kill and partition again.
//
// End of run: every server's zxid (`srvr`) is waited for until all are
// equal; then each server's data is read through a session pinned to it
// and hashed, and the zxids asked again: equal, unchanged zxids with
// different hashes are a divergence.
//
// # Goroutines and processes
//
// The servers are internal/zkserver's processes (Pdeathsig, internal/proc's
// waiter). In the harness: the links' relays (an accept loop each, two
// goroutines per spliced connection), go-zookeeper's per session, and the
// request goroutines, each ended by its request's answer or its session's
// Close, which waits for them. Cluster.Close closes the sessions (all at
// once, while the servers can answer), kills the servers, closes the
// relays and waits for their goroutines; it is idempotent.
package zookeeper
