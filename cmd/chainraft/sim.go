package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/chainraft/chainraft/sim"
)

func init() {
	subcommands = append(subcommands, newSimCmd)
}

// simFlags are the flags of `chainraft sim`.
type simFlags struct {
	opts    sim.Options
	seeds   int
	workers int
	out     string
	trace   bool
	all     bool
}

func newSimCmd() *cobra.Command {
	var f simFlags
	cmd := &cobra.Command{
		Use:   "sim --store raft --seeds N [--seed S] [--bug NAME]",
		Short: "Run the store's real cores in a deterministic simulation, many seeded fault schedules a second",
		Long: `Sim runs the store's real deterministic cores in one simulated world per seed:
a simulated clock that jumps to the next event, a network with delay, loss,
duplication, reordering, every partition shape of the nemesis and one-way
cuts, disks that know what was synced (power loss drops the rest, a torn
final write), crashes and restarts that rebuild a core from its simulated
disk, pauses and clock skew. The harness's workload, recorder rules, history
format and checker judge each seed; once the faults stop, the cluster must
complete a write and a read within --liveness-bound or the seed fails with
"no progress", and then every replica must hold the same data.

Seeds --seed, --seed+1, ... --seed+N-1 run in parallel on every core; sim
stops at the first failing seed, writes its run directory (history.jsonl,
nemesis.jsonl, summary.json, report.html, porcupine/) under --out and prints
the one-line command that replays it. A single seed (--seeds 1) always
writes its run directory. The same seed writes the same history.jsonl, byte
for byte.

Exit codes: 0 every seed linearizable and live, 1 a seed not linearizable,
without progress, with diverging replicas or a broken invariant (panic), 2
bad usage, 3 unknown (the check ran out of budget), 4 the run directory
could not be written.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("seeds") && cmd.Flags().Changed("seed") {
				f.seeds = 1
			}
			return runSim(cmd, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.opts.Store, "store", "", "store to simulate: raft or chain")
	fl.IntVar(&f.seeds, "seeds", 100, "number of seeds to run")
	fl.Int64Var(&f.opts.Seed, "seed", 1, "first seed (alone: run just this seed and write its run directory)")
	fl.StringVar(&f.opts.Bug, "bug", "", "plant a seeded bug (raft: local-read, early-ack, no-dedup, no-fsync; chain: head-read, no-resend, stale-tail, early-reply, craq-dirty-read with --read-mode craq)")
	fl.StringVar(&f.opts.ReadMode, "read-mode", "", "read mode: raft index (default) or lease; chain tail (default) or craq")
	fl.BoolVar(&f.opts.NoFsync, "no-fsync", false, "nodes never fsync: only writeback makes data durable")
	fl.DurationVar(&f.opts.FaultTime, "fault-time", 0, "simulated time with faults per seed (default 10s)")
	fl.DurationVar(&f.opts.LivenessBound, "liveness-bound", 0, "simulated time the cluster has to make progress once faults stop (default 10s)")
	fl.DurationVar(&f.opts.RequestTimeout, "request-timeout", 0, "client request timeout, retries included (default 1s)")
	fl.IntVar(&f.workers, "workers", 0, "seeds run at once (default: every core)")
	fl.StringVar(&f.out, "out", "runs", "directory for run directories")
	fl.BoolVar(&f.all, "all", false, "run every seed even after a failure, and count the failing seeds (a detection rate)")
	fl.BoolVar(&f.trace, "trace", false, "print each seed's event log (faults, phases) as it runs; with --seeds 1")
	return cmd
}

func runSim(cmd *cobra.Command, f simFlags) error {
	if f.opts.Store == "" {
		return usageErrorf("--store is required (%v)", sim.Stores())
	}
	if f.seeds <= 0 {
		return usageErrorf("--seeds must be positive, got %d", f.seeds)
	}
	if err := f.opts.Validate(); err != nil {
		return withCode(exitUsage, err)
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	out := cmd.OutOrStdout()
	command := append([]string{"chainraft"}, os.Args[1:]...)

	if f.seeds == 1 {
		o := f.opts
		if f.trace {
			o.Trace = out
		}
		res := sim.Run(o)
		printSeed(out, res)
		return finishSim(ctx, out, f, res, command)
	}

	workers := f.workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	fmt.Fprintf(out, "sim: %s store, seeds %d..%d on %d workers\n", f.opts.Store, f.opts.Seed, f.opts.Seed+int64(f.seeds)-1, workers)
	began := time.Now()
	var simulated time.Duration
	lastPrint := time.Now()
	done := 0
	run := sim.RunSeeds
	if f.all {
		run = sim.RunAllSeeds
	}
	sr := run(ctx, f.opts, f.opts.Seed, f.seeds, workers, func(r *sim.Result) {
		done++
		simulated += r.SimTime
		if time.Since(lastPrint) >= 5*time.Second {
			lastPrint = time.Now()
			fmt.Fprintf(out, "sim: %d/%d seeds, %.0fs\n", done, f.seeds, time.Since(began).Seconds())
		}
	})
	wall := time.Since(began)
	if ctx.Err() != nil && sr.Failed == nil {
		return withCode(exitRunFailed, fmt.Errorf("interrupted after %d seeds", sr.Ran))
	}
	if sr.Failed == nil {
		fmt.Fprintf(out, "sim: %d seeds passed in %.1fs (%.0f simulated seconds, %.0f× real time)\n",
			sr.Ran, wall.Seconds(), simulated.Seconds(), simulated.Seconds()/wall.Seconds())
		return nil
	}
	if f.all {
		n := 0
		for _, c := range sr.Failures {
			n += c
		}
		fmt.Fprintf(out, "sim: %d of %d seeds failed (%v) in %.1fs; the first:\n", n, sr.Ran, sr.Failures, wall.Seconds())
	} else {
		fmt.Fprintf(out, "sim: seed %d failed after %d seeds in %.1fs\n", sr.Failed.Options.Seed, sr.Ran, wall.Seconds())
	}
	printSeed(out, sr.Failed)
	return finishSim(ctx, out, f, sr.Failed, command)
}

// printSeed prints one seed's outcome.
func printSeed(w io.Writer, r *sim.Result) {
	status := "passed"
	if !r.Passed() {
		status = r.Failure + ": " + firstLineOf(r.Detail)
	}
	fmt.Fprintf(w, "seed %d: %s (%d nodes, %d clients, %d ops, %.1f simulated s, %.2fs)\n",
		r.Options.Seed, status, r.Nodes, r.Clients, len(r.Ops), r.SimTime.Seconds(), r.Wall.Seconds())
}

// finishSim writes the seed's run directory when it failed or was the only
// one, prints the replay command, and maps the outcome to the exit code.
func finishSim(ctx context.Context, out io.Writer, f simFlags, r *sim.Result, command []string) error {
	dir, err := sim.WriteRunDir(ctx, f.out, r, command)
	if dir != "" {
		fmt.Fprintf(out, "run directory: %s\n", dir)
	}
	if !r.Passed() {
		fmt.Fprintf(out, "replay: %s\n", sim.ReplayCommand(r.Options))
	}
	if err != nil {
		return withCode(exitRunFailed, fmt.Errorf("writing the run directory: %w", err))
	}
	switch r.Failure {
	case "":
		return nil
	case sim.FailUnknown:
		return withCode(exitUnknown, fmt.Errorf("seed %d: %s", r.Options.Seed, r.Detail))
	default:
		return withCode(exitIllegal, errors.New(firstLineOf(fmt.Sprintf("seed %d: %s: %s", r.Options.Seed, r.Failure, r.Detail))))
	}
}

func firstLineOf(s string) string {
	for i, c := range s {
		if c == '\n' {
			return s[:i]
		}
	}
	return s
}
