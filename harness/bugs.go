package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/chainraft/chainraft/chain"
	"github.com/chainraft/chainraft/histories"
	"github.com/chainraft/chainraft/nemesis"
)

// The timing of a seeded bug's schedule: a fault every BugFaultInterval
// after the previous one healed, each lasting BugFaultDuration — short and
// frequent, since a bug shows around the transitions, not in steady state.
const (
	BugFaultInterval = time.Second
	BugFaultDuration = 2 * time.Second
)

// SeededBug is one bug a store can be told to plant (`--bug NAME`), with the
// fault that exposes it. `chainraft run --bug`, the detection tests and the
// nightly job all read this one table, so that "the fault that catches
// local-read" means the same thing everywhere.
type SeededBug struct {
	Name  string
	Store string
	// Mistake is the bug in one line, for the README and reports.
	Mistake string
	// Faults are the faults that expose the bug, injected in turn (the
	// schedule cycles through them); a role is resolved at injection, so
	// "leader" hits whoever leads then. A fault the cluster cannot do is
	// skipped by the nemesis and the next one serves. Empty: the bug shows
	// without any fault.
	Faults []nemesis.Fault
	// Stagger, when set, makes the faults one compound fault instead: the
	// k-th starts k×Stagger after the first and all heal together. It is
	// how a second fault lands while the first is in force (pause the new
	// leader while the old one is cut off).
	Stagger time.Duration
	// Duration overrides how long each fault (the last of a compound one)
	// lasts; 0 takes the caller's.
	Duration time.Duration
	// Exposes names the faults for people ("kill the leader").
	Exposes string
	// Keys is the key count that makes the bug show quickly: few keys, so
	// reads and writes of one key interleave densely.
	Keys int
	// AppendFraction, when positive, replaces a default (negative) append
	// fraction: a write applied twice shows at once in an append.
	AppendFraction float64
	// ReadFraction, when positive, replaces the workload's read fraction
	// when the run takes the bug's own schedule: part of the bug's
	// workload, like Keys.
	ReadFraction float64
	// RequestTimeout, when set, is the least request timeout that exposes
	// the bug: clients must still be waiting when the store reconfigures,
	// or the writes it loses are merely indeterminate.
	RequestTimeout time.Duration
	// RunTime is how long a detection run lasts (0: 8 s).
	RunTime time.Duration
	// Undetected, when set, says why the harness does not reliably catch
	// the bug yet: the detection tests skip it except under -long, where
	// its rate is measured, and the README table shows it. A finding, not
	// a pass.
	Undetected string
}

// SeededBugs is the table of seeded bugs, raft first.
var SeededBugs = []SeededBug{
	{
		Name: "local-read", Store: "raft",
		Mistake: "reads served from the receiving node's local state, without ReadIndex",
		// Cut the leader off, then, once a new leader took over, pause that
		// one: clients that give up on it rotate to the cut-off node, which
		// answers from before the partition.
		Faults: []nemesis.Fault{
			{Kind: nemesis.KindPartition, Shape: nemesis.ShapeIsolate, Role: nemesis.RoleLeader},
			{Kind: nemesis.KindPause, Role: nemesis.RoleLeader},
		},
		Stagger:  2 * time.Second,
		Duration: 4 * time.Second,
		Exposes:  "partition isolating the leader, then pause the new leader",
		Keys:     5,
	},
	{
		Name: "early-ack", Store: "raft",
		Mistake: "a write acknowledged when the leader proposes it, before it commits",
		Faults:  []nemesis.Fault{{Kind: nemesis.KindKill, Role: nemesis.RoleLeader}},
		Exposes: "kill the leader (reads after the ack show it without faults too)",
		Keys:    5,
	},
	{
		Name: "no-dedup", Store: "raft",
		Mistake:        "the dedup table skipped: a retried write applies twice",
		Faults:         []nemesis.Fault{{Kind: nemesis.KindKill, Role: nemesis.RoleLeader}},
		Exposes:        "kill the leader (clients retry writes it had replicated; the request timeout must outlast the election)",
		Keys:           5,
		AppendFraction: 0.3,
	},
	{
		Name: "head-read", Store: "chain",
		Mistake: "reads served at the head, which has writes the tail has not acknowledged",
		// No fault: the client half of the bug spreads reads over both ends
		// of the chain (every other read of a client at the head). A read
		// at the head shows a write the tail has not applied yet; a later
		// read at the tail, before the write reaches it, shows the value
		// before: not linearizable. The window is the head's and middle's
		// fsync plus two hops, which a dense workload on few keys hits in
		// every run. (Reads only at the head would look linearizable while
		// the head lives: it shows writes in the order they commit.)
		Exposes:        "no fault: reads alternate between head and tail, and a head read runs ahead of the tail",
		Keys:           5,
		AppendFraction: 0.3,
	},
	{
		Name: "no-resend", Store: "chain",
		Mistake: "after a middle node fails, its predecessor does not resend its Sent list",
		Faults:  []nemesis.Fault{{Kind: nemesis.KindKill, Role: nemesis.RoleMiddle}},
		// Down long enough for its session to expire and the master to
		// splice it out; clients wait through the splice.
		Duration:       5 * time.Second,
		Exposes:        "kill a middle node",
		Keys:           5,
		AppendFraction: 0.3,
		RequestTimeout: 8 * time.Second,
		RunTime:        10 * time.Second,
	},
	{
		Name: "stale-tail", Store: "chain",
		Mistake: "a tail keeps serving reads after losing its ZooKeeper session",
		// Cut the tail off from ZooKeeper only: it stays reachable by its
		// clients, its session expires after 2 s, and the master splices it
		// out of every chain; the new chain commits writes it never sees.
		// Clients cache the configuration (chain.Client) and re-read it
		// after a rejection or every few seconds, so a client that has not
		// been rejected since the splice still reads at the old tail: a
		// correct one refuses (no session) and sends the client to the new
		// configuration, the bug answers from its old state. (Pausing the
		// tail instead does not show it: a read queued at the paused tail
		// times out before its session expires.)
		//
		// Mostly reads: a client's first write to the chain after the
		// splice is rejected by the head and refreshes its cache, so the
		// window in which it still reads at the old tail is its run of
		// reads before that write (about one operation at half reads,
		// nine at nine in ten); with half reads, 1 seed in 10 missed.
		Faults:       []nemesis.Fault{{Kind: nemesis.KindZKPartition, Role: nemesis.RoleTail}},
		Duration:     6 * time.Second,
		Exposes:      "cut the tail off from ZooKeeper past its session timeout (clients keep their cached configuration; 90% reads)",
		Keys:         5,
		ReadFraction: 0.9,
		RunTime:      12 * time.Second,
	},
}

// BugNames lists the seeded bug names of store (all stores if empty).
func BugNames(store string) []string {
	var out []string
	for _, b := range SeededBugs {
		if store == "" || b.Store == store {
			out = append(out, b.Name)
		}
	}
	return out
}

// LookupBug finds a seeded bug of store by name; the error lists the names
// the store knows.
func LookupBug(store, name string) (SeededBug, error) {
	for _, b := range SeededBugs {
		if b.Name == name && b.Store == store {
			return b, nil
		}
	}
	known := BugNames(store)
	if len(known) == 0 {
		return SeededBug{}, fmt.Errorf("%w: store %q has no seeded bugs (bug %q)", ErrInvalidConfig, store, name)
	}
	sort.Strings(known)
	return SeededBug{}, fmt.Errorf("%w: store %q has no seeded bug %q (known: %s)", ErrInvalidConfig, store, name, strings.Join(known, ", "))
}

// Kinds is the fault kinds of the bug's faults, as a --nemesis value
// ("partition,pause"), or "none".
func (b SeededBug) Kinds() string {
	var kinds []string
	for _, f := range b.Faults {
		if !containsString(kinds, f.Kind) {
			kinds = append(kinds, f.Kind)
		}
	}
	if len(kinds) == 0 {
		return "none"
	}
	return strings.Join(kinds, ",")
}

// Steps is the nemesis schedule that exposes the bug over a run of total:
// after a quiet period of two intervals (the cluster settles), the bug's
// faults in turn, each lasting duration (or the bug's own Duration),
// interval apart, every one healed by total. The per-fault seeds come from
// seed, so the schedule replays.
func (b SeededBug) Steps(seed int64, total, interval, duration time.Duration) []nemesis.Step {
	if len(b.Faults) == 0 {
		return nil
	}
	if b.Duration > 0 {
		duration = b.Duration
	}
	quiet := 2 * interval
	var steps []nemesis.Step
	add := func(i int, at, d time.Duration) {
		f := b.Faults[i%len(b.Faults)]
		f.Seed = seed*1000003 + int64(len(steps))
		steps = append(steps, nemesis.Step{ID: len(steps) + 1, At: at, Duration: d, Fault: f})
	}
	if b.Stagger > 0 {
		// Compound rounds: every fault of the round, staggered, healed
		// together.
		span := time.Duration(len(b.Faults)-1)*b.Stagger + duration
		for at := quiet; at+span <= total; at += span + interval {
			for k := range b.Faults {
				off := time.Duration(k) * b.Stagger
				add(k, at+off, span-off)
			}
		}
		return steps
	}
	for at, i := quiet, 0; at+duration <= total; at, i = at+duration+interval, i+1 {
		add(i, at, duration)
	}
	return steps
}

func containsString(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

// ApplySeededBug prepares cfg for its planted bug (cfg.Cluster.Bug): the
// bug must be one the store plants (else ErrInvalidConfig, listing the known
// names), and unless the caller chose the faults itself (nemesisGiven), the
// run gets the bug's own schedule, written as a replayable nemesis.jsonl to
// <Out>/schedules/<store>-<bug>-seed<N>.jsonl so that the same file drives
// the run without the bug. End-of-run checks are turned on. No bug: no-op.
func ApplySeededBug(cfg *RunConfig, nemesisGiven bool) error {
	if cfg.Cluster.Bug == "" {
		return nil
	}
	b, err := LookupBug(cfg.Store, cfg.Cluster.Bug)
	if err != nil {
		return err
	}
	cfg.EndChecks = true
	if b.Store == "chain" && b.Name == chain.BugHeadRead {
		// The client half of the bug: reads go to the head.
		cfg.Sidecars = append(slices.Clip(cfg.Sidecars), routerBug{name: b.Name})
	}
	cfg.Cluster.RequestTimeout = max(cfg.Cluster.RequestTimeout, b.RequestTimeout)
	if nemesisGiven {
		return nil
	}
	if cfg.Workload.Keys == 0 {
		cfg.Workload.Keys = b.Keys
	}
	if cfg.Workload.AppendFraction < 0 && b.AppendFraction > 0 {
		cfg.Workload.AppendFraction = b.AppendFraction
	}
	if b.ReadFraction > 0 {
		cfg.Workload.ReadFraction = b.ReadFraction
	}
	steps := b.Steps(cfg.Workload.Seed, cfg.TimeLimit, BugFaultInterval, BugFaultDuration)
	if len(steps) == 0 {
		cfg.Nemesis = NemesisConfig{}
		return nil
	}
	out := cfg.Out
	if out == "" {
		out = "runs"
	}
	path := filepath.Join(out, "schedules", fmt.Sprintf("%s-%s-seed%d.jsonl", b.Store, b.Name, cfg.Workload.Seed))
	if err := WriteSchedule(path, steps); err != nil {
		return err
	}
	cfg.Nemesis = NemesisConfig{Replay: path, Interval: BugFaultDuration}
	return nil
}

// WriteSchedule writes steps as the inject lines of a nemesis.jsonl, which
// NemesisConfig.Replay (`chainraft run --replay`) runs as recorded.
func WriteSchedule(path string, steps []nemesis.Step) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := nemesis.NewEventWriter(f)
	for _, s := range steps {
		spec := s.Fault
		e := nemesis.Event{Step: s.ID, Fault: spec.Kind, Event: nemesis.PhaseInject, Role: spec.Role,
			Spec: &spec, At: s.At, Duration: s.Duration}
		if err := w.Write(e); err != nil {
			f.Close()
			return fmt.Errorf("writing %s: %w", path, err)
		}
	}
	return f.Close()
}

// routerBug plants the client half of a chain bug in the cluster's router
// (chain.Router.PlantBug) as the workload starts, and holds no resources.
type routerBug struct{ name string }

func (b routerBug) Run(ctx context.Context, env SidecarEnv) error {
	c, ok := env.Cluster.(*ChainCluster)
	if !ok {
		return fmt.Errorf("bug %s: not a chain cluster (%T)", b.name, env.Cluster)
	}
	if err := c.router.PlantBug(b.name); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

func (routerBug) Finish(*Summary) []histories.Annotation { return nil }
