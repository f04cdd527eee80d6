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
	svg        string
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
	fl.StringVar(&f.svg, "svg", "", "also plot watches/acq, requests/acq and p99 against N as SVG to this file")
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
	var results []zkrecipes.BenchResult
	for _, recipe := range recipes {
		for _, n := range counts {
			fmt.Fprintf(os.Stderr, "lockbench: %s N=%d ...\n", recipe, n)
			r, err := zkrecipes.RunBench(ctx, zkrecipes.BenchConfig{
				Addrs: addrs, Recipe: recipe, Contenders: n, Rounds: f.rounds, Hold: f.hold,
			})
			if err != nil {
				tw.Flush() // the rows measured so far
				return withCode(exitRunFailed, fmt.Errorf("lockbench %s N=%d: %w", recipe, n, err))
			}
			results = append(results, r)
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
	if f.svg != "" {
		if err := os.WriteFile(f.svg, []byte(lockbenchSVG(results)), 0o644); err != nil {
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

// lockbenchSVG draws three small panels (watches/acq, requests/acq, p99
// latency against N), one line per recipe: the herd effect at a glance,
// with no plotting dependency.
func lockbenchSVG(results []zkrecipes.BenchResult) string {
	type panel struct {
		title string
		val   func(zkrecipes.BenchResult) float64
	}
	panels := []panel{
		{"watch notifications per acquisition", func(r zkrecipes.BenchResult) float64 { return r.WatchesPerAcq() }},
		{"ZooKeeper requests per acquisition", func(r zkrecipes.BenchResult) float64 { return r.RequestsPerAcq() }},
		{"acquisition latency p99 (ms)", func(r zkrecipes.BenchResult) float64 { return msf(r.P99) }},
	}
	colors := map[string]string{"naive": "#d62728", "recipe": "#1f77b4"}
	const pw, ph, ml, mr, mt, mb = 320.0, 220.0, 50.0, 15.0, 30.0, 40.0
	maxN := 1
	for _, r := range results {
		maxN = max(maxN, r.Contenders)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="11">`+"\n",
		pw*float64(len(panels)), ph+20)
	for pi, p := range panels {
		x0 := pw * float64(pi)
		maxV := 0.0
		for _, r := range results {
			maxV = max(maxV, p.val(r))
		}
		if maxV == 0 {
			maxV = 1
		}
		maxV *= 1.1
		px := func(n int) float64 { return x0 + ml + (pw-ml-mr)*float64(n)/float64(maxN) }
		py := func(v float64) float64 { return mt + (ph-mt-mb)*(1-v/maxV) }
		fmt.Fprintf(&b, `<text x="%.1f" y="18" font-weight="bold">%s</text>`+"\n", x0+ml, p.title)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>`+"\n", px(0), py(0), px(maxN), py(0))
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>`+"\n", px(0), py(0), px(0), py(maxV))
		for _, v := range []float64{0, maxV / 2, maxV / 1.1} {
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%.3g</text>`+"\n", px(0)-4, py(v)+4, v)
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">contenders N</text>`+"\n", (px(0)+px(maxN))/2, ph-8)
		for _, recipe := range []string{"naive", "recipe"} {
			var pts []string
			for _, r := range results {
				if r.Recipe != recipe {
					continue
				}
				x, y := px(r.Contenders), py(p.val(r))
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, y))
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", x, y, colors[recipe])
				fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%d</text>`+"\n", x, py(0)+14, r.Contenders)
			}
			if len(pts) > 0 {
				fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", colors[recipe], strings.Join(pts, " "))
			}
		}
		for i, recipe := range []string{"naive", "recipe"} {
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="%s">%s</text>`+"\n", x0+ml+10, mt+14*float64(i+1), colors[recipe], recipe)
		}
	}
	b.WriteString("</svg>\n")
	return b.String()
}
