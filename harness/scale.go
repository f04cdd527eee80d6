package harness

// Scale: the same workload against each store at several cluster sizes
// (scale-out) and several CPU quotas per node (scale-up), with the data
// split into as many shards as there are nodes — chains for the chain
// store, raft groups for raft — so that each size is the store's own best
// shape, not one tuned for three nodes. The runs are ordinary runs in Out;
// the scale directory Out/<timestamp>-scale/ links them and holds
// scale.json and scale.html (report.WriteScale).
//
// On one machine every node shares its cores, so a bigger cluster is also
// a more crowded one. --node-cpus gives each node a quota of its own, which
// models separate servers as long as the machine has the cores for every
// quota; the sweep also says what the busiest node's CPU per operation
// predicts for N real servers of that size, and how far the measurement is
// from it, so that a reader sees when the model stopped holding.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/chainraft/chainraft/harness/report"
	"github.com/chainraft/chainraft/histories"
)

// ShardedDriver is a store that splits its keys over shards (the chain
// store's chains, the raft store's groups): WithShards is a copy of the
// driver with n of them, the rest of its settings unchanged.
type ShardedDriver interface {
	Driver
	WithShards(n int) Driver
}

// ScaleSeries is one line of the sweep: a store, and its shard count —
// Shards 0 follows the node count (chains = groups = nodes), a positive
// value is fixed (raft with one group: the store that cannot spread its
// reads, for contrast).
type ScaleSeries struct {
	Store  string
	Shards int
}

// Name is how the series is labelled: the store, with its fixed shard
// count if it has one ("raft/1").
func (s ScaleSeries) Name() string {
	if s.Shards > 0 {
		return s.Store + "/" + strconv.Itoa(s.Shards)
	}
	return s.Store
}

// ParseScaleSeries reads "store" or "store/shards".
func ParseScaleSeries(spec string) (ScaleSeries, error) {
	name, shards, ok := strings.Cut(strings.TrimSpace(spec), "/")
	s := ScaleSeries{Store: name}
	if ok {
		n, err := strconv.Atoi(shards)
		if err != nil || n < 1 {
			return ScaleSeries{}, fmt.Errorf("%w: series %q: the shard count after / must be a positive integer", ErrInvalidConfig, spec)
		}
		s.Shards = n
	}
	if s.Store == "" {
		return ScaleSeries{}, fmt.Errorf("%w: series %q names no store", ErrInvalidConfig, spec)
	}
	return s, nil
}

// ScaleConfig is a sweep: every series at every node count and every
// node CPU quota, one run each, from the template Run (its Store,
// Cluster.Nodes and Cluster.NodeCPUs are replaced).
type ScaleConfig struct {
	Series   []ScaleSeries
	Nodes    []int
	NodeCPUs []float64 // 0: no quota
	// ClientsPerNode, when positive, runs that many clients per node
	// instead of Run.Clients: a node's throughput depends on how many
	// requests it has in flight at once (gRPC and the raft loop batch what
	// is queued), so a fixed client count spread over more nodes would
	// measure thinner batches, not more servers.
	ClientsPerNode int
	Run            RunConfig
}

// ScaleResult is what Scale produced.
type ScaleResult struct {
	Dir    string
	Points []report.ScalePoint
}

// Verdict is the worst verdict of the runs: illegal if any is, ok only if
// every run ran and is ok.
func (r *ScaleResult) Verdict() string { return report.ScaleVerdict(r.Points) }

// Validate reports a sweep Scale would refuse.
func (c ScaleConfig) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: scale: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if len(c.Series) == 0 || len(c.Nodes) == 0 {
		return bad("no stores or no node counts")
	}
	for _, n := range c.Nodes {
		if n < 1 {
			return bad("node count %d", n)
		}
	}
	for _, cpu := range c.NodeCPUs {
		if !(cpu >= 0) {
			return bad("node CPU quota %v", cpu)
		}
	}
	if c.Run.Nemesis.Enabled() {
		return bad("the sweep measures healthy clusters: no nemesis")
	}
	for _, s := range c.Series {
		d, err := c.driver(s, c.Nodes[0])
		if err != nil {
			return bad("%v", err)
		}
		rc := c.Run
		rc.Store, rc.Driver = d.Name(), d
		rc.Cluster.Nodes = c.Nodes[0]
		if err := rc.Validate(); err != nil {
			return fmt.Errorf("scale: %s: %w", s.Name(), err)
		}
	}
	return nil
}

// driver is series s's driver at n nodes: the registered one, with its
// shards set when the store has shards.
func (c ScaleConfig) driver(s ScaleSeries, nodes int) (Driver, error) {
	d, err := LookupDriver(s.Store)
	if err != nil {
		return nil, err
	}
	sd, ok := d.(ShardedDriver)
	if !ok {
		if s.Shards > 0 {
			return nil, fmt.Errorf("the %s store has no shards to fix at %d", s.Store, s.Shards)
		}
		return d, nil
	}
	n := s.Shards
	if n == 0 {
		n = nodes
	}
	return sd.WithShards(n), nil
}

// scaleFile is scale.json.
type scaleFile struct {
	Start          time.Time           `json:"start"`
	Command        []string            `json:"command,omitempty"`
	Seed           int64               `json:"seed"`
	TimeLimitS     float64             `json:"time_limit_s"`
	Clients        int                 `json:"clients"`
	ClientsPerNode int                 `json:"clients_per_node,omitempty"`
	Keys           int                 `json:"keys"`
	ReadFraction   float64             `json:"read_fraction"`
	Series         []string            `json:"series"`
	Nodes          []int               `json:"nodes"`
	NodeCPUs       []float64           `json:"node_cpus"`
	Verdict        string              `json:"verdict"`
	Points         []report.ScalePoint `json:"points"`
}

// Scale runs the sweep: for each CPU quota, each node count, each series,
// one run. A run that fails does not stop the others (its point says
// why); an interrupt does. The scale directory is rewritten after every
// run, so an interrupted sweep keeps what it measured.
func Scale(ctx context.Context, cfg ScaleConfig) (*ScaleResult, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Run.Name == "" {
		cfg.Run.Name = "scale"
	}
	cpus := cfg.NodeCPUs
	if len(cpus) == 0 {
		cpus = []float64{0}
	}
	base := cfg.Run.WithDefaults()
	progress := base.Progress
	start := time.Now()
	dir, err := MakeRunDir(base.Out, start.UTC().Format("20060102T150405Z")+"-scale")
	if err != nil {
		return nil, err
	}
	res := &ScaleResult{Dir: dir}
	var series []string
	for _, s := range cfg.Series {
		series = append(series, s.Name())
	}
	total, i := len(cpus)*len(cfg.Nodes)*len(cfg.Series), 0
	write := func() error {
		f := scaleFile{
			Start: start.UTC(), Command: cfg.Run.Command, Seed: base.Workload.Seed,
			TimeLimitS: base.TimeLimit.Seconds(), Clients: base.Clients, ClientsPerNode: cfg.ClientsPerNode, Keys: base.Workload.Keys,
			ReadFraction: base.Workload.ReadFraction, Series: series, Nodes: cfg.Nodes, NodeCPUs: cpus,
			Verdict: res.Verdict(), Points: res.Points,
		}
		b, err := json.MarshalIndent(f, "", "  ")
		if err != nil {
			return fmt.Errorf("encoding scale.json: %w", err)
		}
		if err := writeFileAtomic(filepath.Join(dir, "scale.json"), append(b, '\n')); err != nil {
			return err
		}
		if err := report.WriteScale(dir); err != nil {
			fmt.Fprintf(progress, "warning: scale.html: %v\n", err)
		}
		return nil
	}
	var runErr error
sweep:
	for _, cpu := range cpus {
		for _, n := range cfg.Nodes {
			for _, s := range cfg.Series {
				i++
				if ctx.Err() != nil {
					runErr = ErrInterrupted
					break sweep
				}
				d, _ := cfg.driver(s, n) // Validate looked every store up
				shards := 0
				if _, ok := d.(ShardedDriver); ok {
					shards = s.Shards
					if shards == 0 {
						shards = n
					}
				}
				fmt.Fprintf(progress, "== scale %d of %d: %s, %d nodes, %d shards, node CPUs %s ==\n", i, total, s.Name(), n, shards, cpuText(cpu))
				rc := cfg.Run
				rc.Store, rc.Driver = d.Name(), d
				rc.Cluster.Nodes, rc.Cluster.NodeCPUs = n, cpu
				if cfg.ClientsPerNode > 0 {
					rc.Clients = cfg.ClientsPerNode * n
				}
				rc.Name = fmt.Sprintf("%s-%s-n%d", cfg.Run.Name, strings.ReplaceAll(s.Name(), "/", "x"), n)
				if cpu > 0 {
					rc.Name += "-c" + strconv.FormatFloat(cpu, 'f', -1, 64)
				}
				r, err := Run(ctx, rc)
				p := report.ScalePoint{Series: s.Name(), Store: d.Name(), Nodes: n, Shards: shards, NodeCPUs: cpu, Clients: rc.Clients,
					Verdict: string(histories.VerdictUnknown)}
				if err != nil {
					p.Error = err.Error()
				}
				if r != nil {
					p.Link = linkScaleRun(dir, r.Dir, rc.Name)
					fillScalePoint(&p, r.Summary)
				}
				res.Points = append(res.Points, p)
				report.DeriveScale(res.Points)
				if err := write(); err != nil {
					return res, err
				}
				if r == nil && errors.Is(err, ErrInvalidConfig) {
					return res, err
				}
				if errors.Is(err, ErrInterrupted) || ctx.Err() != nil {
					runErr = ErrInterrupted
					break sweep
				}
			}
		}
	}
	if err := report.WriteIndex(base.Out); err != nil {
		fmt.Fprintf(progress, "warning: %s: %v\n", filepath.Join(base.Out, "index.html"), err)
	}
	return res, runErr
}

// linkScaleRun links a run into the scale directory and returns the link's
// name ("" when it could not be made: the point still has its numbers).
func linkScaleRun(dir, runDir, name string) string {
	rel, err := filepath.Rel(dir, runDir)
	if err != nil {
		return ""
	}
	if err := os.Symlink(rel, filepath.Join(dir, name)); err != nil {
		return ""
	}
	return name
}

func cpuText(cpu float64) string {
	if cpu <= 0 {
		return "unlimited"
	}
	return strconv.FormatFloat(cpu, 'f', -1, 64)
}

// fillScalePoint takes a point's numbers from its run's summary, and
// models N separate servers from the busiest node: a node with `cores`
// cores of its own (the quota, or one core without one) serves at most
// cores / (its CPU per operation) operations a second, and the busiest
// node is the first to run out, so that is the store's predicted
// throughput. Agreement is measured over predicted, which is the busiest
// node's share of its cores in use: near 1 it was saturated and the model
// holds; well below 1 something else bounded the run (the clients, the
// shared machine, waiting on the disk or the network) and the prediction
// is what more load would reach. report.DeriveScale adds the linear
// prediction from the smallest cluster.
func fillScalePoint(p *report.ScalePoint, s *Summary) {
	if s == nil {
		return
	}
	p.Verdict = s.Verdict
	if s.Error != "" && p.Error == "" {
		p.Error = s.Error
	}
	p.DurationS = s.DurationS
	p.Throughput = s.Throughput
	p.ReadOps = s.ThroughputByOp[string(histories.Get)]
	p.WriteOps = s.Throughput - p.ReadOps
	if l, ok := s.Latency["all"]; ok {
		p.P50MS, p.P99MS = l.P50MS, l.P99MS
	}
	if l, ok := s.Latency[string(histories.Get)]; ok {
		p.ReadP99MS = l.P99MS
	}
	p.MessagesPerOp = s.MessagesPerOp
	p.CPUPerOpUS = s.NodeCPUPerOpUS
	p.BusiestCPUPerOpUS = s.BusiestNodeCPUPerOpUS
	var busiest float64
	for id, sec := range s.NodeCPUSeconds {
		if sec > busiest {
			busiest, p.BusiestNode = sec, id
		}
	}
	if b := s.BusiestNodeCPUPerOpUS; b != nil && *b > 0 {
		cores := p.NodeCPUs
		if cores <= 0 {
			cores = 1
		}
		pred := cores * 1e6 / *b
		p.PredictedOps = &pred
		agree := s.Throughput / pred
		p.Agreement = &agree
	}
}
