// Package zkrecipes implements the ZooKeeper recipes chainraft relies on —
// leader election for the chain master, and locks — on
// github.com/go-zookeeper/zk v1.0.4, plus the naive lock the recipes warn
// against, so the two can be measured side by side (chainraft lockbench).
//
// # Why not go-zookeeper's zk.Lock
//
// zk.Lock implements the non-herd recipe, but it never tells its holder that
// the lock is gone: when the session expires (the holder was paused or
// partitioned for longer than the session timeout) ZooKeeper deletes the
// lock znode and grants the lock to the next waiter, while the old holder
// keeps believing it holds it (samuel/go-zookeeper#20, open since 2014). It
// also has no context or timeout, and keeps the sequence number — the natural
// fencing token — in an unexported field. Here every holder sets a watch on
// its own znode (the guard) and Lost() is closed when that watch reports
// anything but the holder's own release; Lock returns the fencing token; and
// every wait honours a context.
//
// # What Lost can and cannot promise
//
// A ZooKeeper lock is a soft lock. Expiry is decided by the server; a client
// learns of it only once it reaches a server again. A partitioned or paused
// holder is told nothing while a second holder already works
// (TestLostOnSessionExpiry shows exactly this with a blackholed connection):
// Lost fires after the fact. Correctness therefore rests on the resource
// checking the fencing token — Lock's sequence number, NaiveLock's Czxid,
// each larger for every later holder — and refusing tokens older than the
// newest it has seen. A holder that wants to stop early should also stop
// acting on zk.StateDisconnected (go-zookeeper detects a silent server after
// 2/3 of the session timeout, before the server can expire the session).
//
// # The recipes
//
//   - Lock and Election share one queue: a contender creates an
//     ephemeral-sequential znode named _c_<guid>-<name><seq> under dir, lists
//     the children without a watch, and if it is not the lowest it watches
//     only the next lower znode. A release or crash therefore notifies exactly
//     one waiter. The guid finds the contender's own znode if a create
//     succeeded but its reply was lost to a connection loss (ZOOKEEPER-1262).
//     The watch on the predecessor is a get, not an exists: an exists on a
//     znode that has just vanished would leave a creation watch behind that
//     never fires.
//   - NaiveLock creates one fixed ephemeral znode; on NodeExists it sets an
//     exists watch and retries when it fires. Every waiter holds such a watch,
//     so each release wakes all of them and they all retry (the herd effect):
//     watch notifications and requests per acquisition grow with the number
//     of contenders, which Stats counts.
//   - Deleting by path is safe only for a name no one else can hold. The
//     queue's names are unique, so Lock's and Election's release may delete
//     their own path even when the delete goes out on a later session. The
//     naive lock's name is every holder's: go-zookeeper sends requests queued
//     during a reconnect on the new session it opens after an expiry, so a
//     deposed holder's Delete(path, -1) (or a delete "checked" by an exists
//     just before) can remove its successor's znode, and the znode's version
//     does not help (every holder's is 0). Lock runs with paused holders
//     showed exactly this: a third worker inside the successor's critical
//     section. So NaiveLock creates, in the same Multi as the lock znode, an
//     ephemeral owner marker with a fresh name, and Unlock is a Multi of
//     check(marker), delete(lock), delete(marker): ZooKeeper runs it only
//     while the acquiring session lives, and otherwise deletes nothing
//     (TestUnlockAfterExpiryKeepsSuccessor).
//   - Election.Path is the leader's own znode: the chain master puts a
//     CheckVersionRequest on it in every Multi that changes a configuration,
//     so a deposed master's write fails at ZooKeeper instead of relying on
//     the master knowing it was deposed.
//
// # Counting
//
// Stats counts, per contender, every request it issued and every watch
// notification it received while waiting. The guard's notification (one per
// acquisition, at release) is counted apart so Watches measures the herd
// alone. Requests includes the guard's get and the release (a delete, or
// NaiveLock's guarded Multi; its create is a Multi too, counted once).
//
// # Goroutines
//
// go-zookeeper has no per-request deadline: a request issued while the
// connection is down waits for the reconnect. So each request runs in a
// short goroutine and the caller waits for it or for its context; the
// goroutine is owned by the connection and ends when the request completes
// or the connection is closed. A create abandoned that way deletes what it
// created once it completes, and a contender that gives up withdraws its
// znode, so no orphan blocks the queue until its session ends. Each held
// lock or leadership has one guard goroutine, ended by the watch it waits on,
// which always fires: at the release, at session expiry, or when the
// connection is closed. Release (Unlock, Resign) waits for it.
//
// # Invariants
//
//   - a contender holds at most one znode in its queue at a time;
//   - Lost of an acquisition is closed at most once and never by the
//     holder's own release;
//   - tokens handed out for one lock path strictly increase over time;
//   - no release or cleanup deletes a znode another contender may own: by a
//     unique path (queue), or guarded by the holding's owner marker
//     (NaiveLock).
package zkrecipes
