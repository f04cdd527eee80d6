package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/chainraft/chainraft/harness"
	"github.com/chainraft/chainraft/harness/report"
	"github.com/chainraft/chainraft/histories"
)

func init() {
	subcommands = append(subcommands, newCompareCmd)
}

// compareFlags are the flags of `chainraft compare`: run's workload and
// cluster flags, the stores, and how faults are aimed.
type compareFlags struct {
	runFlags
	stores  string
	targets string
	sweep   string
	// refused are run's flags compare does not take, each with the reason
	// it gives when one is used.
	refusedBug, refusedWorkload string
	flags                       *pflag.FlagSet
}

// compareRefuses are the flags of `run` that compare does not take, and
// why; they are registered (hidden) so that using one says why instead of
// "unknown flag".
var compareRefuses = map[string]string{
	"bug":      "a planted bug belongs to one store, and a comparison of a store with a bug against one without measures the bug: use run --store S --bug NAME",
	"workload": "the lock workload runs against ZooKeeper alone, with no store to compare: use run --workload lock",
}

// defaultCompareStores are the stores `chainraft compare` runs, in order:
// the two designs the project compares.
var defaultCompareStores = []string{"raft", "chain"}

func newCompareCmd() *cobra.Command {
	f := compareFlags{runFlags: runFlags{cmdName: "compare"}}
	cmd := &cobra.Command{
		Use:   "compare",
		Short: "Run the raft and the chain store under the same workload and compare them",
		Long: `Compare runs each store of --stores in turn (raft, then chain, by default)
with the same seed and workload for --time-limit each, checks every run, and
prints them side by side, then the table mapping each store's roles onto
the other's. The runs are ordinary run directories under --out; the
compare directory <out>/<timestamp>-compare/ links them and holds
compare.json and compare.html.

Faults: --nemesis makes a schedule for the first store (critical: its most
critical role killed, paused and cut off, once each; or kinds drawn from
the seed; or --replay FILE); every later store replays it (same faults, same
offsets), aimed by --targets (role: each role mapped to the role of the
other store that does the same job, as the printed role table shows;
same-node: the node ids the first run's faults hit).

Compare takes every flag of run but --bug (a planted bug belongs to one
store) and --workload (the lock workload has no store to compare).

The table leads with the verdict, then availability: healthy ok ops/s (the
rate outside every fault and its recovery: speed) and unavailable seconds
(time below a tenth of that rate: availability); then throughput over the
whole run, latency, each fault's cost, and cost per operation. The last
column is each later store's value over the first's; a value is marked
better (* here, bold on compare.html) only when it beats the other by more
than 10%, and by more than the row's own noise for times.

--sweep-read-fraction 0.1,0.5,0.9 repeats the comparison for each read
fraction and ends with throughput against read fraction.

Exit codes: the worst of the runs: 1 if any is not linearizable, 4 if a run
failed or was interrupted, 3 if a verdict is unknown, 0 if all are ok;
2 for bad usage.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ccfg, fractions, err := f.config()
			if err != nil {
				return err
			}
			ccfg.Run.Command = append([]string{"chainraft"}, os.Args[1:]...)
			if !f.quiet {
				ccfg.Run.Progress = cmd.ErrOrStderr()
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			pool, err := openHosts(ctx, f.hosts, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer closeHosts(pool, cmd.ErrOrStderr())
			ccfg.Run.Cluster.Hosts = pool
			out := cmd.OutOrStdout()
			var results []*harness.CompareResult
			var errs []error
			for _, rf := range fractions {
				c := ccfg
				if rf >= 0 {
					c.Run.Workload.ReadFraction = rf
					c.Run.Name = c.Run.Name + "-r" + strconv.FormatFloat(rf, 'f', -1, 64)
					fmt.Fprintf(out, "== read fraction %v ==\n", rf)
				}
				res, err := harness.Compare(ctx, c)
				if res != nil {
					printCompare(out, res)
					results = append(results, res)
				}
				errs = append(errs, err)
				if err != nil && (errors.Is(err, harness.ErrInterrupted) || res == nil) {
					break
				}
			}
			if len(fractions) > 1 {
				printSweep(out, fractions, results)
			}
			return compareExit(results, errs)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.stores, "stores", strings.Join(defaultCompareStores, ","), "stores to compare, run in this order: "+strings.Join(harness.Stores(), ", "))
	f.addFlags(fl, 30*time.Second)
	fl.Lookup("time-limit").Usage = "how long the workload runs against each store"
	fl.Lookup("name").DefValue = "compared"
	f.name = "compared"
	fl.StringVar(&f.targets, "targets", harness.TargetsRole, "how faults are aimed in the later runs: role (leader <-> head) or same-node")
	fl.StringVar(&f.sweep, "sweep-read-fraction", "", "comma-separated read fractions: one comparison per fraction (overrides --read-fraction)")
	fl.Lookup("nemesis").Usage += ". The first store's schedule is replayed on the others, roles mapped by job"
	fl.StringVar(&f.refusedBug, "bug", "", "refused by compare: "+compareRefuses["bug"])
	fl.StringVar(&f.refusedWorkload, "workload", "", "refused by compare: "+compareRefuses["workload"])
	_ = fl.MarkHidden("bug")
	_ = fl.MarkHidden("workload")
	f.flags = fl
	return cmd
}

// config validates the flags. fractions is the sweep, or {-1} for one
// comparison at --read-fraction.
func (f *compareFlags) config() (harness.CompareConfig, []float64, error) {
	var stores []string
	for _, s := range strings.Split(f.stores, ",") {
		if s = strings.TrimSpace(s); s != "" {
			stores = append(stores, s)
		}
	}
	for _, name := range []string{"bug", "workload"} {
		if fl := f.flags.Lookup(name); fl != nil && fl.Changed {
			return harness.CompareConfig{}, nil, usageErrorf("compare: --%s is refused: %s", name, compareRefuses[name])
		}
	}
	if strings.Contains(","+f.stores+",", ",,") || strings.HasSuffix(strings.TrimSpace(f.stores), ",") {
		return harness.CompareConfig{}, nil, usageErrorf("compare: --stores %q has an empty entry", f.stores)
	}
	known := harness.Stores()
	if len(stores) == 0 {
		return harness.CompareConfig{}, nil, usageErrorf("compare: --stores is empty")
	}
	for _, s := range stores {
		if !slices.Contains(known, s) {
			return harness.CompareConfig{}, nil, usageErrorf("compare: unknown store %q in --stores (known: %s)", s, strings.Join(known, ", "))
		}
	}
	if f.targets != harness.TargetsRole && f.targets != harness.TargetsSameNode {
		return harness.CompareConfig{}, nil, usageErrorf("compare: --targets must be %s or %s, got %q", harness.TargetsRole, harness.TargetsSameNode, f.targets)
	}
	fractions := []float64{-1}
	if f.sweep != "" {
		fractions = nil
		for _, part := range strings.Split(f.sweep, ",") {
			v, err := strconv.ParseFloat(strings.TrimSpace(part), 64)
			if err != nil || !(v >= 0 && v <= 1) { // NaN is no fraction
				return harness.CompareConfig{}, nil, usageErrorf("compare: --sweep-read-fraction: %q is not a fraction in [0,1]", part)
			}
			fractions = append(fractions, v)
		}
	}
	f.store = stores[0]
	rc, err := f.runFlags.config()
	if err != nil {
		return harness.CompareConfig{}, nil, err
	}
	if rc.Nemesis, err = f.nemesisConfig(rc.Driver); err != nil {
		return harness.CompareConfig{}, nil, err
	}
	ccfg := harness.CompareConfig{Stores: stores, Run: rc, Targets: f.targets}
	if err := ccfg.Validate(); err != nil {
		return harness.CompareConfig{}, nil, usageErrorf("compare: %v", err)
	}
	return ccfg, fractions, nil
}

// compareExit is the worst outcome over every run of every comparison:
// not linearizable (1) over a failed or interrupted run (4) over an
// unknown verdict (3) over ok (0).
func compareExit(results []*harness.CompareResult, errs []error) error {
	code, why := exitOK, ""
	worse := func(c int, w string) {
		rank := map[int]int{exitOK: 0, exitUnknown: 1, exitRunFailed: 2, exitIllegal: 3}
		if rank[c] > rank[code] {
			code, why = c, w
		}
	}
	for _, err := range errs {
		if errors.Is(err, harness.ErrInvalidConfig) {
			return withCode(exitUsage, err)
		}
		if err != nil {
			worse(exitRunFailed, err.Error())
		}
	}
	if len(results) == 0 {
		worse(exitRunFailed, "no comparison ran")
	}
	for _, res := range results {
		for _, r := range res.Runs {
			switch {
			case r.Verdict == string(histories.VerdictIllegal):
				worse(exitIllegal, fmt.Sprintf("%s is not linearizable: see %s", r.Store, filepath.Join(res.Dir, r.Dir)))
			case r.Err != nil:
				worse(exitRunFailed, fmt.Sprintf("%s run failed: %v", r.Store, r.Err))
			case r.Verdict != string(histories.VerdictOK):
				worse(exitUnknown, fmt.Sprintf("%s: verdict unknown (the check ran out of budget): see %s", r.Store, filepath.Join(res.Dir, r.Dir)))
			}
		}
	}
	if code == exitOK {
		return nil
	}
	return withCode(code, errors.New(why))
}

// printCompare prints the side-by-side table and where the page is:
// metrics left-aligned, values right-aligned in one column per run.
func printCompare(w io.Writer, res *harness.CompareResult) {
	header := []string{""}
	for _, r := range res.Runs {
		name := r.Store
		if r.Dir != "" {
			name = r.Dir // "memory-2" when a store is compared with itself
		}
		header = append(header, name)
	}
	for i, n := 2, len(header); i < n; i++ {
		header = append(header, header[i]+" / "+header[1])
	}
	lines := [][]string{header}
	section := ""
	for _, row := range res.Rows {
		if row.Section != section {
			section = row.Section
			lines = append(lines, []string{section})
		}
		line := append([]string{"  " + row.Metric}, row.Text...)
		for i := range row.Text {
			if best := bestOf(row); best == i {
				line[i+1] = "*" + line[i+1]
			}
		}
		lines = append(lines, append(line, row.Ratio...))
	}
	widths := make([]int, len(header))
	for _, l := range lines {
		if len(l) == 1 {
			continue // a section title spans the row
		}
		for i, c := range l {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	for _, l := range lines {
		var b strings.Builder
		for i, c := range l {
			pad := strings.Repeat(" ", max(widths[i]-utf8.RuneCountInString(c), 0))
			if i == 0 {
				b.WriteString(c + pad)
			} else {
				b.WriteString("  " + pad + c)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	fmt.Fprintf(w, "* better by more than %.0f%%; healthy: outside faults and their recovery; unavailable: ok rate below a tenth of healthy\n", 100*report.NoiseFraction)
	printRoles(w, res)
	for _, r := range res.Runs {
		if r.Dir != "" {
			fmt.Fprintf(w, "%-14s%s\n", "run "+r.Dir+":", filepath.Join(res.Dir, r.Dir))
		}
	}
	fmt.Fprintf(w, "verdict:      %s\n", res.Verdict())
	fmt.Fprintf(w, "compare.json: %s\n", filepath.Join(res.Dir, "compare.json"))
	fmt.Fprintf(w, "compare.html: %s\n", filepath.Join(res.Dir, "compare.html"))
}

// bestOf is the index of the run a row marks better, -1 for none.
func bestOf(row report.CompareRow) int { return report.BestOf(row) }

// printRoles prints how each store's roles map onto the others': who a
// fault aimed at a role hits in each other store, so that a reader can
// see the stores took the same blows.
func printRoles(w io.Writer, res *harness.CompareResult) {
	if len(res.Roles) == 0 {
		return
	}
	var stores []string
	for _, r := range res.Roles {
		if !slices.Contains(stores, r.Store) {
			stores = append(stores, r.Store)
		}
	}
	fmt.Fprintln(w, "roles (a fault aimed at a role hits, in each other store, the role doing the same job):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "  store\trole\tjobs")
	for _, st := range stores {
		fmt.Fprintf(tw, "\tin %s", st)
	}
	fmt.Fprintln(tw)
	for _, r := range res.Roles {
		role := r.Role
		if r.Critical {
			role += " (most critical)"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s", r.Store, role, strings.Join(r.Jobs, ", "))
		for _, st := range stores {
			switch m, ok := r.MapsTo[st]; {
			case st == r.Store:
				fmt.Fprint(tw, "\t–")
			case !ok || m == "":
				fmt.Fprint(tw, "\tnone")
			default:
				fmt.Fprintf(tw, "\t%s", m)
			}
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
}

// printSweep prints ok throughput (all, reads, writes) against the read
// fraction, one column per store: the paper's question of how each
// design fares as the update fraction grows.
func printSweep(w io.Writer, fractions []float64, results []*harness.CompareResult) {
	if len(results) == 0 {
		return
	}
	fmt.Fprintln(w, "== ok ops/s by read fraction (all / reads / writes) ==")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "read fraction\t")
	for _, r := range results[0].Runs {
		fmt.Fprintf(tw, "%s\t", r.Store)
	}
	fmt.Fprintln(tw)
	for i, res := range results {
		fmt.Fprintf(tw, "%v\t", fractions[i])
		for j := range res.Runs {
			fmt.Fprintf(tw, "%s / %s / %s\t", rowText(res, "ok ops/s", j), rowText(res, "read ops/s", j), rowText(res, "write ops/s", j))
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
}

func rowText(res *harness.CompareResult, metric string, i int) string {
	for _, row := range res.Rows {
		if row.Metric == metric && i < len(row.Text) {
			return row.Text[i]
		}
	}
	return "–"
}
