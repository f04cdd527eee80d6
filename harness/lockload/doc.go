// Package lockload is the lock workload: lock client processes take a
// ZooKeeper lock (zkrecipes.Lock or NaiveLock), read a counter from a
// resource, write it back plus one and release, while a nemesis SIGSTOPs the
// lock holder for longer than its session timeout. It shows that a ZooKeeper
// lock is a soft lock, and that fencing tokens make it safe.
//
// # Why a ZooKeeper lock is soft
//
// A ZooKeeper lock is held by a session: the holder's ephemeral znode lives
// as long as the session, and the session lives as long as ZooKeeper hears
// from the client within the session timeout. ZooKeeper decides alone that
// a silent client is dead: it expires the session, deletes the znode, and the
// next waiter holds the lock. The old holder is not told at that moment (it
// cannot be: it is silent), it learns it later, when it next talks to
// ZooKeeper. Between the expiry and that moment two clients believe they hold
// the lock. A process stopped by a long GC pause, a VM freeze, a swap storm or
// SIGSTOP is exactly such a silent client, and when it resumes it carries on
// from where it stopped, in the middle of its critical section.
//
// A careful client checks that it still holds the lock before acting (here:
// the Lost channel of the recipe, which closes when go-zookeeper reports the
// session's end). The check cannot help: there is always a gap between the
// last check and the moment the write reaches the resource, and a pause in
// that gap is enough. The worker checks right after its read, then "works"
// for Hold, then writes; the nemesis pauses it during the work. (When the
// pause instead lands before the check, go-zookeeper learns of the expiry
// within about 0.3 ms of SIGCONT on this machine, and in our runs the check
// then caught it in two pauses of three: a race, not a guarantee.)
//
// # Why fencing fixes it
//
// Every acquisition has a token that grows with each new holder: the
// sequence number of the recipe's znode, the creation zxid of the naive
// lock's znode. With fencing the worker sends its token with every request,
// and its write is a cas (expected old value, new value, token). The resource
// remembers the newest token it has seen and refuses any request with an
// older one, and refuses a cas whose expected value is no longer the
// counter's. The deposed holder's token is older than its successor's, which
// the resource saw as soon as the successor read, so the stale write is
// refused: safety is enforced where the effect happens, by the resource, and
// no longer depends on the lock holder's view of time. The lock still had two
// holders (CheckResult.TwoHolders counts it); it simply no longer matters.
//
// # What is real
//
// Everything but the counter: ZooKeeper is the installed Debian server
// (internal/zkserver), each worker is a `chainraft lockworker` process of
// its own, and a pause is SIGSTOP/SIGCONT of its process group
// (internal/proc), which freezes its session, timers and critical section
// together. The resource is an HTTP server on 127.0.0.1 inside the harness,
// with read/write deadlines on both sides.
//
// # The check
//
// The resource serves every request under one mutex and logs it with its
// serving order (Seq) and a timestamp on the harness's monotonic clock: that
// log (history.jsonl) is the one trustworthy history, and Check uses nothing
// else. Workers also log what they did (workers/<id>.jsonl, wall-clock times
// relative to the run's start) for a human reading a failure. Check asserts:
// replaying accepted writes, each set the counter to its previous value plus
// one (no lost increment) and each read returned the replayed value; no
// acquisition's accepted write was based on a read that another
// acquisition's accepted write superseded (critical sections as the resource
// saw them do not interleave); and the final counter equals the number of
// accepted writes. A run with no accepted write is Unknown, never ok.
//
// Run then marks each violation whose holder, or the holder it collided
// with, was paused by the nemesis (Violation.Paused). An interleaving with
// no paused holder is not the soft-lock effect under test but a fault of the
// lock recipe itself, counted apart (CheckResult.Unexplained): that is how
// these runs found that a deposed NaiveLock holder's Unlock could delete its
// successor's lock znode (its retried delete went out on go-zookeeper's new
// session; zkrecipes now guards it with an owner marker, see its doc), and
// they now show none.
//
// # Where the results go
//
// A lock run shares the runs directory with KV runs but not their schema,
// so summary.json says "workload": "lock"; Run writes a report.html of its
// own (report.WriteLockRun), the index lists it with its verdict, and
// `chainraft check` refuses it rather than read the counter log as KV
// operations.
//
// # Targeting the pause
//
// The nemesis asks the resource which acquisition has read and not yet
// written (Resource.InCritical), waits for a fresh read (so the pause does
// not land on a reply in flight, which would only time the read out), and
// pauses that worker for PauseFor (default three session timeouts), then
// resumes it. It only begins a pause that can end half a second before the run
// does, so the resumed holder gets to act. Pauses are recorded in
// nemesis.jsonl.
//
// # Goroutines and lifetimes
//
//   - Resource: one HTTP serving goroutine (plus net/http's per-connection
//     ones), owned by Resource.Close, which shuts the server down and waits.
//   - Run: the nemesis goroutine, which ends with the run's deadline after
//     resuming its victim; one waiter per worker that ends when the worker
//     exits. Workers are a proc.Group closed on every return path (deferred,
//     so panics too); ZooKeeper is closed the same way; proc's Pdeathsig and
//     KillAllOnSignal cover the harness dying.
//   - Worker: a single loop goroutine; go-zookeeper's goroutines are owned
//     by the connection, which the worker closes on loss and on exit.
//
// Bounds: the resource keeps at most maxRequests requests; every HTTP call
// has a deadline; every ZooKeeper wait is bounded by ctx or zkrecipes' own.
package lockload
