// Package kv is the one key-value interface that every store under test
// satisfies, so the workload, the recorder and the checker never know which
// replication protocol answered.
//
// # Error classes
//
// A linearizability checker is only as honest as the outcomes it is fed. An
// operation whose effect is uncertain must be recorded as "info" (it may or may
// not have happened, at any time after its call); one that certainly did
// nothing can be dropped. Getting this wrong in the safe-looking direction
// (calling a timed-out write a failure) makes the checker report violations a
// store never committed, or hide real ones. So the default is indeterminate:
// an error is definite only when it wraps [ErrDefinite], which a store returns
// only when it knows the request was never proposed, forwarded or applied
// (rejected before it left the client, a not-leader reply before proposing, a
// malformed request).
//
// # Request ids
//
// Stores retry; retries must not apply twice. Every request carries a
// [RequestID] (client id, sequence); the replicated state keeps, per client id,
// the last sequence applied and its result, so a retry of the same sequence
// returns the first result instead of applying again. A client issues one
// request at a time, so one entry per client is enough.
//
// # Memory
//
// [Memory] is a single-node store protected by one mutex: trivially
// linearizable, it is the control for the harness (a run against it must be
// judged linearizable) and the yardstick for the harness's own overhead.
package kv
