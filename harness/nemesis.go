// The nemesis in a run, and the end-of-run checks (checks.go).
//
// Wiring. When a run's schedule has a network fault (partition,
// zk-partition, delay), Run creates a nemesis.Network before the cluster
// and hands it over in ClusterConfig.Network; the cluster wires every
// node→node, node→ZooKeeper and client→node link through a proxy of its own
// (nemesis.Network.Wire) and gives each node its peers' and ZooKeeper's
// proxy addresses on its command line. Without network faults there are no
// proxies, so benchmarks measure the stores, not the proxy. Raft member
// faults add a fresh node id each time; the ports and proxies of those
// spare ids are wired at start (ClusterConfig.SpareNodes) and every node
// gets them as "+id=addr" address-only --peers entries, because a running
// raft node learns a new member's address from the log: one address for
// every dialer, which would bypass the per-link proxies.
//
// Power. When the schedule has a power fault, Env.PowerFS asks the driver
// to mount every node's data directory on internal/powerfs (proccluster
// does it for every driver of node processes), so that the fault can drop
// what a node wrote and did not sync. Power faults need FUSE: a run that
// names them where it is missing is refused before anything starts (exit
// 2, with the reason); "all" leaves them out there. The mounts a harness
// killed with SIGKILL leaves are swept by the next run's proccluster.
//
// Targets. A store's cluster adapts itself to nemesis.Target
// (TargetCluster); roles are the driver's (FaultDriver), checked against the
// schedule before the run starts, resolved when the fault is injected and
// recorded in nemesis.jsonl with the resolved node ids.
//
// Goroutines. The nemesis runs on the Sidecar goroutine Run starts; it
// injects and heals synchronously (the Runner starts none), heals whatever
// is still in force when the time limit ends the schedule, and returns.
// The proxies' goroutines belong to the Network, closed by Run after the
// cluster. On SIGINT faults are not healed one by one: closing the cluster
// ends them all, and Pdeathsig ends the processes if the harness itself is
// killed.
//
// End of run. After the workload and the heals, endOfRun checks, in order:
// every fault healed; the store answers a read again (bounded, 30 s); a
// final write succeeds (bounded, 20 s); every key reads (bounded, 20 s);
// the replicas agree (ReplicaComparer, bounded, 30 s). The final operations
// are recorded in the history, so the linearizability check covers them,
// and they give the last heal a first read and write to measure recovery
// by. Each result goes into summary.json "checks"; one that fails makes
// `chainraft run` exit 1, like a linearizability violation.

package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/chainraft/chainraft/harness/workload"
	"github.com/chainraft/chainraft/histories"
	"github.com/chainraft/chainraft/internal/powerfs"
	"github.com/chainraft/chainraft/nemesis"
)

// NemesisConfig is a run's fault schedule: generated from the run's seed,
// or replayed from a recorded nemesis.jsonl.
type NemesisConfig struct {
	// Kinds are --nemesis values: "kill", "pause", "partition", "zk",
	// "zk-partition", "zk-kill", "member", "delay", "clock", or "all".
	// Empty (and no Replay) means no nemesis. "all" is every kind the
	// store's driver takes (FaultDriver.FaultKinds) but delay and clock,
	// so that a short run spends its faults on kinds that apply; a kind
	// named outright that the store cannot take is refused.
	Kinds []string
	// Interval is the time between faults and each fault's length
	// (default 5s); the first fault comes after a quiet Interval.
	Interval time.Duration
	// Overlap starts a fault every Interval, each lasting 2×Interval.
	Overlap bool
	// Replay is a nemesis.jsonl whose schedule runs instead of a generated
	// one (roles are resolved afresh).
	Replay string
}

// Enabled reports whether the run has a nemesis.
func (n NemesisConfig) Enabled() bool { return len(n.Kinds) > 0 || n.Replay != "" }

// NemesisInfo is summary.json's record of the schedule.
type NemesisInfo struct {
	Kinds      []string `json:"kinds,omitempty"`
	IntervalMS float64  `json:"interval_ms"`
	Overlap    bool     `json:"overlap,omitempty"`
	Replay     string   `json:"replay,omitempty"`
	Steps      int      `json:"steps"`
	Proxied    bool     `json:"proxied"` // links went through the nemesis's proxies
	// Cuts says how network faults were made: "proxies" (userspace
	// proxies in every link, this machine) or "iptables" (kernel rules on
	// the hosts, --hosts); empty without network faults.
	Cuts string `json:"cuts,omitempty"`
}

// networkKinds need the proxied network.
var networkKinds = []string{nemesis.KindPartition, nemesis.KindZKPartition, nemesis.KindDelay}

// nemesisSidecar runs the schedule next to the workload. Its goroutine is
// the Sidecar goroutine Run starts; the Runner starts none.
type nemesisSidecar struct {
	// runCtx is Run's context: when it is cancelled (SIGINT), the faults
	// are not healed one by one (restarting what is about to be killed);
	// closing the cluster ends them all.
	runCtx context.Context
	steps  []nemesis.Step
	net    *nemesis.Network // nil without network faults
	info   NemesisInfo
	data   int64 // bytes preloaded: faults that copy it get longer bounds

	path   string // nemesis.jsonl
	file   *os.File
	events *nemesis.EventWriter

	mu      sync.Mutex
	runner  *nemesis.Runner
	target  nemesis.Target
	healErr error
	ran     bool
}

// steps is the schedule of a run of cfg: replayed, or generated from seed
// over the kinds and roles the store's driver declares. Every fault must be
// one the store can take: a kind it lacks, or a role it does not define, is
// refused here, before anything starts (exit 2), never recorded as skipped.
func (n NemesisConfig) steps(cfg RunConfig, seed int64) ([]nemesis.Step, error) {
	if n.Interval <= 0 {
		n.Interval = 5 * time.Second
	}
	fd, ok := cfg.Driver.(FaultDriver)
	if !ok {
		return nil, fmt.Errorf("%w: the %s store has nothing for a nemesis to fault", ErrInvalidConfig, cfg.Store)
	}
	kinds := fd.FaultKinds()
	var steps []nemesis.Step
	if n.Replay != "" {
		events, err := nemesis.ReadEventsFile(n.Replay)
		if err != nil {
			return nil, fmt.Errorf("%w: --replay: %v", ErrInvalidConfig, err)
		}
		if steps, err = nemesis.Replay(events); err != nil {
			return nil, fmt.Errorf("%w: --replay %s: %v", ErrInvalidConfig, n.Replay, err)
		}
	} else {
		asked := n.Kinds
		if slices.Contains(asked, "all") {
			// Every kind this store takes, but delay and clock (as
			// nemesis.Generate reads "all"): a clock fault steps the
			// hosts' clocks, which a user asks for by name.
			asked = slices.DeleteFunc(slices.Clone(asked), func(k string) bool { return k == "all" })
			for _, k := range kinds {
				if k == nemesis.KindPower && powerAvailable() != nil {
					continue // "all" where it is available
				}
				if k != nemesis.KindDelay && k != nemesis.KindClock && !slices.Contains(asked, k) {
					asked = append(asked, k)
				}
			}
		}
		if slices.Contains(asked, "zk") {
			asked = slices.DeleteFunc(slices.Clone(asked), func(k string) bool { return k == "zk" })
			asked = append(asked, nemesis.KindZKPartition, nemesis.KindZKKill)
		}
		for _, k := range asked {
			if slices.Contains(nemesis.Kinds, k) && !slices.Contains(kinds, k) {
				return nil, fmt.Errorf("%w: --nemesis %s: the %s store cannot take %s faults (it takes %s)",
					ErrInvalidConfig, k, cfg.Store, k, strings.Join(kinds, ", "))
			}
		}
		var err error
		steps, err = nemesis.Generate(seed, nemesis.ScheduleOptions{
			Kinds: asked, Interval: n.Interval, Overlap: n.Overlap,
			Total: cfg.TimeLimit, Roles: roleNames(fd.Roles()),
		})
		if err != nil {
			return nil, fmt.Errorf("%w: --nemesis: %v", ErrInvalidConfig, err)
		}
	}
	for _, st := range steps {
		if !slices.Contains(kinds, st.Fault.Kind) {
			return nil, fmt.Errorf("%w: fault %d (%s): the %s store cannot take %s faults (it takes %s)",
				ErrInvalidConfig, st.ID, st.Fault.Describe(), cfg.Store, st.Fault.Kind, strings.Join(kinds, ", "))
		}
		if err := checkRole(cfg.Store, fd.Roles(), st.Fault.Role); err != nil {
			return nil, fmt.Errorf("%w: fault %d (%s): %v", ErrInvalidConfig, st.ID, st.Fault.Describe(), err)
		}
		if st.Fault.Kind == nemesis.KindClock && cfg.Cluster.Hosts == nil {
			return nil, fmt.Errorf("%w: fault %d (%s): clock faults need the nodes on hosts (--hosts): nodes on this machine share its clock, which the harness does not step",
				ErrInvalidConfig, st.ID, st.Fault.Describe())
		}
		if st.Fault.Kind == nemesis.KindPower {
			if err := powerAvailable(); err != nil {
				return nil, fmt.Errorf("%w: fault %d (%s): power faults need a filesystem that can lose unsynced writes: %v",
					ErrInvalidConfig, st.ID, st.Fault.Describe(), err)
			}
		}
	}
	return steps, nil
}

// powerAvailable reports why power faults cannot run here (no FUSE, or
// neither root nor fusermount3), or nil. A variable so that tests can
// pretend either way.
var powerAvailable = powerfs.Available

// newNemesis prepares the schedule, and the network when a step needs one,
// and points cfg.Cluster at them. It runs before the run directory exists,
// so that a bad replay file is bad usage, not a failed run.
func newNemesis(runCtx context.Context, cfg *RunConfig, seed int64) (*nemesisSidecar, error) {
	n := cfg.Nemesis
	if !n.Enabled() {
		return nil, nil
	}
	if n.Interval <= 0 {
		n.Interval = 5 * time.Second
	}
	steps, err := n.steps(*cfg, seed)
	if err != nil {
		return nil, err
	}
	s := &nemesisSidecar{runCtx: runCtx, steps: steps, data: cfg.Preload.Bytes, info: NemesisInfo{
		Kinds: n.Kinds, IntervalMS: ms(int64(n.Interval)), Overlap: n.Overlap, Replay: n.Replay, Steps: len(steps),
	}}
	members := 0
	for _, st := range steps {
		if slices.Contains(networkKinds, st.Fault.Kind) && s.net == nil {
			s.net = nemesis.NewNetwork()
		}
		if st.Fault.Kind == nemesis.KindMember {
			members++
		}
		if st.Fault.Kind == nemesis.KindPower {
			cfg.Cluster.PowerFS = true
		}
	}
	if s.net != nil {
		s.info.Cuts = "proxies"
		if cfg.Cluster.Hosts != nil {
			s.info.Cuts = "iptables"
		}
	}
	s.info.Proxied = s.info.Cuts == "proxies"
	cfg.Cluster.Network = s.net
	cfg.Cluster.SpareNodes = members
	return s, nil
}

// open creates <dir>/nemesis.jsonl.
func (s *nemesisSidecar) open(dir string, log io.Writer) error {
	s.path = filepath.Join(dir, "nemesis.jsonl")
	f, err := os.Create(s.path)
	if err != nil {
		return err
	}
	s.file = f
	s.events = nemesis.NewEventWriter(f)
	var kinds []string
	for _, st := range s.steps {
		kinds = append(kinds, st.Fault.Describe())
	}
	cuts := s.info.Cuts
	if cuts == "" {
		cuts = "none needed"
	}
	fmt.Fprintf(log, "nemesis: %d faults, network cuts by %s: %s\n", len(s.steps), cuts, strings.Join(kinds, "; "))
	return nil
}

// close closes the event file and the network (after the cluster: Run
// defers it first).
func (s *nemesisSidecar) close() {
	if s.file != nil {
		_ = s.file.Close()
	}
	if s.net != nil {
		_ = s.net.Close()
	}
}

// healTimeout bounds healing everything at the end: restarts of ZooKeeper
// servers and of nodes are the slow part.
const healTimeout = 90 * time.Second

// copyTime is what a fault's inject or heal may take on top of its bound
// when the store holds data: a fresh replica copies all of it (a member
// fault's heal, a restarted chain node's rejoin), and on a loaded two-core
// machine a copy of 1 GB took minutes, not the seconds of an empty store.
// The bound allows 4 MiB/s, under the slowest copy measured.
func copyTime(data int64) time.Duration {
	return time.Duration(data/(4<<20)) * time.Second
}

// Run runs the schedule on the recorder's clock and heals every fault still
// in force when ctx ends (the time limit).
func (s *nemesisSidecar) Run(ctx context.Context, env SidecarEnv) error {
	t, err := targetFor(env.Cluster, s.net)
	if err != nil {
		return err
	}
	r := &nemesis.Runner{Target: t, Clock: env.Recorder.Now, Events: s.events, Log: env.Log,
		OpTimeout: nemesis.DefaultOpTimeout + copyTime(s.data)}
	s.mu.Lock()
	s.runner, s.target, s.ran = r, t, true
	s.mu.Unlock()
	var healErr error
	if err := r.Run(ctx, s.steps); s.runCtx.Err() != nil {
		healErr = fmt.Errorf("interrupted with faults in force: %w", s.runCtx.Err())
	} else {
		_ = err // the time limit ends the schedule: not an error
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), healTimeout+copyTime(s.data))
		_ = r.HealAll(hctx) // its errors are in r.HealErrors()
		cancel()
	}
	if s.net != nil {
		// Belt and braces: nothing may stay cut into the end-of-run checks.
		s.net.HealAll()
	}
	s.mu.Lock()
	s.healErr = healErr
	s.mu.Unlock()
	return nil
}

// targetFor adapts a cluster for the nemesis.
func targetFor(c Cluster, net *nemesis.Network) (nemesis.Target, error) {
	if net != nil && len(net.Links()) == 0 {
		// The cluster did not wire itself through the network: cuts would
		// apply to nothing and be recorded as faults that never happened.
		// Without it, network faults are skipped as unsupported.
		net = nil
	}
	tc, ok := c.(TargetCluster)
	if !ok {
		return nil, fmt.Errorf("nemesis: a %T cluster is no fault target", c)
	}
	return tc.Target(net), nil
}

// ActiveFaults implements FaultReporter.
func (s *nemesisSidecar) ActiveFaults() []string {
	s.mu.Lock()
	r := s.runner
	s.mu.Unlock()
	if r == nil {
		return nil
	}
	return r.ActiveFaults()
}

// Healed implements Healer: whether every fault was healed; the error says
// which not.
func (s *nemesisSidecar) Healed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ran {
		return errors.New("the nemesis did not run")
	}
	if err := errors.Join(s.runner.HealErrors(), s.healErr); err != nil {
		return err
	}
	if ids := s.runner.Active(); len(ids) > 0 {
		return fmt.Errorf("steps %v still active", ids)
	}
	return nil
}

// Finish implements Sidecar: it measures recovery from the history and
// the events, puts it into the summary, and returns the fault intervals for
// the timelines.
func (s *nemesisSidecar) Finish(sum *Summary, h *RunHistory) []histories.Annotation {
	info := s.info
	sum.Nemesis = &info
	events, err := nemesis.ReadEventsFile(s.path)
	if err != nil {
		sum.Recovery = []nemesis.Recovery{}
		return nil
	}
	a := nemesis.AnalyzeOK(h.OKReads, h.OKWrites, events)
	sum.Recovery, sum.RecoveryByKind = a.Recovery, a.ByKind
	return nemesis.Annotations(events, h.End)
}

// visualizeFaults makes sure the faults are on at least one Porcupine
// timeline. The checker draws ok keys only for small histories, so a
// passing nemesis run of any length would otherwise show its faults on no
// timeline at all; the key of the final write is drawn on its own (a few
// hundred operations) with the fault annotations.
func (s *nemesisSidecar) visualizeFaults(ctx context.Context, h *RunHistory, ann []histories.Annotation, dir string, sum *Summary, log io.Writer) {
	if len(sum.Visualizations) > 0 || h.Ops == 0 {
		return
	}
	key := workload.KeyNames(1)[0]
	if n := h.KeyOps[key]; n == 0 || n > histories.VisualizeAllMaxOps {
		return
	}
	byKey, err := h.Keys(key)
	if err != nil {
		fmt.Fprintf(log, "warning: fault timeline: %v\n", err)
		return
	}
	mine := byKey[key]
	res, err := histories.Check(ctx, mine, histories.CheckOptions{
		Budget: 30 * time.Second, VisualizeDir: filepath.Join(dir, "porcupine"), VisualizeAll: true, Annotations: ann,
	})
	if err != nil {
		fmt.Fprintf(log, "warning: fault timeline: %v\n", err)
	}
	for _, v := range res.Visualizations {
		sum.Visualizations = append(sum.Visualizations, relTo(dir, v))
	}
}
