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
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/chainraft/chainraft/harness"
	"github.com/chainraft/chainraft/histories"
)

func init() {
	subcommands = append(subcommands, newScaleCmd)
}

// scaleFlags are `chainraft scale`'s flags: run's workload and cluster
// flags but the single --nodes and --node-cpus (lists here) and the
// nemesis (a sweep measures healthy clusters), plus the series.
type scaleFlags struct {
	runFlags
	stores, single, nodeList, cpuList string
	clientsPerNode                    int
}

// scaleSkips are run's flags scale does not take: it sweeps nodes and
// quotas itself, and measures without faults, one store at a time.
var scaleSkips = []string{"nodes", "node-cpus", "nemesis", "nemesis-interval", "nemesis-overlap", "replay", "bug", "workload", "recipe", "fencing", "hosts", "store"}

func newScaleCmd() *cobra.Command {
	f := scaleFlags{runFlags: runFlags{cmdName: "scale"}}
	cmd := &cobra.Command{
		Use:   "scale",
		Short: "Measure each store at several cluster sizes and CPU quotas, shards = nodes",
		Long: `Scale runs each store of --stores at each node count of --nodes and each
per-node CPU quota of --node-cpus, one run each (no faults), with the keys
split into as many shards as there are nodes: chains = raft groups = nodes
(--replicas and --group-size set each shard's members, 3 by default).
--single adds, for contrast, series whose stores keep one shard (raft/1:
one raft group of every node, the plain store). Every run is checked for
linearizability.

The scale directory <out>/<timestamp>-scale/ links the runs and holds
scale.json and scale.html: throughput, latency, node CPU per operation
(all nodes and the busiest), messages per operation, each against the node
count (and against the quota when there are several); and what the busiest
node's CPU per operation predicts for N separate servers with the quota's
cores each, with the measured share of that prediction.

Clients: --clients-per-node (12) clients per node, so that each node has
as many requests in flight at every size (a node batches what is queued:
16 clients over 7 nodes measure thinner batches, not more servers);
--clients-per-node 0 runs --clients at every size.

Scale-out: --nodes 3,5,7,9 --node-cpus 0.1. Scale-up: --nodes 3
--node-cpus 0.25,0.5,1.

Exit codes as compare's: 1 if any run is not linearizable, 4 if one failed
or was interrupted, 3 if a verdict is unknown, 0 if all are ok; 2 for bad
usage.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.config()
			if err != nil {
				return err
			}
			cfg.Run.Command = append([]string{"chainraft"}, os.Args[1:]...)
			if !f.quiet {
				cfg.Run.Progress = cmd.ErrOrStderr()
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			res, err := harness.Scale(ctx, cfg)
			if res != nil {
				printScale(cmd.OutOrStdout(), res)
			}
			return scaleExit(res, err)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.stores, "stores", "raft,chain", "stores to sweep, with shards = nodes; store/K fixes K shards")
	fl.StringVar(&f.single, "single", "raft", "stores also swept with one shard, for contrast (empty: none)")
	fl.StringVar(&f.nodeList, "nodes", "3,5,7,9", "comma-separated node counts")
	fl.IntVar(&f.clientsPerNode, "clients-per-node", 12, "clients per node, so the load per node stays the same at every size (0: --clients at every size)")
	fl.StringVar(&f.cpuList, "node-cpus", "0", "comma-separated CPU quotas per node in cores, each node in a cgroup of its own (needs root and a cgroup cpu controller; 0: no limit)")
	all := pflag.NewFlagSet("run", pflag.ContinueOnError)
	f.addFlags(all, 15*time.Second)
	all.VisitAll(func(fl2 *pflag.Flag) {
		if !slices.Contains(scaleSkips, fl2.Name) && fl.Lookup(fl2.Name) == nil {
			fl.AddFlag(fl2)
		}
	})
	fl.Lookup("name").DefValue = "scale"
	f.name = "scale"
	fl.Lookup("time-limit").Usage = "how long the workload runs in each run"
	return cmd
}

// config validates the flags into a sweep.
func (f *scaleFlags) config() (harness.ScaleConfig, error) {
	var cfg harness.ScaleConfig
	add := func(spec string, shards int) error {
		s, err := harness.ParseScaleSeries(spec)
		if err != nil {
			return usageErrorf("scale: --stores: %v", err)
		}
		if shards > 0 {
			if s.Shards > 0 {
				return usageErrorf("scale: --single %q: give a store name alone", spec)
			}
			s.Shards = shards
		}
		if !slices.Contains(harness.Stores(), s.Store) {
			return usageErrorf("scale: unknown store %q (known: %s)", s.Store, strings.Join(harness.Stores(), ", "))
		}
		if !slices.ContainsFunc(cfg.Series, func(o harness.ScaleSeries) bool { return o == s }) {
			cfg.Series = append(cfg.Series, s)
		}
		return nil
	}
	for _, spec := range splitList(f.stores) {
		if err := add(spec, 0); err != nil {
			return cfg, err
		}
	}
	for _, spec := range splitList(f.single) {
		if err := add(spec, 1); err != nil {
			return cfg, err
		}
	}
	if len(cfg.Series) == 0 {
		return cfg, usageErrorf("scale: --stores is empty")
	}
	for _, s := range splitList(f.nodeList) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return cfg, usageErrorf("scale: --nodes: %q is not a positive node count", s)
		}
		cfg.Nodes = append(cfg.Nodes, n)
	}
	for _, s := range splitList(f.cpuList) {
		c, err := strconv.ParseFloat(s, 64)
		if err != nil || !(c >= 0) || math.IsInf(c, 1) {
			return cfg, usageErrorf("scale: --node-cpus: %q is not a number of cores", s)
		}
		cfg.NodeCPUs = append(cfg.NodeCPUs, c)
	}
	if len(cfg.Nodes) == 0 {
		return cfg, usageErrorf("scale: --nodes is empty")
	}
	// run's checks, on the first point of the sweep (the largest quota, so
	// that a machine without CPU control is refused before anything runs).
	f.store, f.nodes = cfg.Series[0].Store, cfg.Nodes[0]
	for _, c := range cfg.NodeCPUs {
		f.nodeCPUs = max(f.nodeCPUs, c)
	}
	rc, err := f.runFlags.config()
	if err != nil {
		return cfg, err
	}
	cfg.Run = rc
	if f.clientsPerNode < 0 {
		return cfg, usageErrorf("scale: --clients-per-node must not be negative, got %d", f.clientsPerNode)
	}
	cfg.ClientsPerNode = f.clientsPerNode
	if err := cfg.Validate(); err != nil {
		return cfg, usageErrorf("%v", err)
	}
	return cfg, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// printScale prints one line per run and where the page is.
func printScale(w io.Writer, res *harness.ScaleResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "series\tnodes\tshards\tCPU/node\tclients\tverdict\tok ops/s\treads/s\twrites/s\tp99 ms\tCPU µs/op\tbusiest µs/op\tmsgs/op\tpredicted ops/s\tmeasured/predicted\tmeasured/linear\t")
	for _, p := range res.Points {
		cpu := "none"
		if p.NodeCPUs > 0 {
			cpu = strconv.FormatFloat(p.NodeCPUs, 'f', -1, 64)
		}
		v := p.Verdict
		if p.Error != "" {
			v += " (" + firstLine(p.Error) + ")"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%d\t%s\t%.0f\t%.0f\t%.0f\t%.1f\t%s\t%s\t%s\t%s\t%s\t%s\t\n", p.Series, p.Nodes, p.Shards, cpu, p.Clients, v,
			p.Throughput, p.ReadOps, p.WriteOps, p.P99MS, num(p.CPUPerOpUS, 0), num(p.BusiestCPUPerOpUS, 0), num(p.MessagesPerOp, 1),
			num(p.PredictedOps, 0), pct(p.Agreement), pct(p.LinearRatio))
	}
	tw.Flush()
	fmt.Fprintf(w, "verdict:    %s\n", res.Verdict())
	fmt.Fprintf(w, "scale.json: %s\n", filepath.Join(res.Dir, "scale.json"))
	fmt.Fprintf(w, "scale.html: %s\n", filepath.Join(res.Dir, "scale.html"))
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 60 {
		s = s[:60] + "…"
	}
	return s
}

func num(v *float64, prec int) string {
	if v == nil {
		return "–"
	}
	return strconv.FormatFloat(*v, 'f', prec, 64)
}

func pct(v *float64) string {
	if v == nil {
		return "–"
	}
	return fmt.Sprintf("%.0f%%", 100**v)
}

// scaleExit is the worst outcome over the runs, as compareExit.
func scaleExit(res *harness.ScaleResult, err error) error {
	if errors.Is(err, harness.ErrInvalidConfig) {
		return withCode(exitUsage, err)
	}
	if res == nil {
		if err == nil {
			err = errors.New("no run")
		}
		return withCode(exitRunFailed, err)
	}
	code, why := exitOK, ""
	rank := map[int]int{exitOK: 0, exitUnknown: 1, exitRunFailed: 2, exitIllegal: 3}
	worse := func(c int, w string) {
		if rank[c] > rank[code] {
			code, why = c, w
		}
	}
	if err != nil {
		worse(exitRunFailed, err.Error())
	}
	for _, p := range res.Points {
		name := fmt.Sprintf("%s at %d nodes", p.Series, p.Nodes)
		switch {
		case p.Verdict == string(histories.VerdictIllegal):
			worse(exitIllegal, name+" is not linearizable: see "+filepath.Join(res.Dir, p.Link))
		case p.Error != "":
			worse(exitRunFailed, name+": "+p.Error)
		case p.Verdict != string(histories.VerdictOK):
			worse(exitUnknown, name+": verdict unknown")
		}
	}
	if code == exitOK {
		return nil
	}
	return withCode(code, errors.New(why))
}
