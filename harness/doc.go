// Package harness runs a store under a workload and judges the history:
// the run loop behind `chainraft run`.
//
// # A run
//
// [Run] makes the run directory Out/<timestamp>-<store>-<name>/ (UTC
// timestamp first, so the names sort by time), starts the cluster through
// the store's [Driver], drives the workload for the time limit,
// closes the cluster, writes history.jsonl, checks it with
// histories.Check (visualizations in porcupine/), writes summary.json
// ([Summary]) and replaces Out/latest, a symlink, by renaming a new link over
// it. harness.log in the run directory keeps the progress and log lines.
//
// # Goroutines and their owners
//
// Run owns everything it starts, and everything is stopped before it
// returns:
//   - one goroutine per workload client, each with exactly one operation in
//     flight. They stop issuing operations at the time limit but let the one
//     in flight finish under its own deadline (Cluster.RequestTimeout), so
//     the history does not end in a burst of artificial timeouts. Cancelling
//     Run's context (SIGINT) cuts those operations too.
//   - one goroutine per [Sidecar] (the nemesis), stopped at the time limit.
//   - one progress goroutine, stopped with the clients.
//
// A client stuck in a store call that ignores its deadline is waited for
// RequestTimeout plus a grace period; then the cluster is closed under it,
// which must unblock it, and its operation is recorded as info (it may yet
// take effect). A panic in any of these goroutines is caught and fails the
// run, so that it cannot kill the process with node processes still
// running; the cluster is closed on every path out of Run.
//
// # Outcomes
//
// The mapping from a store's error to an outcome decides whether the check
// means anything: nil is ok; an error wrapping kv.ErrDefinite is fail (the
// checker drops it); every other error, a timeout included, is info (the
// operation may have taken effect at any time after its call). A store that
// knows which node answered implements [workload.NodeReporter] on its client or its
// errors, and the node shows in the visualization.
//
// # Workload
//
// Each client has its own generator seeded from (seed, client index):
// uniform keys k000...; gets with the read fraction, the rest half puts, a
// quarter appends, a quarter cas by default. Written values are unique in
// the run ("w<client index>-<seq>", padded to the value size), which lets
// the checker prune unknown writes that no read observed. A cas expects the
// value its client last saw for the key, so that many of them swap.
//
// # Faults, checks and reports
//
// The nemesis is a [Sidecar]: nemesis.go (its file comment has the design)
// draws or replays the schedule from the kinds and roles the store's driver
// declares (refusing, before anything starts, a fault the store cannot
// take), acts on the cluster's own nemesis.Target (roles resolved at
// injection time), routes links through proxies when the schedule has
// network faults, and after the workload heals everything; the end-of-run
// checks follow (checks.go). Seeded bugs come from the drivers; the
// schedules that expose them, and the nightly trend, are in bugs.go and
// bugs_trend.go.
//
// # Figures
//
// Every time in a run counts from the workload's start: the recorder's
// clock restarts once the cluster serves, and the start-up is reported on
// its own (startup_s). availability.go separates speed from availability:
// healthy throughput outside faults and their recovery, unavailable
// seconds, and per fault the outages and first ok operations, each up to
// the next fault. schedules.go makes the `critical` schedule (each store's
// most critical role, the first its driver lists, killed, paused and cut
// off once each) so that compared stores take the same blows;
// visualize.go picks the keys a passing run draws.
//
// # Stores
//
// driver.go is the contract between the harness and a store: a Driver
// starts a Cluster that hands out kv.KV clients, and optional capabilities,
// found by type assertion, let the harness fault it, compare its replicas,
// meter its nodes and watch for unplanned deaths. The harness names no
// store and imports none: each registers itself (RegisterDriver) from its
// own folder, and cmd/chainraft/stores.go imports them. proccluster is the
// helper every driver of real processes shares. Why drivers rather than a
// switch on store names: a third store used to take five new files in three
// folders and edits to ten more, with two silent traps (a missing fault
// target failed late; a missing role mapping recorded every fault of a
// comparison as skipped). After every run
// the report package writes report.html and refreshes runs/index.html; a
// failure there is logged, never fatal. compare.go runs several stores under
// one seed, workload and fault schedule (mapped by role) and writes
// compare.json and compare.html. Its cost row, messages between nodes per
// client operation, comes from messages.go: the nodes' own counters of
// peer messages sent, read just before and just after the workload.
//
// # Stages
//
// The pipeline, as etcd's robustness tests lay theirs out, one place each:
//
//   - workload and recording client: package harness/workload (the seeded
//     generator, the recording client, OutcomeOf). It is a package because
//     two run loops draw from it: Run here and the simulator (sim), so a
//     seed means the same operations in both.
//   - run loop: run.go (Run, the runner, progress.go, the Sidecar contract).
//   - faults: nemesis.go (schedules from the driver's roles and kinds),
//     schedules.go (the critical schedule, the role table).
//   - end-of-run checks: checks.go.
//   - figures: summary.go, availability.go, visualize.go.
//   - compare: compare.go; scenarios (the seeded-bug table and the nightly
//     trend): bugs.go, bugs_trend.go.
//   - reports: package harness/report, which reads only the files a run
//     leaves (summary.json, history.jsonl, nemesis.jsonl, compare.json).
//
// Compare and the scenarios stay files of this package rather than
// packages of their own, on purpose: each is a thin layer over Run that
// needs the nemesis schedule's expansion, the run directory's naming and
// the atomic file writes, which as packages they would force this one to
// export for them alone; and SeededBug is part of the driver contract
// (BugDriver returns them). A stage earns a package when something other
// than Run uses it, as the workload does.
//
// # Recording cost
//
// The recorder (histories.Recorder) has no shared lock on its hot path and
// the progress counters are per client, so the harness records millions of
// operations per second and never bounds the store it measures; latencies
// and counts are computed from the history after the run, not during it.
package harness
