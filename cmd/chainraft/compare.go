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

	"github.com/chainraft/chainraft/harness"
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
	// nemesis and nemesisInterval are registered here only while run's
	// shared flags (addFlags) have no nemesis flags of their own; once they
	// do, runFlags.config carries the schedule into every run and these stay
	// unset.
	nemesis         *string
	nemesisInterval *time.Duration
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
prints them side by side: throughput, latency per op kind, recovery per
fault kind, verdicts. The runs are ordinary run directories under --out; the
compare directory <out>/<timestamp>-compare/ links them and holds
compare.json and compare.html.

Faults: --nemesis makes a schedule from the seed for the first store; every
later store replays it (same faults, same offsets), aimed by --targets
(role: leader <-> head, follower <-> tail; same-node: the node ids the first
run's faults hit).

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
	if fl.Lookup("nemesis") == nil {
		f.nemesis = fl.String("nemesis", "", "fault kinds, comma-separated (kill, pause, partition, zk, member, delay, all); empty: no faults. The first store's schedule is replayed on the others")
		f.nemesisInterval = fl.Duration("nemesis-interval", 5*time.Second, "time between faults and each fault's length")
	}
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
			if err != nil || v < 0 || v > 1 {
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
	if f.nemesis != nil && *f.nemesis != "" {
		for _, k := range strings.Split(*f.nemesis, ",") {
			if k = strings.TrimSpace(k); k != "" && k != "none" {
				rc.Nemesis.Kinds = append(rc.Nemesis.Kinds, k)
			}
		}
		rc.Nemesis.Interval = *f.nemesisInterval
		if rc.Nemesis.Interval <= 0 {
			return harness.CompareConfig{}, nil, usageErrorf("compare: --nemesis-interval must be positive, got %v", rc.Nemesis.Interval)
		}
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
	lines := [][]string{header}
	section := ""
	for _, row := range res.Rows {
		if row.Section != section {
			section = row.Section
			lines = append(lines, []string{section})
		}
		lines = append(lines, append([]string{"  " + row.Metric}, row.Text...))
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
	for _, r := range res.Runs {
		if r.Dir != "" {
			fmt.Fprintf(w, "%-14s%s\n", "run "+r.Dir+":", filepath.Join(res.Dir, r.Dir))
		}
	}
	fmt.Fprintf(w, "verdict:      %s\n", res.Verdict())
	fmt.Fprintf(w, "compare.json: %s\n", filepath.Join(res.Dir, "compare.json"))
	fmt.Fprintf(w, "compare.html: %s\n", filepath.Join(res.Dir, "compare.html"))
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
