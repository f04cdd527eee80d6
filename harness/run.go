package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/chainraft/chainraft/harness/report"
	"github.com/chainraft/chainraft/harness/workload"
	"github.com/chainraft/chainraft/histories"
	"github.com/chainraft/chainraft/internal/proc"
)

// Errors Run returns for callers to branch on.
var (
	// ErrInvalidConfig: the run was refused before anything started.
	ErrInvalidConfig = errors.New("invalid run configuration")
	// ErrInterrupted: the context was cancelled (SIGINT, SIGTERM) before the
	// run finished; what was recorded is written, unchecked.
	ErrInterrupted = errors.New("interrupted")
	// ErrInfrastructure: something the harness started died unplanned (a
	// ZooKeeper server, a node the nemesis did not kill, a full disk): the
	// run ends there, as a failed run, not as the store's failure. What was
	// recorded until then is written and checked.
	ErrInfrastructure = errors.New("infrastructure failed")
)

// RunConfig is one run: a store, a workload against it, and the check.
type RunConfig struct {
	// Store is a registered store's name (--store); Driver, when set, is
	// run instead of the registered one (a driver of a user's own, or one
	// with settings of its own) and Store is taken from its Name.
	Store  string
	Driver Driver
	// Name is the last part of the run directory's name.
	Name string
	// Out is the directory holding run directories and the latest link.
	Out string
	// TimeLimit is how long the workload issues operations.
	TimeLimit time.Duration
	// Clients is the number of workload goroutines, each with one operation
	// in flight.
	Clients  int
	Workload workload.Config
	// Cluster is passed to the store's driver; Run sets Dir, Log, Seed and,
	// if empty, Binary (this executable). Cluster.RequestTimeout is also the
	// deadline of each workload operation.
	Cluster Env
	// CheckBudget bounds the linearizability check; past it, keys not yet
	// decided are unknown.
	CheckBudget  time.Duration
	CheckWorkers int
	// Progress receives a progress line every ProgressEvery, and the
	// harness's log lines; nil discards them (they still go to harness.log).
	Progress      io.Writer
	ProgressEvery time.Duration
	// Command is recorded in the summary.
	Command []string
	// Sidecars run next to the workload (a nemesis, a sampler).
	Sidecars []Sidecar
	// Nemesis is the fault schedule (harness/nemesis.go); zero: none.
	Nemesis NemesisConfig
	// EndChecks runs the end-of-run checks (harness/checks.go) after the
	// workload even without a nemesis; with one they always run.
	EndChecks bool
	// Preload is data written before the workload (see Preload).
	Preload Preload
	// Compare is the directory of the comparison this run is part of
	// (set by Compare): summary.json and the report link back to it.
	Compare string
}

// Sidecar is work that runs alongside the workload against the same cluster
// and clock, such as a nemesis. Run owns its lifetime.
type Sidecar interface {
	// Run runs until ctx is done (the workload's time limit, or an
	// interrupt) and must return promptly then. An error fails the run.
	Run(ctx context.Context, env SidecarEnv) error
	// Finish is called once, after the workload stopped and the cluster was
	// closed and before the check, with what one pass over the history
	// gathered. It may add to the summary and returns annotations for the
	// visualizations' timelines.
	Finish(s *Summary, h *RunHistory) []histories.Annotation
}

// Healer is a sidecar that injects faults: the end-of-run checks ask it
// whether every fault it injected was healed.
type Healer interface {
	Healed() error
}

// SidecarEnv is what a sidecar can reach.
type SidecarEnv struct {
	Cluster  Cluster
	Recorder *histories.Recorder // its Now is the history's clock
	Dir      string              // the run directory
	Log      io.Writer
}

// RunResult is what Run produced. Summary is always set when Dir is.
type RunResult struct {
	Dir     string
	Summary *Summary
	Check   histories.Result
}

// Defaults for the fields a zero RunConfig leaves empty.
const (
	DefaultRequestTimeout = time.Second
	DefaultCheckBudget    = 60 * time.Second
	DefaultProgressEvery  = 2 * time.Second
	// stopGrace is how long, past the request timeout, Run waits for a
	// client stuck in a store call that ignores its deadline.
	stopGrace = 5 * time.Second
)

// MaxValueSize bounds --value-size: a cas's history line holds its
// expected and its new value, and the checker refuses lines over 1 MiB, so
// a run must never record one (values are ASCII: no escaping grows them).
const MaxValueSize = 256 << 10

var nameRE = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// WithDefaults resolves the driver and fills every unset field with its
// default, so that validation and the run see the same configuration.
func (c RunConfig) WithDefaults() RunConfig {
	if c.Driver != nil {
		c.Store = c.Driver.Name()
	} else if d, err := LookupDriver(c.Store); err == nil {
		c.Driver = d
	}
	if c.Cluster.Nodes == 0 {
		c.Cluster.Nodes = 3
	}
	if c.Cluster.ReadMode == "" {
		if rm, ok := c.Driver.(ReadModeDriver); ok && len(rm.ReadModes()) > 0 {
			c.Cluster.ReadMode = rm.ReadModes()[0]
		}
	}
	if c.Name == "" {
		c.Name = "default"
	}
	if c.Out == "" {
		c.Out = "runs"
	}
	if c.Cluster.RequestTimeout == 0 {
		c.Cluster.RequestTimeout = DefaultRequestTimeout
	}
	if c.CheckBudget == 0 {
		c.CheckBudget = DefaultCheckBudget
	}
	if c.ProgressEvery == 0 {
		c.ProgressEvery = DefaultProgressEvery
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	return c
}

// Validate reports a configuration Run would refuse, naming the field.
func (c RunConfig) Validate() error {
	c = c.WithDefaults()
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if c.Driver == nil {
		_, err := LookupDriver(c.Store)
		return bad("%v", err)
	}
	if !nameRE.MatchString(c.Name) {
		return bad("name %q: use letters, digits, '.', '_' and '-' only", c.Name)
	}
	if c.TimeLimit <= 0 {
		return bad("time limit must be positive, got %v", c.TimeLimit)
	}
	if c.Clients <= 0 {
		return bad("clients must be positive, got %d", c.Clients)
	}
	if c.Cluster.RequestTimeout < 0 {
		return bad("request timeout must be positive, got %v", c.Cluster.RequestTimeout)
	}
	if c.CheckBudget < 0 {
		return bad("check budget must be positive, got %v", c.CheckBudget)
	}
	if c.Cluster.Nodes < 0 {
		return bad("nodes must be positive, got %d", c.Cluster.Nodes)
	}
	if err := checkReadMode(c.Driver, c.Cluster.ReadMode); err != nil {
		return bad("%v", err)
	}
	if v, ok := c.Driver.(Validator); ok {
		if err := v.Validate(c.Cluster); err != nil {
			return bad("%v", err)
		}
	}
	switch {
	case c.Cluster.NodeCPUs < 0 || c.Cluster.NodeCPUs != c.Cluster.NodeCPUs:
		return bad("node CPUs must be a non-negative number, got %v", c.Cluster.NodeCPUs)
	case c.Cluster.NodeCPUs > 0:
		if _, ok := c.Driver.(NodeDriver); !ok {
			return bad("node CPUs %v: the %s store has no node processes to limit", c.Cluster.NodeCPUs, c.Store)
		}
		if err := proc.CheckCPULimit(); err != nil {
			return bad("node CPUs %v: %v", c.Cluster.NodeCPUs, err)
		}
	}
	if err := c.Workload.Validate(); err != nil {
		return bad("%v", err)
	}
	if err := c.Preload.validate(); err != nil {
		return bad("%v", err)
	}
	if c.Workload.ValueSize > MaxValueSize {
		return bad("value size %d is above %d bytes: the history's lines would be longer than its checker reads", c.Workload.ValueSize, MaxValueSize)
	}
	if c.Cluster.Bug != "" {
		if _, err := LookupBug(c.Driver, c.Cluster.Bug); err != nil {
			return err
		}
	}
	if c.Nemesis.Enabled() {
		if _, err := c.Nemesis.steps(c, c.Workload.WithDefaults().Seed); err != nil {
			return err
		}
	}
	return nil
}

// checkReadMode refuses a read mode the store does not offer.
func checkReadMode(d Driver, mode string) error {
	rm, ok := d.(ReadModeDriver)
	if !ok {
		if mode != "" {
			return fmt.Errorf("--read-mode %q: the %s store has no read modes", mode, d.Name())
		}
		return nil
	}
	if !slices.Contains(rm.ReadModes(), mode) {
		return fmt.Errorf("--read-mode %q: the %s store offers %s", mode, d.Name(), strings.Join(rm.ReadModes(), ", "))
	}
	return nil
}

// Run makes a run directory, starts the cluster, drives the workload for the
// time limit, closes the cluster, writes history.jsonl, checks it, writes
// summary.json and points Out/latest at the run.
//
// The cluster is closed on every path out of Run: errors, a cancelled ctx
// (the caller cancels it on SIGINT/SIGTERM) and panics, including panics in
// client goroutines, which are caught and turned into a failed run. Once the
// run directory exists, Run returns a result with a written summary even
// when it also returns an error; summary.error says what went wrong.
func Run(ctx context.Context, cfg RunConfig) (*RunResult, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	w := cfg.Workload.WithDefaults()
	proc.SweepCPUGroups() // what a killed harness left (--node-cpus)
	nem, err := newNemesis(ctx, &cfg, w.Seed)
	if err != nil {
		return nil, err
	}
	if nem != nil {
		defer nem.close() // deferred first: runs after the cluster is closed
		cfg.Sidecars = append(slices.Clip(cfg.Sidecars), nem)
	}
	start := time.Now()
	dir, err := makeRunDir(cfg.Out, start, cfg.Store, cfg.Name)
	if err != nil {
		return nil, err
	}
	logFile, err := os.Create(filepath.Join(dir, "harness.log"))
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	status := newStatusWriter(cfg.Progress, logFile, IsTerminal(cfg.Progress))
	log := status
	if nem != nil {
		if err := nem.open(dir, log); err != nil {
			return nil, err
		}
	}
	if cfg.Cluster.Binary == "" {
		if exe, err := os.Executable(); err == nil {
			cfg.Cluster.Binary = exe
		}
	}
	cfg.Cluster.Dir = dir
	cfg.Cluster.Log = log
	cfg.Cluster.Seed = w.Seed

	s := &Summary{
		Store: cfg.Store, Name: cfg.Name, Command: cfg.Command, Seed: w.Seed, Start: start.UTC(),
		Clients: cfg.Clients, Keys: w.Keys,
		ReadFraction: w.ReadFraction, AppendFraction: w.AppendFraction, CASFraction: w.CASFraction,
		ValueSize: w.ValueSize, Nodes: cfg.Cluster.Nodes, NoFsync: cfg.Cluster.NoFsync,
		NodeCPUs: cfg.Cluster.NodeCPUs, ReadMode: cfg.Cluster.ReadMode, Bug: cfg.Cluster.Bug,
		RequestTimeoutMS: ms(int64(cfg.Cluster.RequestTimeout)),
		Verdict:          string(histories.VerdictUnknown), FailingKeys: []string{},
		History: "history.jsonl",
	}
	res := &RunResult{Dir: dir, Summary: s}
	fmt.Fprintf(log, "run %s: store %s, %d clients, %d keys, seed %d, %v\n",
		dir, cfg.Store, cfg.Clients, w.Keys, w.Seed, cfg.TimeLimit)

	r := &runner{cfg: cfg, w: w, dir: dir, log: log, status: status, s: s, rec: histories.NewRecorder(), started: time.Now()}
	defer func() {
		// A panic in Run itself: close what is open, leave a summary
		// behind, and let the panic go on.
		if p := recover(); p != nil {
			r.closeCluster()
			s.Error = fmt.Sprintf("panic: %v", p)
			s.Verdict = string(histories.VerdictUnknown)
			_ = WriteSummary(filepath.Join(dir, "summary.json"), s)
			panic(p)
		}
	}()
	defer r.closeCluster()

	runErr := r.run(ctx)
	if ctx.Err() != nil && runErr == nil {
		runErr = ErrInterrupted
	}
	if closeErr := r.closeCluster(); closeErr != nil {
		runErr = errors.Join(runErr, fmt.Errorf("closing cluster: %w", closeErr))
	}
	if r.stuck != nil {
		// Closing the cluster should have broken the stuck calls free.
		select {
		case <-r.stuck:
		case <-time.After(stopGrace):
			runErr = errors.Join(runErr, errors.New("workload clients did not stop within the request timeout"))
		}
	}

	histPath := filepath.Join(dir, "history.jsonl")
	r.mu.Lock()
	rec := r.rec
	r.rec = nil
	r.mu.Unlock()
	if err := rec.Close(); err != nil { // operations still in flight go in as unknown
		runErr = errors.Join(runErr, fmt.Errorf("recording: %w", err))
	}
	if _, err := os.Stat(histPath); errors.Is(err, fs.ErrNotExist) {
		// The cluster never served: the placeholder recorder's (empty)
		// history.
		if err := histories.WriteFile(histPath, rec.Operations()); err != nil {
			runErr = errors.Join(runErr, err)
		}
	}
	// One pass over the file: a long run's history is never held whole.
	hist, err := readRunHistory(histPath, r.duration)
	if err != nil {
		runErr = errors.Join(runErr, fmt.Errorf("reading the history back: %w", err))
	}
	s.applyCounts(&hist.counts, r.duration)
	var annotations []histories.Annotation
	for _, sc := range cfg.Sidecars {
		annotations = append(annotations, sc.Finish(s, hist)...)
	}
	// availability: healthy throughput and unavailable time (availability.go).
	s.Availability = availabilityOf(dir, hist, r.duration)
	hist.counts = opCounts{} // the latencies are summarised
	if cfg.Compare != "" {
		s.Compare = relLink(dir, cfg.Compare)
	}

	if runErr == nil || errors.Is(runErr, ErrInfrastructure) {
		fmt.Fprintf(log, "checking %d operations (budget %v)\n", hist.Ops, cfg.CheckBudget)
		check, err := histories.CheckFile(ctx, histPath, histories.CheckOptions{
			Budget:       cfg.CheckBudget,
			Workers:      cfg.CheckWorkers,
			VisualizeDir: filepath.Join(dir, "porcupine"),
			VisualizeAll: true, // the checker draws ok keys only in small histories
			Annotations:  annotations,
		})
		var inputErr *histories.InputError
		switch {
		case ctx.Err() != nil:
			runErr = ErrInterrupted
		case errors.As(err, &inputErr):
			// The recorder made a history the checker refuses: a bug.
			runErr = fmt.Errorf("checking: the recorded history is invalid: %w", err)
		case err != nil && check.Verdict == "":
			runErr = fmt.Errorf("checking: %w", err)
		default:
			if err != nil {
				// A visualization could not be written; the verdict stands.
				fmt.Fprintf(log, "warning: %v\n", err)
			}
			res.Check = check
			s.applyCheck(check, dir)
			visualizePassing(ctx, hist, annotations, dir, s, log) // a handful of keys (visualize.go)
			if nem != nil {
				nem.visualizeFaults(ctx, hist, annotations, dir, s, log)
			}
		}
	}
	if runErr != nil {
		if !errors.Is(runErr, ErrInfrastructure) {
			// An infrastructure failure keeps the verdict of what was
			// recorded before it: a violation there is the store's.
			s.Verdict = string(histories.VerdictUnknown)
		}
		if errors.Is(runErr, ErrInterrupted) {
			s.Error = ErrInterrupted.Error()
		} else {
			s.Error = runErr.Error()
		}
		fmt.Fprintf(log, "run failed: %v\n", runErr)
	}
	if err := WriteSummary(filepath.Join(dir, "summary.json"), s); err != nil {
		return res, errors.Join(runErr, err)
	}
	if err := linkLatest(cfg.Out, dir); err != nil {
		return res, errors.Join(runErr, err)
	}
	writeReports(log, cfg.Out, dir)
	return res, runErr
}

// writeReports renders the run's report.html and refreshes the index of
// Out. A report that cannot be drawn is logged, never fatal: the verdict
// and the files it rests on are already written, and `chainraft report`
// can draw it again.
func writeReports(log io.Writer, out, dir string) {
	if err := report.WriteRun(dir); err != nil {
		fmt.Fprintf(log, "warning: report.html: %v\n", err)
	} else {
		fmt.Fprintf(log, "report: %s\n", filepath.Join(dir, "report.html"))
	}
	if err := report.WriteIndex(out); err != nil {
		fmt.Fprintf(log, "warning: %s: %v\n", filepath.Join(out, "index.html"), err)
	}
}

// runner is the state of one Run between its phases.
type runner struct {
	cfg    RunConfig
	w      workload.Config
	dir    string
	log    io.Writer
	status *statusWriter
	s      *Summary
	// rec is replaced by a fresh recorder once the cluster serves, so the
	// history's clock starts with the workload.
	rec     *histories.Recorder
	started time.Time // when the cluster started starting

	mu      sync.Mutex
	cluster Cluster

	duration time.Duration
	// stuck is closed when the last client goroutine returns, set only when
	// some had not returned by the end of the grace period.
	stuck chan struct{}
}

// closeCluster closes the cluster once; later calls return nil.
func (r *runner) closeCluster() error {
	r.mu.Lock()
	c := r.cluster
	r.cluster = nil
	r.mu.Unlock()
	if c == nil {
		return nil
	}
	fmt.Fprintln(r.log, "closing cluster")
	return c.Close()
}

// run starts the cluster and drives the workload. The goroutines it starts
// (clients, sidecars, progress) are all stopped before it returns, except
// clients stuck in a store call past their deadline (see r.stuck).
func (r *runner) run(ctx context.Context) error {
	cluster, err := r.cfg.Driver.Start(ctx, r.cfg.Cluster)
	if err != nil {
		if ctx.Err() != nil {
			return ErrInterrupted
		}
		return fmt.Errorf("starting %s cluster: %w", r.cfg.Store, err)
	}
	r.mu.Lock()
	r.cluster = cluster
	r.mu.Unlock()
	// One clock: the history's, and so the nemesis's, the charts' and the
	// progress lines', starts with the workload, not with the cluster's
	// start-up, which is reported on its own (summary startup_s).
	r.s.StartupS = time.Since(r.started).Seconds()
	fmt.Fprintf(r.log, "cluster started in %.1fs; times from here on count from the workload's start\n", r.s.StartupS)
	if r.cfg.Preload.Bytes > 0 {
		p, err := preload(ctx, cluster, r.cfg.Preload, r.cfg.Cluster.RequestTimeout, r.log)
		if err != nil {
			if ctx.Err() != nil {
				return ErrInterrupted
			}
			return fmt.Errorf("preload: %w", err)
		}
		r.s.Preload = p
	}
	// Every operation goes to history.jsonl as it completes (writes get an
	// invoke line before they are sent), so a harness killed mid-run leaves
	// a history `check` accepts, and recording holds nothing per operation.
	rec, err := histories.NewStreamRecorder(filepath.Join(r.dir, "history.jsonl"))
	if err != nil {
		return fmt.Errorf("recording: %w", err)
	}
	r.mu.Lock()
	r.rec = rec
	r.mu.Unlock()

	keys := workload.KeyNames(r.w.Keys)
	clients := make([]*workload.Client, r.cfg.Clients)
	counts := make([]workload.Counters, r.cfg.Clients)
	for i := range clients {
		store, err := cluster.NewClient()
		if err != nil {
			closeClients(clients)
			return fmt.Errorf("client %d: %w", i, err)
		}
		clients[i] = workload.NewClient(store, r.rec.Session(), workload.NewGenerator(r.w, keys, i), r.cfg.Cluster.RequestTimeout, &counts[i])
		clients[i].Pace(r.w.Interval(r.cfg.Clients))
	}
	defer closeClients(clients)

	stop := make(chan struct{})
	hard, cancelHard := context.WithCancel(ctx)
	defer cancelHard()
	failures := make(chan error, len(clients)+len(r.cfg.Sidecars))
	fail := func(err error) {
		failures <- err // buffered for one error per goroutine: never blocks
		cancelHard()
	}
	var clientsWG, othersWG sync.WaitGroup

	mc, _ := cluster.(MessageCounter)
	var msgBase map[uint64]uint64
	if mc != nil {
		msgBase = mc.PeerMessagesSent(ctx)
	}
	cm, _ := cluster.(CPUMeter)
	var cpuBase map[uint64]time.Duration
	if cm != nil {
		cpuBase = cm.NodeCPU()
	}
	fmt.Fprintf(r.log, "workload: %d clients for %v\n", len(clients), r.cfg.TimeLimit)
	began := time.Now().Add(-time.Duration(r.rec.Now())) // the recorder's zero
	for i, c := range clients {
		clientsWG.Add(1)
		go func() {
			defer clientsWG.Done()
			defer catch(func(err error) { fail(fmt.Errorf("client %d: %w", i, err)) })
			c.Run(stop, hard)
		}()
	}
	sideCtx, cancelSide := context.WithCancel(hard)
	defer cancelSide()
	env := SidecarEnv{Cluster: cluster, Recorder: r.rec, Dir: r.dir, Log: r.log}
	for _, sc := range r.cfg.Sidecars {
		othersWG.Add(1)
		go func() {
			defer othersWG.Done()
			defer catch(fail)
			if err := sc.Run(sideCtx, env); err != nil && sideCtx.Err() == nil {
				fail(fmt.Errorf("sidecar: %w", err))
			}
		}()
	}
	if hw, ok := cluster.(HealthWatcher); ok {
		othersWG.Add(1)
		go func() {
			defer othersWG.Done()
			watchHealth(sideCtx, hw, began, fail)
		}()
	}
	progressDone := make(chan struct{})
	othersWG.Add(1)
	go func() {
		defer othersWG.Done()
		r.progress(began, counts, progressDone)
	}()

	select {
	case <-time.After(r.cfg.TimeLimit):
	case <-hard.Done():
	}
	close(stop)
	cancelSide()

	clientsDone := make(chan struct{})
	go func() {
		clientsWG.Wait()
		close(clientsDone)
	}()
	select {
	case <-clientsDone:
	case <-time.After(r.cfg.Cluster.RequestTimeout + stopGrace):
		fmt.Fprintln(r.log, "some clients are stuck past their deadline; closing the cluster under them")
		r.stuck = clientsDone
	}
	r.duration = time.Since(began)
	if cm != nil {
		r.s.NodeCPUSeconds = cpuBetween(cpuBase, cm.NodeCPU())
	}
	if mc != nil && msgBase != nil {
		if end := mc.PeerMessagesSent(ctx); len(end) > 0 {
			n := sumMessages(msgBase, end)
			r.s.PeerMessages = &n
		}
	}
	close(progressDone)
	othersWG.Wait()
	r.status.Done()

	select {
	case err := <-failures:
		return err
	default:
	}
	if ctx.Err() != nil {
		return ErrInterrupted
	}
	if r.cfg.EndChecks || r.cfg.Nemesis.Enabled() {
		r.s.Checks = r.endOfRun(ctx, cluster)
		if ctx.Err() != nil {
			return ErrInterrupted
		}
		if hw, ok := cluster.(HealthWatcher); ok && len(FailedChecks(r.s)) > 0 {
			// A check that failed because ZooKeeper died is not the store's.
			if err := hw.Unplanned(); err != nil {
				return fmt.Errorf("%w during the end-of-run checks: %v", ErrInfrastructure, err)
			}
		}
	}
	return nil
}

// healthEvery is how often the harness asks a cluster whether something it
// started died unplanned.
const healthEvery = time.Second

// watchHealth ends the run (fail) at the first unplanned death, naming it
// and when it was seen, until ctx ends.
func watchHealth(ctx context.Context, hw HealthWatcher, began time.Time, fail func(error)) {
	t := time.NewTicker(healthEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := hw.Unplanned(); err != nil {
				fail(fmt.Errorf("%w at %.1fs into the workload: %v", ErrInfrastructure, time.Since(began).Seconds(), err))
				return
			}
		}
	}
}

// progress shows the run's status every ProgressEvery until done is
// closed (see statusWriter for where it goes).
func (r *runner) progress(began time.Time, counts []workload.Counters, done <-chan struct{}) {
	t := time.NewTicker(r.cfg.ProgressEvery)
	defer t.Stop()
	var lastTotal int64
	last := began
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			p := progressStatus{Store: r.cfg.Store, Elapsed: now.Sub(began), Total: r.cfg.TimeLimit}
			for i := range counts {
				p.OK += counts[i].OK.Load()
				p.Fail += counts[i].Fail.Load()
				p.Info += counts[i].Info.Load()
			}
			total := p.OK + p.Fail + p.Info
			p.Rate = float64(total-lastTotal) / now.Sub(last).Seconds()
			lastTotal, last = total, now
			p.Faults, p.faultsKnown = activeFaults(r.cfg.Sidecars)
			r.status.Status(p.String())
		}
	}
}

// catch turns a panic in the calling goroutine into an error for report,
// so a bug in a client cannot kill the process with the cluster's node
// processes still running.
func catch(report func(error)) {
	if p := recover(); p != nil {
		report(fmt.Errorf("panic: %v\n%s", p, debug.Stack()))
	}
}

func closeClients(clients []*workload.Client) {
	for _, c := range clients {
		if c != nil {
			_ = c.Close()
		}
	}
}

// makeRunDir creates Out/<timestamp>-<store>-<name>, the timestamp in UTC so
// that names sort by time; a second run in the same second gets a suffix.
func makeRunDir(out string, start time.Time, store, name string) (string, error) {
	return MakeRunDir(out, fmt.Sprintf("%s-%s-%s", start.UTC().Format("20060102T150405Z"), store, name))
}

// linkLatest points out/latest at dir: a new symlink renamed over the old
// one, so that readers always see a complete link.
func linkLatest(out, dir string) error {
	target, err := filepath.Rel(out, dir)
	if err != nil {
		target = dir
	}
	tmp := filepath.Join(out, fmt.Sprintf(".latest.%d.%d", os.Getpid(), time.Now().UnixNano()))
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("linking latest run: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(out, "latest")); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("linking latest run: %w", err)
	}
	return nil
}
