package chainrafttest

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/harness"
	"github.com/chainraft/chainraft/harness/workload"
	"github.com/chainraft/chainraft/histories"
	"github.com/chainraft/chainraft/internal/hosts"
	"github.com/chainraft/chainraft/internal/proc"
)

// The detection tests: every seeded bug must be judged not linearizable (or
// fail an end-of-run check) within a bounded run, and the same run — same
// store, seed, workload and fault schedule — without the bug must pass. A
// harness that flags a correct store is as broken as one that misses a bug.
//
// Budgets: by default each bug gets up to detectSeeds runs and stops at the
// first detection; -short keeps one bug per store; -long (or
// CHAINRAFT_LONG=1) is the nightly budget: every bug over many seeds, no
// early stop, reporting the detection rate and the time to detection, and
// appending one JSON line per run to $CHAINRAFT_DETECT_JSON if set. Run
// directories are removed unless the test fails or CHAINRAFT_KEEP=1; a
// failure names the directory and the seed.
var longDetect = flag.Bool("long", false, "run the nightly detection budget (many seeds per seeded bug)")

const (
	detectSeeds     = 5                // default budget: runs per bug before giving up (local-read is caught in ~2 of 3)
	detectLongSeeds = 10               // -long: runs per bug
	detectTime      = 8 * time.Second  // workload time of one run
	detectInterval  = 1 * time.Second  // quiet time before and between faults
	detectFault     = 2 * time.Second  // how long each fault lasts
	detectCheck     = 30 * time.Second // check budget of one run
	// detectTimeout is the request timeout: longer than an election, so that
	// clients retry writes at the next leader instead of giving up.
	detectTimeout = 3 * time.Second
)

func detectLong() bool { return *longDetect || os.Getenv("CHAINRAFT_LONG") == "1" }

func keepRuns() bool { return os.Getenv("CHAINRAFT_KEEP") == "1" }

// shortBugs are the bugs -short keeps: one per store, the cheapest to show.
var shortBugs = []string{"early-ack", "no-resend"}

// simulated are the bugs the deterministic simulator catches in the
// default go test (go test ./sim -run
// 'TestRaftSeededBugsCaught|TestNoFsyncCaught|TestChainSeededBugsCaught'):
// by default their real-process runs are left to -long and the nightly,
// keeping one real-process bug per store (early-ack for raft, no-resend for
// the chain) so that the process path stays covered too. craq-dirty-read
// is caught there with --read-mode craq; chaindriver's
// TestChainCraqReadsUnderFaults runs CRAQ reads on real processes.
var simulated = map[string][]string{
	"raft":  {"local-read", "no-dedup", "no-fsync"},
	"chain": {"head-read", "stale-tail", "craq-dirty-read"},
}

// detectOutcome is one run of the detection tests, also the JSON line the
// nightly job collects.
type detectOutcome struct {
	Bug       string  `json:"bug"` // "" for the run without it
	Store     string  `json:"store"`
	Seed      int64   `json:"seed"`
	Faults    string  `json:"faults"`
	Verdict   string  `json:"verdict"`
	Caught    bool    `json:"caught"`
	Error     string  `json:"error,omitempty"`
	Seconds   float64 `json:"seconds"` // wall time of the run, check included
	Dir       string  `json:"dir"`
	Ops       int     `json:"ops"`
	Throughpt float64 `json:"throughput"`
	// FailedChecks are the end-of-run checks that failed.
	FailedChecks []string `json:"failed_checks,omitempty"`
}

func TestSeededBugsAreCaught(t *testing.T) {
	bin := proc.BuildChainraft(t)
	for _, b := range harness.SeededBugs() {
		t.Run(b.Store+"/"+b.Name, func(t *testing.T) {
			if !slices.Contains(harness.Stores(), b.Store) {
				t.Skipf("store %s is not registered", b.Store)
			}
			if !detectLong() && slices.Contains(simulated[b.Store], b.Name) {
				t.Skipf("%s is caught by the simulator (go test ./sim); -long runs it on real processes", b.Name)
			}
			if testing.Short() && !slices.Contains(shortBugs, b.Name) {
				t.Skip("-short keeps one bug per store")
			}
			if b.Undetected != "" && !detectLong() {
				t.Skipf("%s is not reliably caught yet (-long measures it): %s", b.Name, b.Undetected)
			}
			seeds := detectSeeds
			if detectLong() {
				seeds = detectLongSeeds
			}
			var caught []int64
			var toDetect []float64 // s from the bug's first run (or last detection) to each detection
			began := time.Now()
			for i := range seeds {
				seed := int64(i + 1)
				out := newDetectOut(t)
				cfg := detectConfig(t, bin, b, out, seed)
				o := detectRun(t, cfg, b, seed)
				if !o.Caught {
					t.Logf("%s seed %d: not caught (verdict %s%s, %d ops, %.1fs)", b.Name, seed, o.Verdict, errNote(o.Error), o.Ops, o.Seconds)
					continue
				}
				caught = append(caught, seed)
				toDetect = append(toDetect, time.Since(began).Seconds())
				t.Logf("%s seed %d: caught (verdict %s%s), %.1fs of runs to detection", b.Name, seed, o.Verdict, errNote(o.Error), toDetect[len(toDetect)-1])
				// The same run — store, seed, workload, fault schedule —
				// without the bug must pass.
				clean := cfg
				clean.Cluster.Bug = ""
				clean.Name = "clean-" + b.Name
				c := detectRun(t, clean, b, seed)
				require.True(t, c.Verdict == string(histories.VerdictOK) && c.Error == "" && c.FailedChecks == nil,
					"the %s store without %s, seed %d, is judged %s (error %q, failed checks %v): the harness flags a correct store; run kept in %s",
					b.Store, b.Name, seed, c.Verdict, c.Error, c.FailedChecks, c.Dir)
				if !detectLong() {
					break
				}
				began = time.Now()
			}
			rate := float64(len(caught)) / float64(seeds)
			if detectLong() {
				t.Logf("%s: detection rate %d/%d (%.0f%%), seeds caught %v, median time to detection %.1fs",
					b.Name, len(caught), seeds, 100*rate, caught, medianOf(toDetect))
			}
			if b.Undetected != "" {
				t.Logf("%s is not reliably caught yet: %s", b.Name, b.Undetected)
				return
			}
			require.NotEmpty(t, caught, "%s (%s) was not caught in %d seeded runs with faults %q", b.Name, b.Mistake, seeds, b.Kinds())
		})
	}
}

// newDetectOut makes the directory for one seed's runs (with the bug,
// without it, and their schedule). It is removed unless the test fails or
// CHAINRAFT_KEEP=1.
func newDetectOut(t *testing.T) string {
	t.Helper()
	out, err := os.MkdirTemp("", "chainraft-detect-")
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() || keepRuns() {
			t.Logf("runs kept in %s", out)
			return
		}
		os.RemoveAll(out)
	})
	return out
}

// detectConfig is the bug's run: its store with the bug planted, its
// workload, and its fault schedule, as `chainraft run --bug` makes it.
func detectConfig(t *testing.T, bin string, b harness.SeededBug, out string, seed int64) harness.RunConfig {
	t.Helper()
	runTime := detectTime
	if b.RunTime > 0 {
		runTime = b.RunTime
	}
	cfg := harness.RunConfig{
		Store: b.Store, Name: "bug-" + b.Name, Out: out, TimeLimit: runTime, Clients: 12,
		Workload: workload.Config{Seed: seed, ReadFraction: 0.5, AppendFraction: -1, CASFraction: -1},
		Cluster: harness.Env{
			Nodes: 3, Bug: b.Name, Binary: bin,
			RequestTimeout: detectTimeout, Log: testLogWriter{t},
		},
		CheckBudget: detectCheck, Progress: testLogWriter{t}, ProgressEvery: 4 * time.Second,
	}
	if b.Hosts != "" {
		cfg.Cluster.Hosts = detectHosts(t, b)
	}
	require.NoError(t, harness.ApplySeededBug(&cfg, false))
	if err := cfg.Validate(); errors.Is(err, harness.ErrInvalidConfig) {
		// The bug's faults cannot run here (power faults without FUSE):
		// a finding about this machine, not about the checker.
		t.Skipf("%s: its faults cannot run on this machine: %v", b.Name, err)
	}
	return cfg
}

// detectHosts makes the hosts a bug's faults need (b.Hosts), for the
// test's runs, or skips the test where this machine cannot make them.
func detectHosts(t *testing.T, b harness.SeededBug) *hosts.Pool {
	t.Helper()
	if strings.HasPrefix(b.Hosts, "netns:") {
		if err := hosts.Available(); err != nil {
			t.Skipf("%s needs hosts %s (its faults step their clocks), unavailable here: %v", b.Name, b.Hosts, err)
		}
		// Namespace hosts share the machine's clock.
		proc.HoldMachineClock(t)
	}
	p, err := hosts.Open(context.Background(), b.Hosts, hosts.Options{Log: testLogWriter{t}})
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	return p
}

// detectRun runs cfg and returns its outcome; a run that failed outright
// (a node crashed, the cluster never served) is not a detection: it says
// nothing about the checker.
func detectRun(t *testing.T, cfg harness.RunConfig, b harness.SeededBug, seed int64) detectOutcome {
	t.Helper()
	began := time.Now()
	res, err := harness.Run(context.Background(), cfg)
	o := detectOutcome{Bug: cfg.Cluster.Bug, Store: b.Store, Seed: seed, Faults: b.Kinds(), Seconds: time.Since(began).Seconds()}
	if res != nil {
		o.Dir = res.Dir
		o.Verdict = res.Summary.Verdict
		o.Ops = res.Summary.OpsTotal
		o.Throughpt = res.Summary.Throughput
		o.Error = res.Summary.Error
		o.FailedChecks = harness.FailedChecks(res.Summary)
	}
	if err != nil && o.Error == "" {
		o.Error = err.Error()
	}
	o.Caught = err == nil && (o.Verdict == string(histories.VerdictIllegal) || len(o.FailedChecks) > 0)
	if err != nil {
		t.Logf("run (bug %q, seed %d) failed: %v (run %s)", cfg.Cluster.Bug, seed, err, o.Dir)
	}
	recordOutcome(t, o)
	return o
}

func recordOutcome(t *testing.T, o detectOutcome) {
	path := os.Getenv("CHAINRAFT_DETECT_JSON")
	if path == "" {
		return
	}
	line, err := json.Marshal(o)
	require.NoError(t, err)
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	require.NoError(t, err)
	defer f.Close()
	_, err = f.Write(append(line, '\n'))
	require.NoError(t, err)
}

func errNote(e string) string {
	if e == "" {
		return ""
	}
	return ", error " + strconv.Quote(e)
}

type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

func medianOf(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
