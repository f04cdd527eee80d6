package lockload

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/chainraft/chainraft/harness/report"
	"github.com/chainraft/chainraft/internal/proc"
	"github.com/chainraft/chainraft/internal/zkserver"
	"github.com/chainraft/chainraft/zkrecipes"
)

// Config is one lock workload run.
type Config struct {
	// Dir is the run directory (created if missing): history.jsonl,
	// nemesis.jsonl, summary.json, workers/, zk/.
	Dir string
	// Workers is the number of lock client processes. Default 3.
	Workers int
	// Recipe is RecipeLock (default) or RecipeNaive.
	Recipe string
	// Fencing makes every write a cas carrying the lock's token, refused by
	// the resource when the token is older than the newest it has seen.
	Fencing bool
	// Duration is how long the workers run. Default 15s.
	Duration time.Duration
	// PauseEvery is the gap between one pause's end and the next pause's
	// start (jittered ±20% by Seed). Default 2s. Negative: no pauses.
	PauseEvery time.Duration
	// PauseFor is how long the holder stays SIGSTOPped. Default 3x
	// SessionTimeout: long past its session's expiry.
	PauseFor time.Duration
	// SessionTimeout is the workers' ZooKeeper session timeout. Default 1s
	// (ZooKeeper's floor with the 500 ms tick zkserver uses).
	SessionTimeout time.Duration
	// Hold is how long a worker holds the lock between read and write.
	// Default 100ms.
	Hold time.Duration
	// ZK is an existing ensemble (host:port,...); empty starts one in Dir/zk.
	ZK string
	// ZKServers is the size of the ensemble started when ZK is empty.
	ZKServers int
	// Binary is the chainraft executable the workers run.
	Binary string
	Seed   int64
	// Progress, if set, receives a line per nemesis action and phase.
	Progress io.Writer
}

func (c Config) withDefaults() Config {
	if c.Workers == 0 {
		c.Workers = 3
	}
	if c.Recipe == "" {
		c.Recipe = RecipeLock
	}
	if c.Duration == 0 {
		c.Duration = 15 * time.Second
	}
	if c.SessionTimeout == 0 {
		c.SessionTimeout = time.Second
	}
	if c.PauseEvery == 0 {
		c.PauseEvery = 2 * time.Second
	}
	if c.PauseFor == 0 {
		c.PauseFor = 3 * c.SessionTimeout
	}
	if c.Hold == 0 {
		c.Hold = 100 * time.Millisecond
	}
	if c.ZKServers == 0 {
		c.ZKServers = 1
	}
	return c
}

// Validate reports a configuration Run cannot use.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.Dir == "":
		return errors.New("lockload: Config.Dir is empty")
	case c.Binary == "":
		return errors.New("lockload: Config.Binary is empty")
	case c.Workers < 2:
		return fmt.Errorf("lockload: Workers=%d: mutual exclusion needs at least 2", c.Workers)
	case c.Recipe != RecipeLock && c.Recipe != RecipeNaive:
		return fmt.Errorf("lockload: Recipe %q: want %q or %q", c.Recipe, RecipeLock, RecipeNaive)
	case c.Duration < 0 || c.SessionTimeout < 0 || c.PauseFor < 0 || c.Hold < 0:
		return errors.New("lockload: negative duration")
	}
	return nil
}

// NemesisEvent is one line of nemesis.jsonl.
type NemesisEvent struct {
	Time   int64  `json:"time"` // ns since the run's start (monotonic)
	F      string `json:"f"`    // pause, resume, skip
	Worker int    `json:"worker"`
	Pid    int    `json:"pid,omitempty"`
	Token  int64  `json:"token,omitempty"`
	Err    string `json:"error,omitempty"`
}

// Workload is summary.json's "workload" for lock runs: they share the runs
// directory with KV runs but not their schema, and the report, the index
// and `chainraft check` tell them apart by it.
const Workload = "lock"

// Result is a run's outcome, also written as Dir/summary.json.
type Result struct {
	// Workload is always Workload ("lock").
	Workload string `json:"workload"`
	// Name is the run directory's base name; Start the run's wall-clock
	// start (the index sorts by it).
	Name           string        `json:"name"`
	Start          time.Time     `json:"start"`
	Recipe         string        `json:"recipe"`
	Fencing        bool          `json:"fencing"`
	Workers        int           `json:"workers"`
	Duration       time.Duration `json:"duration_ns"`
	SessionTimeout time.Duration `json:"session_timeout_ns"`
	PauseFor       time.Duration `json:"pause_for_ns"`
	Seed           int64         `json:"seed"`
	Dir            string        `json:"dir"`
	ZK             string        `json:"zk"`
	// Pauses is how many holders the nemesis SIGSTOPped.
	Pauses int `json:"pauses"`
	// Worker-side counts from workers/*.jsonl.
	Acquires   int           `json:"acquires"`
	LostEvents int           `json:"lost_events"`
	Errors     int           `json:"errors"`
	Check      CheckResult   `json:"check"`
	Elapsed    time.Duration `json:"elapsed_ns"`
}

// Ok reports a passing check.
func (r *Result) Ok() bool { return r.Check.Verdict == VerdictOK }

// Run starts ZooKeeper (unless cfg.ZK names one), the resource and the
// worker processes, pauses lock holders for cfg.Duration, stops everything
// and checks the resource's history. A returned error means the run itself
// failed; a violation is a Result whose Check says so. Nothing it started
// outlives it, whether it returns, panics or ctx is cancelled.
func Run(ctx context.Context, cfg Config) (res *Result, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	began := time.Now()
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "workers"), 0o755); err != nil {
		return nil, fmt.Errorf("lockload: %w", err)
	}
	progress := func(format string, args ...any) {
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, "lockload: %6.2fs "+format+"\n", append([]any{time.Since(began).Seconds()}, args...)...)
		}
	}

	zkAddrs := zkrecipes.SplitAddrs(cfg.ZK)
	if len(zkAddrs) == 0 {
		ens, err := zkserver.Start(ctx, zkserver.Config{Dir: dir, Servers: cfg.ZKServers})
		if err != nil {
			return nil, fmt.Errorf("lockload: %w", err)
		}
		defer ens.Close()
		zkAddrs = ens.Addrs()
		progress("ZooKeeper serving at %s", ens.ConnectString())
	}

	start := time.Now()
	resource, err := StartResource(cfg.Fencing, start, filepath.Join(dir, "history.jsonl"))
	if err != nil {
		return nil, err
	}
	defer resource.Close()

	// A lock path of its own, so runs sharing a ZooKeeper do not meet.
	lockPath := fmt.Sprintf("/chainraft/lockload/%d-%d/%s", start.UnixNano(), os.Getpid(), cfg.Recipe)
	var group proc.Group
	defer group.CloseAll() // on every path, panics included
	workers := make([]*proc.Process, cfg.Workers)
	for i := range workers {
		args := []string{"lockworker",
			"--id", strconv.Itoa(i),
			"--zk", joinAddrs(zkAddrs),
			"--recipe", cfg.Recipe,
			"--lock-path", lockPath,
			"--resource", resource.Addr(),
			"--fencing", onOff(cfg.Fencing),
			"--session-timeout", cfg.SessionTimeout.String(),
			"--hold", cfg.Hold.String(),
			"--events", filepath.Join(dir, "workers", fmt.Sprintf("%d.jsonl", i)),
			"--start-unix-nanos", strconv.FormatInt(start.UnixNano(), 10),
			"--seed", strconv.FormatInt(cfg.Seed, 10),
		}
		p, err := group.Start(proc.Spec{
			Name:    fmt.Sprintf("lockworker-%d", i),
			Path:    cfg.Binary,
			Args:    args,
			LogPath: filepath.Join(dir, "workers", fmt.Sprintf("%d.log", i)),
		})
		if err != nil {
			return nil, fmt.Errorf("lockload: %w", err)
		}
		workers[i] = p
	}
	progress("%d workers started (recipe %s, fencing %s, session timeout %v)", cfg.Workers, cfg.Recipe, onOff(cfg.Fencing), cfg.SessionTimeout)

	nemFile, err := os.Create(filepath.Join(dir, "nemesis.jsonl"))
	if err != nil {
		return nil, fmt.Errorf("lockload: %w", err)
	}
	defer nemFile.Close()
	nem := &nemesis{cfg: cfg, start: start, resource: resource, workers: workers,
		out: bufio.NewWriter(nemFile), progress: progress, paused: map[acqKey]bool{},
		rng: rand.New(rand.NewPCG(uint64(cfg.Seed), 0x6e656d))}
	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // owned by Run: ends with runCtx, and resumes what it paused
		defer wg.Done()
		nem.run(runCtx)
	}()
	// The workers run until the time limit; one that exits early is a
	// failed run (it logged why in workers/<id>.log).
	var early error
	exits := make(chan string, len(workers))
	for _, p := range workers {
		go func() { // owned by Run: ends when the worker exits, which CloseAll ensures
			<-p.Exited()
			exits <- p.Name()
		}()
	}
	select {
	case <-runCtx.Done():
	case name := <-exits:
		early = fmt.Errorf("lockload: %s exited before the time limit: see workers/ in %s", name, dir)
	}
	cancel()
	wg.Wait() // the nemesis has resumed its victim
	if ferr := nem.out.Flush(); ferr != nil {
		return nil, fmt.Errorf("lockload: nemesis.jsonl: %w", ferr)
	}
	for _, p := range workers {
		_ = p.Stop(2 * time.Second) // SIGTERM (and SIGCONT), then SIGKILL
	}
	if err := group.CloseAll(); err != nil {
		return nil, fmt.Errorf("lockload: stopping workers: %w", err)
	}
	if err := resource.Close(); err != nil {
		return nil, fmt.Errorf("lockload: resource: %w", err)
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("lockload: run interrupted: %w", ctx.Err())
	}
	if early != nil {
		return nil, early
	}
	progress("workers stopped; checking %d requests", len(resource.History()))

	check, err := Check(resource.History())
	if err != nil {
		return nil, err
	}
	for i := range check.Violations {
		v := &check.Violations[i]
		v.Paused = nem.paused[acqKey{v.Holder.Worker, v.Holder.Token}] ||
			(v.Other != nil && nem.paused[acqKey{v.Other.Worker, v.Other.Token}])
		if v.Kind == KindInterleave && !v.Paused {
			check.Unexplained++
		}
	}
	res = &Result{
		Workload: Workload, Name: filepath.Base(dir), Start: start.UTC(),
		Recipe: cfg.Recipe, Fencing: cfg.Fencing, Workers: cfg.Workers,
		Duration: cfg.Duration, SessionTimeout: cfg.SessionTimeout, PauseFor: cfg.PauseFor,
		Seed: cfg.Seed, Dir: dir, ZK: joinAddrs(zkAddrs),
		Pauses: nem.pauses, Check: check, Elapsed: time.Since(began),
	}
	for i := range workers {
		evs, err := ReadEvents(filepath.Join(dir, "workers", fmt.Sprintf("%d.jsonl", i)))
		if err != nil {
			return nil, err
		}
		for _, e := range evs {
			switch e.Ev {
			case EvAcquire:
				res.Acquires++
			case EvLost:
				res.LostEvents++
			case EvError:
				res.Errors++
			}
		}
	}
	b, _ := json.MarshalIndent(res, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "summary.json"), append(b, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("lockload: %w", err)
	}
	// The report is a reading aid: failing to write it does not undo the
	// run, whose summary.json is written; say so and go on.
	if err := report.WriteLockRun(dir); err != nil {
		progress("report.html not written: %v", err)
	}
	progress("verdict %s", check.Verdict)
	return res, nil
}

// nemesis pauses lock holders. Its one goroutine is owned by Run.
type nemesis struct {
	cfg      Config
	start    time.Time
	resource *Resource
	workers  []*proc.Process
	out      *bufio.Writer
	progress func(string, ...any)
	rng      *rand.Rand
	pauses   int
	paused   map[acqKey]bool // the acquisitions paused
}

func (n *nemesis) record(e NemesisEvent) {
	e.Time = int64(time.Since(n.start))
	b, _ := json.Marshal(e)
	n.out.Write(append(b, '\n')) // errors surface at Flush
}

// run waits PauseEvery, finds the holder between its read and its write,
// SIGSTOPs it for PauseFor and SIGCONTs it, until ctx ends. A pause is only
// begun if it can end (and the holder act on resuming) before the run does.
func (n *nemesis) run(ctx context.Context) {
	if n.cfg.PauseEvery < 0 {
		return
	}
	deadline, _ := ctx.Deadline()
	for {
		gap := n.cfg.PauseEvery + time.Duration((n.rng.Float64()*0.4-0.2)*float64(n.cfg.PauseEvery))
		if sleep(ctx, gap) != nil {
			return
		}
		if time.Until(deadline) < n.cfg.PauseFor+500*time.Millisecond {
			return
		}
		worker, token, ok := n.findHolder(ctx)
		if !ok {
			return
		}
		p := n.workers[worker]
		if err := p.Pause(); err != nil {
			n.record(NemesisEvent{F: "skip", Worker: worker, Err: err.Error()})
			continue
		}
		n.pauses++
		n.paused[acqKey{worker, token}] = true
		n.record(NemesisEvent{F: "pause", Worker: worker, Pid: p.Pid(), Token: token})
		n.progress("pause worker %d (token %d) for %v", worker, token, n.cfg.PauseFor)
		t := time.NewTimer(n.cfg.PauseFor)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
		err := p.Resume()
		n.record(NemesisEvent{F: "resume", Worker: worker, Pid: p.Pid(), Token: token, Err: errString(err)})
		n.progress("resume worker %d", worker)
		if ctx.Err() != nil {
			return
		}
	}
}

// findHolder waits for the next read the resource serves and names its
// worker a moment later (a tenth of Hold, so the read's reply has arrived):
// pausing it then puts the pause inside its critical section, after its
// check that the lock is still held and before its write, the worst moment.
func (n *nemesis) findHolder(ctx context.Context) (int, int64, bool) {
	last, _ := n.resource.InCritical()
	for {
		r, ok := n.resource.InCritical()
		age := time.Duration(n.resource.Since() - r.Time)
		switch {
		case !ok || r.Seq <= last.Seq || r.Worker < 0 || r.Worker >= len(n.workers):
		case age < n.cfg.Hold/10:
			// Let the read's reply reach the worker first: a pause with the
			// reply in flight only times the read out.
		case age < n.cfg.Hold/2:
			return r.Worker, r.Token, true
		default:
			last = r // too close to its write: wait for the next read
		}
		if sleep(ctx, time.Millisecond) != nil {
			return 0, 0, false
		}
	}
}

// ReadEvents reads a worker's events file.
func ReadEvents(path string) ([]Event, error) {
	var evs []Event
	err := readJSONL(path, func(b []byte) error {
		var e Event
		if err := json.Unmarshal(b, &e); err != nil {
			return err
		}
		evs = append(evs, e)
		return nil
	})
	return evs, err
}

// ReadHistory reads a history.jsonl the resource wrote.
func ReadHistory(path string) ([]Request, error) {
	var h []Request
	err := readJSONL(path, func(b []byte) error {
		var r Request
		if err := json.Unmarshal(b, &r); err != nil {
			return err
		}
		h = append(h, r)
		return nil
	})
	return h, err
}

func readJSONL(path string, each func([]byte) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("lockload: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		if err := each(sc.Bytes()); err != nil {
			return fmt.Errorf("lockload: %s:%d: %w", path, line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("lockload: %s: %w", path, err)
	}
	return nil
}

func joinAddrs(a []string) string {
	s := ""
	for i, x := range a {
		if i > 0 {
			s += ","
		}
		s += x
	}
	return s
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
