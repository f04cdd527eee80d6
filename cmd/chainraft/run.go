package main

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/chainraft/chainraft/harness"
	"github.com/chainraft/chainraft/harness/workload"
	"github.com/chainraft/chainraft/histories"
	"github.com/chainraft/chainraft/internal/proc"
	"github.com/chainraft/chainraft/nemesis"
)

func init() {
	subcommands = append(subcommands, newRunCmd)
}

// runFlags are the flags of `chainraft run`.
type runFlags struct {
	store          string
	timeLimit      time.Duration
	clients        int
	keys           int
	seed           int64
	out            string
	name           string
	readFraction   float64
	appendFraction float64
	casFraction    float64
	valueSize      int
	preload        string
	preloadValue   int
	rate           float64
	checkBudget    time.Duration
	nodes          int
	noFsync        bool
	nodeCPUs       float64
	hosts          string
	readMode       string
	bug            string
	requestTimeout time.Duration
	quiet          bool
	cmdName        string // "run" when empty
	// The nemesis (run only).
	nemesis         string
	nemesisInterval time.Duration
	nemesisOverlap  bool
	replay          string
	// workload is kv (the default) or lock: the ZooKeeper lock workload,
	// with its own flags in lock.
	workload string
	lock     lockRunFlags
}

func newRunCmd() *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run a workload against a store, record the history and check it",
		Long: `Run starts a cluster of the store, drives it with concurrent clients for the
time limit, records every operation to history.jsonl, checks the history for
linearizability and writes summary.json, all in a new run directory under --out.

With --nemesis, faults are injected on a schedule drawn from --seed (or
replayed from a recorded nemesis.jsonl with --replay), one line printed per
fault as it is injected and healed; network faults route every link through
proxies. After the workload every fault is healed and the end-of-run checks
run (healed, available, final-write, final-reads, replica-digests); their
results and the recovery time of every fault go into summary.json.

Exit codes: 0 linearizable and every end-of-run check passed, 1 not
linearizable or an end-of-run check failed, 2 bad usage, 3 unknown (the
check ran out of budget), 4 the run failed or was interrupted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch f.workload {
			case "kv":
			case "lock":
				if f.hosts != "" {
					return usageErrorf("run: --hosts runs store nodes; the lock workload has none")
				}
				return f.runLock(cmd)
			default:
				return usageErrorf("run: --workload must be kv or lock, not %q", f.workload)
			}
			cfg, err := f.config()
			if err != nil {
				return err
			}
			if cfg.Nemesis, err = f.nemesisConfig(cfg.Driver); err != nil {
				return err
			}
			if err := harness.ApplySeededBug(&cfg, cmd.Flags().Changed("nemesis") || f.replay != ""); err != nil {
				return usageErrorf("%s: --bug: %v", f.command(), err)
			}
			if cmd.Flags().Changed("read-fraction") {
				// The user's mix wins over the one the bug's schedule prefers.
				cfg.Workload.ReadFraction = f.readFraction
			}
			cfg.EndChecks = true
			cfg.Command = append([]string{"chainraft"}, os.Args[1:]...)
			if !f.quiet {
				cfg.Progress = cmd.ErrOrStderr()
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			pool, err := openHosts(ctx, f.hosts, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer closeHosts(pool, cmd.ErrOrStderr())
			cfg.Cluster.Hosts = pool
			res, err := harness.Run(ctx, cfg)
			if res != nil {
				printSummary(cmd.OutOrStdout(), res)
			}
			return runExit(res, err)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.store, "store", "memory", "store under test: "+strings.Join(harness.Stores(), ", "))
	f.addFlags(fl, 10*time.Second)
	fl.StringVar(&f.bug, "bug", "", "plant a named bug in the store (to see the checker catch it)")
	fl.StringVar(&f.workload, "workload", "kv", "kv: the KV workload against --store; lock: ZooKeeper lock clients under holder pauses (--recipe, --fencing)")
	markLockFlags(fl, func() { addLockRunFlags(cmd, &f.lock, false) })
	return cmd
}

// markLockFlags registers the lock workload's own flags (through add) and
// says in each one's help that only --workload lock reads it, so they do
// not pass for KV flags in `run --help`.
func markLockFlags(fl *pflag.FlagSet, add func()) {
	before := map[string]bool{}
	fl.VisitAll(func(f *pflag.Flag) { before[f.Name] = true })
	add()
	fl.VisitAll(func(f *pflag.Flag) {
		if !before[f.Name] {
			f.Usage = "[--workload lock only] " + f.Usage
		}
	})
}

// runLock runs the lock workload with the flags run shares with it.
func (f *runFlags) runLock(cmd *cobra.Command) error {
	l := f.lock
	l.timeLimit, l.seed, l.out, l.name, l.quiet = f.timeLimit, f.seed, f.out, f.name, f.quiet
	// --zk and --zk-servers are the chain driver's flags; the lock
	// workload reads them by name, as a user types them.
	l.zkServers = 1
	if fl := cmd.Flags().Lookup("zk"); fl != nil {
		l.zk = fl.Value.String()
	}
	if fl := cmd.Flags().Lookup("zk-servers"); fl != nil {
		n, err := strconv.Atoi(fl.Value.String())
		if err != nil {
			return usageErrorf("run: --zk-servers: %v", err)
		}
		l.zkServers = n
	}
	return runLockWorkload(cmd.Context(), cmd, l)
}

// nemesisConfig validates the nemesis flags; first is the driver whose
// roles a critical schedule aims at (compare: the first store's). A replay
// file is read and checked here, line by line, so a bad one is named with
// its line before anything starts.
func (f *runFlags) nemesisConfig(first harness.Driver) (harness.NemesisConfig, error) {
	if first == nil {
		d, err := harness.LookupDriver(f.store)
		if err != nil {
			return harness.NemesisConfig{}, usageErrorf("%s: --store: %v", f.command(), err)
		}
		first = d
	}
	if f.nemesisInterval < nemesis.MinInterval {
		return harness.NemesisConfig{}, usageErrorf("%s: --nemesis-interval must be at least %v (a fault needs time to take hold and heal), got %v", f.command(), nemesis.MinInterval, f.nemesisInterval)
	}
	if f.replay != "" {
		if _, err := nemesis.ReadSchedule(f.replay); err != nil {
			return harness.NemesisConfig{}, usageErrorf("%s: --replay: %v", f.command(), err)
		}
		return harness.NemesisConfig{Interval: f.nemesisInterval, Overlap: f.nemesisOverlap, Replay: f.replay}, nil
	}
	if strings.TrimSpace(f.nemesis) == harness.NemesisCritical {
		if f.nemesisOverlap {
			return harness.NemesisConfig{}, usageErrorf("%s: --nemesis-overlap: the %s schedule deals its faults one at a time", f.command(), harness.NemesisCritical)
		}
		steps, err := harness.CriticalSteps(first, f.nemesisInterval, f.timeLimit)
		if err != nil {
			return harness.NemesisConfig{}, usageErrorf("%s: %v", f.command(), err)
		}
		path := filepath.Join(f.out, "schedules", fmt.Sprintf("critical-%s-%v-%v.jsonl", first.Name(), f.nemesisInterval, f.timeLimit))
		if err := harness.WriteSchedule(path, steps); err != nil {
			return harness.NemesisConfig{}, usageErrorf("%s: --out: writing the %s schedule: %v", f.command(), harness.NemesisCritical, err)
		}
		return harness.NemesisConfig{Interval: f.nemesisInterval, Replay: path}, nil
	}
	kinds, err := nemesis.ParseKinds(f.nemesis)
	if err != nil {
		return harness.NemesisConfig{}, usageErrorf("%s: --nemesis: %v (or %s, or none)", f.command(), err, harness.NemesisCritical)
	}
	return harness.NemesisConfig{Kinds: kinds, Interval: f.nemesisInterval, Overlap: f.nemesisOverlap}, nil
}

// addFlags registers the flags `run` shares with `compare` (all but the
// store and the planted bug), so both mean the same by the same name.
func (f *runFlags) addFlags(fl *pflag.FlagSet, timeLimit time.Duration) {
	fl.DurationVar(&f.timeLimit, "time-limit", timeLimit, "how long the workload runs")
	fl.IntVar(&f.clients, "clients", 16, "concurrent clients, one operation in flight each")
	fl.IntVar(&f.keys, "keys", 100, "number of keys")
	fl.Int64Var(&f.seed, "seed", 1, "workload seed")
	fl.StringVar(&f.out, "out", "runs", "directory for run directories")
	fl.StringVar(&f.name, "name", "default", "run name (last part of the run directory)")
	fl.Float64Var(&f.readFraction, "read-fraction", 0.5, "fraction of gets")
	fl.Float64Var(&f.appendFraction, "append-fraction", -1, "fraction of appends; negative: a quarter of the writes")
	fl.Float64Var(&f.casFraction, "cas-fraction", -1, "fraction of cas; negative: a quarter of the writes")
	fl.IntVar(&f.valueSize, "value-size", 0, "pad written values to this many bytes (at most 262144)")
	fl.StringVar(&f.preload, "preload", "", "write this much data (e.g. 100MB, 1GiB) to keys of its own before the workload, so that a new replica's catch-up (--nemesis member) copies it; not in the checked history, in the replica digests")
	fl.IntVar(&f.preloadValue, "preload-value-size", harness.DefaultPreloadValue, "size of each preloaded value, in bytes (at most 262144)")
	fl.Float64Var(&f.rate, "rate", 0, "cap the workload at about this many operations a second, shared by the clients (0: as fast as the store answers)")
	fl.DurationVar(&f.checkBudget, "check-budget", harness.DefaultCheckBudget, "time budget of the linearizability check")
	fl.IntVar(&f.nodes, "nodes", 3, "number of store nodes")
	fl.BoolVar(&f.noFsync, "no-fsync", false, "nodes skip fsync (measurements only: unsafe)")
	fl.StringVar(&f.hosts, "hosts", "", hostsHelp)
	fl.Float64Var(&f.nodeCPUs, "node-cpus", 0, "give each node process this many cores of CPU, in a cgroup of its own, so nodes compete like separate servers (needs root and a cgroup cpu controller; 0: no limit)")
	fl.StringVar(&f.readMode, "read-mode", "", "how the store serves reads: "+readModesHelp()+"; empty: the store's default")
	fl.DurationVar(&f.requestTimeout, "request-timeout", harness.DefaultRequestTimeout, "deadline of one client operation; past it the outcome is unknown")
	fl.BoolVar(&f.quiet, "quiet", false, "no progress lines on stderr")
	fl.StringVar(&f.nemesis, "nemesis", "none", "faults: critical (the store's most critical role killed, paused and cut off, once each); or comma-separated "+strings.Join(nemesis.Kinds, ", ")+", or zk (zk-partition and zk-kill); all (every kind the store takes but delay and clock); or none")
	fl.DurationVar(&f.nemesisInterval, "nemesis-interval", 5*time.Second, "time between faults, and each fault's length (at least 100ms)")
	fl.BoolVar(&f.nemesisOverlap, "nemesis-overlap", false, "start a fault every interval, each lasting two, so faults overlap")
	fl.StringVar(&f.replay, "replay", "", "replay the fault schedule of a recorded nemesis.jsonl (overrides --nemesis)")
	// Each store's own flags (the chain's --chains, --replicas, --zk, ...).
	harness.RegisterDriverFlags(fl)
}

// readModesHelp lists each store's read modes, its default first.
func readModesHelp() string {
	var parts []string
	for _, d := range harness.Drivers() {
		if rm, ok := d.(harness.ReadModeDriver); ok {
			parts = append(parts, d.Name()+" "+strings.Join(rm.ReadModes(), "|"))
		}
	}
	return strings.Join(parts, ", ")
}

// config validates the flags and builds the run configuration. Every
// message names the flag at fault.
func (f *runFlags) config() (harness.RunConfig, error) {
	stores := harness.Stores()
	switch {
	case !slices.Contains(stores, f.store):
		return harness.RunConfig{}, usageErrorf(f.command()+": unknown --store %q (known: %s)", f.store, strings.Join(stores, ", "))
	case f.timeLimit <= 0:
		return harness.RunConfig{}, usageErrorf(f.command()+": --time-limit must be positive, got %v", f.timeLimit)
	case f.clients <= 0:
		return harness.RunConfig{}, usageErrorf(f.command()+": --clients must be positive, got %d", f.clients)
	case f.keys <= 0:
		return harness.RunConfig{}, usageErrorf(f.command()+": --keys must be positive, got %d", f.keys)
	case !(f.readFraction >= 0 && f.readFraction <= 1):
		return harness.RunConfig{}, usageErrorf(f.command()+": --read-fraction must be in [0,1], got %v", f.readFraction)
	case !(f.appendFraction <= 1):
		return harness.RunConfig{}, usageErrorf(f.command()+": --append-fraction must be at most 1, got %v", f.appendFraction)
	case !(f.casFraction <= 1):
		return harness.RunConfig{}, usageErrorf(f.command()+": --cas-fraction must be at most 1, got %v", f.casFraction)
	case f.rate < 0:
		return harness.RunConfig{}, usageErrorf(f.command()+": --rate must not be negative, got %v", f.rate)
	case f.valueSize < 0 || f.valueSize > harness.MaxValueSize:
		return harness.RunConfig{}, usageErrorf(f.command()+": --value-size must be between 0 and %d bytes (a cas line holds two values, and the checker reads lines up to 1 MiB), got %d", harness.MaxValueSize, f.valueSize)
	case f.checkBudget <= 0:
		return harness.RunConfig{}, usageErrorf(f.command()+": --check-budget must be positive, got %v", f.checkBudget)
	case f.requestTimeout <= 0:
		return harness.RunConfig{}, usageErrorf(f.command()+": --request-timeout must be positive, got %v", f.requestTimeout)
	case f.nodes <= 0:
		return harness.RunConfig{}, usageErrorf(f.command()+": --nodes must be positive, got %d", f.nodes)
	case f.out == "":
		return harness.RunConfig{}, usageErrorf("%s: --out must not be empty", f.command())
	case !(f.nodeCPUs >= 0) || math.IsInf(f.nodeCPUs, 1):
		return harness.RunConfig{}, usageErrorf(f.command()+": --node-cpus must not be negative, and must be a finite number of cores, got %v", f.nodeCPUs)
	}
	preload, err := parseBytes(f.preload)
	if err != nil {
		return harness.RunConfig{}, usageErrorf("%s: --preload %v", f.command(), err)
	}
	if err := checkOut(f.out); err != nil {
		return harness.RunConfig{}, usageErrorf("%s: --out %v", f.command(), err)
	}
	if f.nodeCPUs > 0 {
		if err := proc.CheckCPULimit(); err != nil {
			return harness.RunConfig{}, usageErrorf(f.command()+": --node-cpus %v: %v", f.nodeCPUs, err)
		}
	}
	cfg := harness.RunConfig{
		Store:     f.store,
		Name:      f.name,
		Out:       f.out,
		TimeLimit: f.timeLimit,
		Clients:   f.clients,
		Workload: workload.Config{
			Seed: f.seed, Keys: f.keys, ReadFraction: f.readFraction,
			AppendFraction: f.appendFraction, CASFraction: f.casFraction, ValueSize: f.valueSize, Rate: f.rate,
		},
		Cluster: harness.Env{
			Nodes: f.nodes, NoFsync: f.noFsync, NodeCPUs: f.nodeCPUs, ReadMode: f.readMode,
			Bug: f.bug, RequestTimeout: f.requestTimeout,
		},
		CheckBudget: f.checkBudget,
		Preload:     harness.Preload{Bytes: preload, ValueSize: f.preloadValue},
	}
	if exe, err := os.Executable(); err == nil {
		cfg.Cluster.Binary = exe
	}
	if err := cfg.Validate(); err != nil {
		// What the flag checks above let through (the name, the fraction
		// sum) is still bad usage.
		return harness.RunConfig{}, usageErrorf(f.command()+": %v", err)
	}
	return cfg, nil
}

// checkOut makes sure runs can be written under out before anything
// starts: it creates the directory if need be and writes and removes a
// file in it. A file in its place, or a directory that cannot be written,
// is bad usage (exit 2), not a run that fails after its cluster started.
func checkOut(out string) error {
	if fi, err := os.Stat(out); err == nil && !fi.IsDir() {
		return fmt.Errorf("%s is a file, not a directory", out)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("%s: cannot create it: %v", out, err)
	}
	probe, err := os.CreateTemp(out, ".chainraft-write-test-*")
	if err != nil {
		return fmt.Errorf("%s is not writable: %v", out, err)
	}
	probe.Close()
	return os.Remove(probe.Name())
}

// command names the command in usage messages.
func (f *runFlags) command() string {
	if f.cmdName == "" {
		return "run"
	}
	return f.cmdName
}

// runExit maps a run's outcome to the exit code.
func runExit(res *harness.RunResult, err error) error {
	switch {
	case err != nil && errors.Is(err, harness.ErrInvalidConfig):
		return withCode(exitUsage, err)
	case err != nil && errors.Is(err, harness.ErrInfrastructure) && res != nil &&
		res.Summary.Verdict == string(histories.VerdictIllegal):
		// What was recorded before the failure is already not linearizable.
		return withCode(exitIllegal, fmt.Errorf("not linearizable (and then %v): see %s", err, res.Dir))
	case err != nil:
		return withCode(exitRunFailed, err)
	case res == nil:
		return withCode(exitRunFailed, errors.New("run produced no result"))
	}
	switch histories.Verdict(res.Summary.Verdict) {
	case histories.VerdictOK:
		if failed := harness.FailedChecks(res.Summary); len(failed) > 0 {
			return withCode(exitIllegal, fmt.Errorf("end-of-run check failed: %s: see %s", strings.Join(failed, "; "), res.Dir))
		}
		return nil
	case histories.VerdictIllegal:
		return withCode(exitIllegal, fmt.Errorf("not linearizable: see %s", res.Dir))
	default:
		return withCode(exitUnknown, fmt.Errorf("verdict unknown (the check ran out of budget): see %s", res.Dir))
	}
}

// printSummary prints the run's outcome for a person at a terminal.
func printSummary(w io.Writer, res *harness.RunResult) {
	s := res.Summary
	fmt.Fprintf(w, "run:        %s\n", res.Dir)
	fmt.Fprintf(w, "store:      %s, %d clients, %d keys, seed %d, %.1fs\n", s.Store, s.Clients, s.Keys, s.Seed, s.DurationS)
	if s.StartupS > 0 {
		fmt.Fprintf(w, "cluster:    started in %.1fs, before the workload; every time below counts from the workload's start\n", s.StartupS)
	}
	fmt.Fprintf(w, "operations: %d (ok %d, fail %d, info %d)\n", s.OpsTotal, s.OpsOK, s.OpsFail, s.OpsInfo)
	fmt.Fprintf(w, "throughput: %.0f ok ops/s", s.Throughput)
	kinds := make([]string, 0, len(s.ThroughputByOp))
	for k := range s.ThroughputByOp {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		fmt.Fprintf(w, "  %s %.0f", k, s.ThroughputByOp[k])
	}
	fmt.Fprintln(w, "  (whole run, outages included)")
	printAvailability(w, s)
	fmt.Fprintf(w, "latency ms: %-7s %10s %10s %10s %10s   (ok operations)\n", "", "p50", "p99", "p99.9", "max")
	for _, k := range []string{"get", "put", "append", "cas", "all"} {
		if l, ok := s.Latency[k]; ok {
			fmt.Fprintf(w, "            %-7s %10.4f %10.4f %10.4f %10.4f\n", k, l.P50MS, l.P99MS, l.P999MS, l.MaxMS)
		}
	}
	printNodes(w, s)
	fmt.Fprintf(w, "check:      %.2fs, %d unknown writes pruned, %d bounded\n", s.CheckSeconds, s.Pruned, s.Bounded)
	for _, k := range s.KeyResults {
		line := fmt.Sprintf("            %s %s (%d ops)", k.Key, k.Verdict, k.Ops)
		if k.Visualization != "" {
			line += " " + k.Visualization
		}
		fmt.Fprintln(w, line)
	}
	printNemesis(w, s)
	if s.Error != "" {
		fmt.Fprintf(w, "error:      %s\n", s.Error)
	}
	fmt.Fprintf(w, "verdict:    %s\n", s.Verdict)
}

// printNodes prints what the nodes spent per ok operation, when the store
// has node processes: CPU (all nodes, and the busiest) and messages.
func printNodes(w io.Writer, s *harness.Summary) {
	if s.NodeCPUPerOpUS == nil {
		return
	}
	ids := make([]string, 0, len(s.NodeCPUSeconds))
	for id := range s.NodeCPUSeconds {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool {
		a, _ := strconv.Atoi(ids[i])
		b, _ := strconv.Atoi(ids[j])
		return a < b
	})
	var cpu []string
	for _, id := range ids {
		cpu = append(cpu, fmt.Sprintf("n%s %.1fs", id, s.NodeCPUSeconds[id]))
	}
	limit := ""
	if s.NodeCPUs > 0 {
		limit = fmt.Sprintf(", each limited to %g cores", s.NodeCPUs)
	}
	fmt.Fprintf(w, "nodes:      CPU %s%s\n", strings.Join(cpu, ", "), limit)
	line := fmt.Sprintf("            per ok op: %.1f µs CPU on all nodes, %.1f µs on the busiest", *s.NodeCPUPerOpUS, *s.BusiestNodeCPUPerOpUS)
	if s.MessagesPerOp != nil {
		line += fmt.Sprintf(", %.2f messages between nodes", *s.MessagesPerOp)
	}
	fmt.Fprintln(w, line)
}

// printAvailability prints speed and availability apart: the healthy
// rate, and the time the store spent below a tenth of it.
func printAvailability(w io.Writer, s *harness.Summary) {
	a := s.Availability
	if a == nil {
		return
	}
	if a.HealthyThroughput == nil {
		fmt.Fprintf(w, "healthy:    – (no time outside faults and their recovery)\n")
		return
	}
	fmt.Fprintf(w, "healthy:    %.0f ok ops/s over %.1fs outside faults and their recovery\n", *a.HealthyThroughput, a.HealthyS)
	fmt.Fprintf(w, "unavailable: %.1fs with the ok rate below %.0f%% of healthy (in %.0f ms bins)\n", a.UnavailableS, 100*a.UnavailableBelow, a.BinMS)
}

// printNemesis prints what each fault cost and the end-of-run checks,
// when the run has them.
func printNemesis(w io.Writer, s *harness.Summary) {
	if s.Availability != nil && len(s.Availability.Faults) > 0 {
		fmt.Fprintln(w, "faults:     each measured from its inject up to the next fault's (or the workload's end)")
		for _, f := range s.Availability.Faults {
			fmt.Fprintf(w, "            %s\n", faultLine(f))
		}
	}
	for _, c := range s.Checks {
		fmt.Fprintf(w, "check:      %-16s %-7s %s\n", c.Name, c.Status, c.Detail)
	}
}

// faultLine is one fault's cost in words: "kill head n1 5.0–10.0s:
// unavailable 2.0s (reads 2.0s, writes 2.0s); first ok read 1998 ms, first
// ok write not before the heal; throughput back 120 ms after the heal".
func faultLine(f harness.FaultAvailability) string {
	var b strings.Builder
	b.WriteString(f.Fault)
	if f.Role != "" {
		b.WriteString(" " + f.Role)
	}
	for i, t := range f.Targets {
		if i == 0 {
			b.WriteString(" n")
		} else {
			b.WriteString(",n")
		}
		b.WriteString(strconv.Itoa(t))
	}
	heal := "healed after the workload"
	if f.HealS != nil {
		heal = fmt.Sprintf("%.1fs", *f.HealS)
	}
	fmt.Fprintf(&b, " %.1f–%s: unavailable %.1fs", f.InjectS, heal, f.UnavailableS)
	var outs []string
	if f.ReadOutageS != nil {
		outs = append(outs, fmt.Sprintf("reads out %.1fs", *f.ReadOutageS))
	}
	if f.WriteOutageS != nil {
		outs = append(outs, fmt.Sprintf("writes out %.1fs", *f.WriteOutageS))
	}
	if len(outs) > 0 {
		b.WriteString(" (" + strings.Join(outs, ", ") + ")")
	}
	first := func(what string, v *float64) string {
		if v != nil {
			return fmt.Sprintf("first ok %s %.0f ms", what, *v)
		}
		if f.HealS == nil || *f.HealS > f.HorizonS {
			return "no ok " + what + " before the next fault"
		}
		return "no ok " + what + " before the heal"
	}
	var firsts []string
	if f.ReadOutageS != nil || f.FirstReadMS != nil { // the workload has reads
		firsts = append(firsts, first("read", f.FirstReadMS))
	}
	if f.WriteOutageS != nil || f.FirstWriteMS != nil {
		firsts = append(firsts, first("write", f.FirstWriteMS))
	}
	if len(firsts) > 0 {
		b.WriteString("; " + strings.Join(firsts, ", "))
	}
	switch {
	case f.HealS == nil || *f.HealS >= f.HorizonS:
	case f.BackAfterHealMS == nil:
		b.WriteString("; throughput not back before the next fault")
	case *f.BackAfterHealMS == 0:
		b.WriteString("; no dip after the heal")
	default:
		fmt.Fprintf(&b, "; throughput back %.0f ms after the heal", *f.BackAfterHealMS)
	}
	return b.String()
}

// parseBytes reads a size: a number of bytes, or one followed by a unit
// (KB, MB, GB: powers of 1000; KiB, MiB, GiB: of 1024). Empty is zero.
func parseBytes(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	units := []struct {
		suffix string
		mult   float64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}
	num, mult := s, 1.0
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || !(v >= 0) || math.IsInf(v, 1) {
		return 0, fmt.Errorf("%q: want a size such as 100MB, 1GiB or 4096", s)
	}
	return int64(v * mult), nil
}
