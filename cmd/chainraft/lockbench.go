package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/chainraft/chainraft/internal/proc"
	"github.com/chainraft/chainraft/internal/zkserver"
	"github.com/chainraft/chainraft/zkrecipes"
)

// lockbench measures the herd effect: the naive ZooKeeper lock wakes every
// waiter at each release, the recipe lock one. It runs against a real
// ZooKeeper: its own (started from the installed jars) unless --zk names one.

type lockbenchFlags struct {
	recipes    string
	contenders string
	rounds     int
	hold       time.Duration
	zk         string
	zkServers  int
	dir        string
	csv        string
}

func init() {
	subcommands = append(subcommands, newLockbenchCmd)
}

func newLockbenchCmd() *cobra.Command {
	var f lockbenchFlags
	cmd := &cobra.Command{
		Use:   "lockbench",
		Short: "Measure the ZooKeeper lock recipes' herd effect (naive vs recipe)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runLockbench(cmd.Context(), cmd.OutOrStdout(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.recipes, "recipe", "naive,recipe", "lock recipes to measure: naive, recipe, or both comma-separated")
	fl.StringVar(&f.contenders, "contenders", "10,50,100", "contender counts, comma-separated (one ZooKeeper session each)")
	fl.IntVar(&f.rounds, "rounds", 5, "acquisitions per contender")
	fl.DurationVar(&f.hold, "hold", time.Millisecond, "how long a holder keeps the lock")
	fl.StringVar(&f.zk, "zk", "", "use this ZooKeeper ensemble (host:port,...) instead of starting one")
	fl.IntVar(&f.zkServers, "zk-servers", 1, "size of the ZooKeeper ensemble to start (1 or 3)")
	fl.StringVar(&f.dir, "dir", "", "directory for the started ZooKeeper's files (default: a temporary one, removed)")
	fl.StringVar(&f.csv, "csv", "", "also write the results as CSV to this file")
	return cmd
}

func parseCounts(s string) ([]int, error) {
	var out []int
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		n, err := strconv.Atoi(part)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("bad contender count %q", part)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no contender counts")
	}
	return out, nil
}

func runLockbench(ctx context.Context, out io.Writer, f lockbenchFlags) error {
	counts, err := parseCounts(f.contenders)
	if err != nil {
		return usageErrorf("lockbench: --contenders: %v", err)
	}
	var recipes []string
	for _, r := range strings.Split(f.recipes, ",") {
		switch r = strings.TrimSpace(r); r {
		case "naive", "recipe":
			recipes = append(recipes, r)
		case "":
		default:
			return usageErrorf("lockbench: --recipe %q: want naive, recipe or naive,recipe", r)
		}
	}
	if len(recipes) == 0 {
		return usageErrorf("lockbench: --recipe is empty")
	}
	if f.rounds < 1 {
		return usageErrorf("lockbench: --rounds must be >= 1")
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	stopNet := proc.KillAllOnSignal()
	defer stopNet()

	addrs := zkrecipes.SplitAddrs(f.zk)
	if len(addrs) == 0 {
		dir := f.dir
		if dir == "" {
			tmp, err := os.MkdirTemp("", "chainraft-lockbench-")
			if err != nil {
				return withCode(exitRunFailed, err)
			}
			defer os.RemoveAll(tmp)
			dir = tmp
		}
		ens, err := zkserver.Start(ctx, zkserver.Config{Dir: dir, Servers: f.zkServers})
		if err != nil {
			return withCode(exitRunFailed, fmt.Errorf("lockbench: %w", err))
		}
		defer ens.Close()
		addrs = ens.Addrs()
		fmt.Fprintf(out, "ZooKeeper: %d server(s) at %s (started from the installed jars)\n", ens.Size(), ens.ConnectString())
	} else {
		fmt.Fprintf(out, "ZooKeeper: %s\n", strings.Join(addrs, ","))
	}
	fmt.Fprintf(out, "each contender: own session, %d acquisitions, hold %v\n\n", f.rounds, f.hold)

	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "recipe\tN\tacquisitions\twatches/acq\trequests/acq\tp50\tp99\tmax\toverlaps\telapsed\t")
	var csv strings.Builder
	csv.WriteString("recipe,contenders,acquisitions,watches_per_acq,requests_per_acq,p50_ms,p99_ms,max_ms,overlaps\n")
	var failed error
	for _, recipe := range recipes {
		for _, n := range counts {
			fmt.Fprintf(os.Stderr, "lockbench: %s N=%d ...\n", recipe, n)
			r, err := zkrecipes.RunBench(ctx, zkrecipes.BenchConfig{
				Addrs: addrs, Recipe: recipe, Contenders: n, Rounds: f.rounds, Hold: f.hold,
			})
			if err != nil {
				tw.Flush()
				return withCode(exitRunFailed, fmt.Errorf("lockbench %s N=%d: %w", recipe, n, err))
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%.2f\t%.2f\t%s\t%s\t%s\t%d\t%s\t\n", recipe, n, r.Acquisitions,
				r.WatchesPerAcq(), r.RequestsPerAcq(), ms(r.P50), ms(r.P99), ms(r.Max), r.Overlaps,
				r.Elapsed.Round(time.Millisecond))
			fmt.Fprintf(&csv, "%s,%d,%d,%.3f,%.3f,%.3f,%.3f,%.3f,%d\n", recipe, n, r.Acquisitions,
				r.WatchesPerAcq(), r.RequestsPerAcq(), msf(r.P50), msf(r.P99), msf(r.Max), r.Overlaps)
			if r.Overlaps > 0 || r.TokenRegressions > 0 {
				failed = fmt.Errorf("lockbench %s N=%d: mutual exclusion violated (%d overlaps, %d token regressions)",
					recipe, n, r.Overlaps, r.TokenRegressions)
			}
		}
	}
	tw.Flush()
	fmt.Fprintln(out, "\nwatches/acq: watch notifications delivered to waiters per acquisition (the herd);")
	fmt.Fprintln(out, "requests/acq: every ZooKeeper request per acquisition, release and loss guard included;")
	fmt.Fprintln(out, "p50/p99/max: time from Lock() to holding.")
	if f.csv != "" {
		if err := os.WriteFile(f.csv, []byte(csv.String()), 0o644); err != nil {
			return withCode(exitRunFailed, err)
		}
	}
	if failed != nil {
		return withCode(exitIllegal, failed)
	}
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", msf(d)) }

func msf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
