// Package chainrafttest runs a store under chainraft's workload and fault
// schedule from inside a Go test: a registered store (chain, raft, memory,
// ...) or a driver of a user's own. One call runs it and judges the
// history; a test that fails says the verdict, the seed, the one-line
// command that replays the same run, and where its report is, and keeps the
// run directory; a test that passes leaves nothing behind.
//
//	func TestMyStoreUnderFaults(t *testing.T) {
//		chainrafttest.Run(t, chainrafttest.Options{
//			Driver:  mystore.Driver{},
//			Nemesis: "kill,pause,partition",
//		})
//	}
//
// Stores whose nodes are chainraft processes (harness.NodeDriver) start
// their nodes by running the test binary itself as `BINARY node STORE ...`:
// a test package that runs one calls Main from its TestMain, which serves
// those node invocations and kills whatever a test leaves running.
//
// Replays: the seed comes from Options.Seed, or from CHAINRAFT_SEED when it
// is set, and the fault schedule from CHAINRAFT_REPLAY (a nemesis.jsonl) when
// that is set, so the printed command re-runs the same test on the same
// schedule.
package chainrafttest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chainraft/chainraft/harness"
	"github.com/chainraft/chainraft/harness/workload"
	"github.com/chainraft/chainraft/histories"
	"github.com/chainraft/chainraft/internal/proc"
)

// Options is one run. Zero values take the defaults in brackets.
type Options struct {
	// Store names a registered store; Driver, when set, is run instead.
	Store  string
	Driver harness.Driver
	// TimeLimit is how long the workload runs [5s].
	TimeLimit time.Duration
	// Clients [8] and Keys [10] shape the workload; ReadFraction [0.5].
	Clients      int
	Keys         int
	ReadFraction float64
	// Seed [1; CHAINRAFT_SEED overrides] drives the workload and the faults.
	Seed int64
	// Nemesis is a --nemesis value ("kill,pause", "all"); empty: no faults.
	Nemesis string
	// Interval is the time between faults and each fault's length [1s].
	Interval time.Duration
	// Replay runs a recorded nemesis.jsonl instead [CHAINRAFT_REPLAY].
	Replay string
	// Bug plants one of the store's seeded bugs, with the faults that
	// expose it unless Nemesis or Replay names others.
	Bug string
	// Env is passed to the driver (nodes, read mode, request timeout...);
	// Binary defaults to this test binary (see Main).
	Env harness.Env
	// Out is where run directories go [$CHAINRAFT_RUNS, else a new
	// temporary directory]; a passing run's directory is removed.
	Out string
}

// Outcome is what a run came to.
type Outcome struct {
	Dir     string
	Verdict string
	Summary *harness.Summary
	// Failure is empty when the run passed: linearizable and every
	// end-of-run check passed. Otherwise it says why, with the seed, the
	// replay command and the report.
	Failure string
	// tmpOut is the temporary directory Check made to hold the run
	// directory (no Options.Out, no CHAINRAFT_RUNS); Run removes it with
	// a passing run.
	tmpOut string
}

// Remove deletes the run directory, and the temporary directory Check
// made to hold it, if it made one.
func (o *Outcome) Remove() {
	os.RemoveAll(o.Dir)
	if o.tmpOut != "" {
		os.RemoveAll(o.tmpOut)
	}
}

// TB is the part of testing.TB Run uses, so an example can pass its own.
type TB interface {
	Helper()
	Name() string
	Logf(format string, args ...any)
	Fatalf(format string, args ...any)
	Failed() bool
	Cleanup(func())
}

// Run runs the store and fails t when the history is not linearizable, an
// end-of-run check failed, the verdict is unknown or the run itself failed.
func Run(t TB, o Options) *Outcome {
	t.Helper()
	out, err := Check(context.Background(), o, t.Name())
	if err != nil {
		t.Fatalf("chainrafttest: %v", err)
		return nil
	}
	t.Cleanup(func() {
		if t.Failed() || out.Failure != "" {
			return
		}
		out.Remove()
	})
	if out.Failure != "" {
		t.Fatalf("%s", out.Failure)
	}
	return out
}

// Check runs the store and returns the outcome; err is bad usage (an
// unknown store, a fault the store cannot take). test names the test for
// the replay command ("" leaves it out). The run directory stays
// (Outcome.Remove deletes it); Run removes a passing one.
func Check(ctx context.Context, o Options, test string) (*Outcome, error) {
	if o.Out == "" {
		o.Out = os.Getenv("CHAINRAFT_RUNS")
	}
	var tmpOut string
	if o.Out == "" {
		dir, err := os.MkdirTemp("", "chainrafttest-")
		if err != nil {
			return nil, err
		}
		o.Out, tmpOut = dir, dir
	}
	ran := false // a run directory exists: the outcome owns tmpOut
	defer func() {
		if !ran && tmpOut != "" {
			os.RemoveAll(tmpOut)
		}
	}()
	cfg, err := o.config()
	if err != nil {
		return nil, err
	}
	res, runErr := harness.Run(ctx, cfg)
	if res == nil {
		return nil, runErr
	}
	ran = true
	out := &Outcome{Dir: res.Dir, Verdict: res.Summary.Verdict, Summary: res.Summary, tmpOut: tmpOut}
	var why string
	switch {
	case runErr != nil:
		why = fmt.Sprintf("the run failed: %v", runErr)
	case out.Verdict == string(histories.VerdictIllegal):
		why = "not linearizable (failing keys: " + strings.Join(res.Summary.FailingKeys, ", ") + ")"
	case out.Verdict != string(histories.VerdictOK):
		why = "verdict " + out.Verdict + " (the check ran out of budget: Unknown is not Ok)"
	default:
		if failed := harness.FailedChecks(res.Summary); len(failed) > 0 {
			why = "end-of-run check failed: " + strings.Join(failed, "; ")
		}
	}
	if why != "" {
		out.Failure = fmt.Sprintf("%s: %s\n  seed:   %d\n  replay: %s\n  report: %s",
			cfg.Driver.Name(), why, cfg.Workload.Seed, replayCommand(cfg, res.Dir, test), filepath.Join(res.Dir, "report.html"))
	}
	return out, nil
}

// replayCommand is the one line that runs the same test again: same seed,
// same recorded fault schedule.
func replayCommand(cfg harness.RunConfig, dir, test string) string {
	var env []string
	env = append(env, "CHAINRAFT_SEED="+strconv.FormatInt(cfg.Workload.Seed, 10))
	if cfg.Nemesis.Enabled() {
		env = append(env, "CHAINRAFT_REPLAY="+filepath.Join(dir, "nemesis.jsonl"))
	}
	run := "go test -count=1"
	if test != "" {
		run += " -run '^" + strings.SplitN(test, "/", 2)[0] + "$'"
	}
	if wd, err := os.Getwd(); err == nil {
		run += " " + wd
	}
	return strings.Join(env, " ") + " " + run
}

func (o Options) config() (harness.RunConfig, error) {
	if o.Driver == nil {
		d, err := harness.LookupDriver(o.Store)
		if err != nil {
			return harness.RunConfig{}, fmt.Errorf("%w: %v", harness.ErrInvalidConfig, err)
		}
		o.Driver = d
	}
	if s := os.Getenv("CHAINRAFT_SEED"); s != "" {
		seed, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return harness.RunConfig{}, fmt.Errorf("%w: CHAINRAFT_SEED=%q: %v", harness.ErrInvalidConfig, s, err)
		}
		o.Seed = seed
	}
	if r := os.Getenv("CHAINRAFT_REPLAY"); r != "" {
		o.Replay = r
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&o.Clients, 8)
	if o.TimeLimit == 0 {
		o.TimeLimit = 5 * time.Second
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.ReadFraction == 0 {
		o.ReadFraction = 0.5
	}
	if o.Interval == 0 {
		o.Interval = time.Second
	}
	env := o.Env
	if env.Binary == "" {
		if exe, err := os.Executable(); err == nil {
			env.Binary = exe
		}
	}
	env.Bug = o.Bug
	cfg := harness.RunConfig{
		Driver: o.Driver, Name: "test", Out: o.Out, TimeLimit: o.TimeLimit, Clients: o.Clients,
		Workload: workload.Config{Seed: o.Seed, Keys: o.Keys, ReadFraction: o.ReadFraction,
			AppendFraction: -1, CASFraction: -1},
		Cluster: env, EndChecks: true,
	}
	if o.Nemesis != "" || o.Replay != "" {
		var kinds []string
		if o.Replay == "" {
			kinds = strings.Split(o.Nemesis, ",")
		}
		cfg.Nemesis = harness.NemesisConfig{Kinds: kinds, Interval: o.Interval, Replay: o.Replay}
	}
	if err := harness.ApplySeededBug(&cfg, cfg.Nemesis.Enabled()); err != nil {
		return harness.RunConfig{}, err
	}
	if cfg.Workload.Keys == 0 {
		cfg.Workload.Keys = 10 // the bug's own key count, if it has one, won
	}
	return cfg, cfg.Validate()
}

// Main is a TestMain for packages that run stores with node processes:
// when the test binary is started as a node (`BINARY node STORE ARGS...`,
// as the harness starts Env.Binary), it runs that node and exits; otherwise
// it runs the tests and then kills any process a test left running.
func Main(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == "node" {
		os.Exit(nodeMain(os.Args[2], os.Args[3:]))
	}
	os.Exit(proc.RunTests(m))
}

func nodeMain(store string, args []string) int {
	d, err := harness.LookupDriver(store)
	if err != nil {
		fmt.Fprintln(os.Stderr, "node:", err)
		return 2
	}
	nd, ok := d.(harness.NodeDriver)
	if !ok {
		fmt.Fprintf(os.Stderr, "node: the %s store has no node processes\n", store)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := nd.NodeMain(ctx, args); err != nil {
		fmt.Fprintln(os.Stderr, "node:", err)
		if errors.Is(err, harness.ErrInvalidConfig) {
			return 2
		}
		return 4
	}
	return 0
}
