// Package etcd is chainraft's driver for real etcd: `--store etcd` runs
// --nodes etcd server processes from Debian's etcd-server package (3.4)
// and judges them with the same workload, nemesis, checker and end-of-run
// checks as the stores chainraft builds. Its init registers it
// (harness.RegisterDriver); cmd/chainraft imports it for that alone.
//
// # The cluster
//
// Processes, ports, kill / pause / restart and CPU accounting are
// proccluster's (Config.ClientPorts: etcd serves clients and peers on
// separate ports). Each member gets loopback ports, its own data directory
// under <run>/nodes/<id>/ and etcd's defaults otherwise — fsync on (etcd
// 3.4 cannot turn it off, so --no-fsync is refused), heartbeat 100 ms,
// election timeout 1 s — plus --pre-vote, etcd 3.5's default. The binary
// is $ETCD, else etcd in PATH, else /usr/bin/etcd; without one the driver
// fails with ErrNotInstalled, on which the tests skip.
//
// The client is go.etcd.io/etcd/client/v3 v3.7: it speaks the v3 KV, Txn,
// Maintenance (Status, HashKV) and Cluster APIs that a 3.4 server serves,
// and a 3.4 server ignores the request fields it does not know (checked by
// this package's tests against Debian's 3.4.23), so no older client
// version is needed.
//
// Peer links through the nemesis. An etcd member advertises one peer URL
// and every other member dials it, while partitions cut each ordered pair
// on its own proxy. So, when the network is wired, a member advertises a
// front (front.go) that finds which member dialed it — through
// /proc/net/tcp and the members' /proc/<pid>/fd, loopback sockets being
// this machine's — and forwards the connection to that pair's proxy.
// Client links go through the client proxies proccluster wires; the
// harness's own calls (status, hashes, membership) go direct: they observe
// the store and are no party to it.
//
// # Operations and how each outcome is classified
//
// Workload clients share two gRPC connections per member; each client
// starts at a member (dealt in turn) and moves to the next one after any
// error, as an application with several endpoints would.
//
//   - get: Range; linearizable (ReadIndex through the leader) or, with
//     --read-mode serializable, answered from the member's own state.
//     Failed reads are dropped by the checker, whatever their class.
//   - put: Put. cas: one Txn, If value = expect Then Put (etcd fails a
//     value comparison on an absent key, as the model wants).
//   - append: a read, then Txn If mod_revision = the one read (0: still
//     absent) Then Put(old+value) Else Get, repeated on the Else's answer
//     until it applies. A failed first read is definite (no write was
//     sent); a Txn whose comparison failed had no effect; a deadline
//     reached between tries is definite; a Txn that erred stops the loop
//     as unknown (trying again could append twice).
//   - writes carry WithRequireLeader: a member without a leader refuses
//     them before handling them.
//
// A write error is definite (fail) only when it proves the request had no
// effect (classify): refused before handling (no leader, too many
// requests, not capable, too large, no space), a proposal raft dropped on
// the receiving member, or a request gRPC never sent because the
// connection was down ("Error while dialing"). Everything else — a
// deadline, "request timed out", a connection broken with the request on
// it, leader changed — is unknown (info): a write whose request may have
// been sent is never fail.
//
// # Roles, faults, checks
//
// Roles leader and follower come from every running member's Status
// (leader: the member that names itself leader, the highest term
// winning), asked at injection. Faults: kill, pause, partition, delay
// (proccluster and the proxies) and member: the member is stopped and
// removed through the Cluster API, and the heal adds a fresh member on a
// spare id with an empty data directory (etcd, like raft, takes no
// removed member back), recorded as its replacement (nemesis.Replacer).
// End of run: HashKV of every member at the leader's revision, waited for
// until each member has applied it (a member behind refuses with "future
// revision").
//
// # Goroutines and processes
//
// In the harness: each etcd process has internal/proc's waiter goroutine;
// each front has an accept loop and two goroutines per connection it
// splices; the clientv3 clients have gRPC's. Cluster.Close kills every
// process (through proccluster), closes every client and every front
// (waiting for their goroutines) and releases the ports; it is idempotent.
// A Start that fails closes what it started. The processes have Pdeathsig,
// so a SIGKILLed harness leaves none behind.
package etcd
