package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

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
	// Hosts, when set, is the --hosts value the bug's faults need (a
	// clock fault steps the clocks of hosts, never this machine's): the
	// detection tests run it there where the machine can make them
	// (root, network namespaces) and skip it otherwise.
	Hosts string
	// Undetected, when set, says why the harness does not reliably catch
	// the bug yet: the detection tests skip it except under -long, where
	// its rate is measured, and the README table shows it. A finding, not
	// a pass.
	Undetected string
}

// SeededBugs lists the seeded bugs of every registered store, by store
// name then in each driver's order: the detection tests and the nightly
// job read this one table through the drivers, so that "the fault that
// catches local-read" means the same thing everywhere.
func SeededBugs() []SeededBug {
	var out []SeededBug
	for _, d := range Drivers() {
		out = append(out, bugsOf(d)...)
	}
	return out
}

// bugsOf is a driver's seeded bugs, each with its store's name.
func bugsOf(d Driver) []SeededBug {
	bd, ok := d.(BugDriver)
	if !ok {
		return nil
	}
	bugs := bd.SeededBugs()
	for i := range bugs {
		bugs[i].Store = d.Name()
	}
	return bugs
}

// BugNames lists the seeded bug names of the registered store (of every
// store if empty).
func BugNames(store string) []string {
	var out []string
	for _, b := range SeededBugs() {
		if store == "" || b.Store == store {
			out = append(out, b.Name)
		}
	}
	return out
}

// LookupBug finds a seeded bug of d by name; the error lists the names the
// store knows.
func LookupBug(d Driver, name string) (SeededBug, error) {
	var known []string
	for _, b := range bugsOf(d) {
		if b.Name == name {
			return b, nil
		}
		known = append(known, b.Name)
	}
	if len(known) == 0 {
		return SeededBug{}, fmt.Errorf("%w: store %q has no seeded bugs (bug %q)", ErrInvalidConfig, d.Name(), name)
	}
	sort.Strings(known)
	return SeededBug{}, fmt.Errorf("%w: store %q has no seeded bug %q (known: %s)", ErrInvalidConfig, d.Name(), name, strings.Join(known, ", "))
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
	d := cfg.Driver
	if d == nil {
		var err error
		if d, err = LookupDriver(cfg.Store); err != nil {
			return fmt.Errorf("%w: %v", ErrInvalidConfig, err)
		}
	}
	b, err := LookupBug(d, cfg.Cluster.Bug)
	if err != nil {
		return err
	}
	cfg.EndChecks = true
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
