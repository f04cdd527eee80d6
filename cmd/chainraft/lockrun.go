package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/chainraft/chainraft/harness/lockload"
	"github.com/chainraft/chainraft/harness/report"
	"github.com/chainraft/chainraft/internal/proc"
)

// The lock workload: worker processes take a ZooKeeper lock, increment a
// counter held by a resource the harness serves, and release; a nemesis
// SIGSTOPs the holder past its session timeout. `chainraft run --workload
// lock` calls runLockWorkload; `chainraft lockrun` (hidden) runs it alone.

func init() {
	subcommands = append(subcommands, newLockrunCmd)
}

// lockRunFlags are the lock workload's flags, shared by lockrun and run.
type lockRunFlags struct {
	recipe         string
	fencing        string
	timeLimit      time.Duration
	workers        int
	pauseEvery     time.Duration
	pauseFor       time.Duration
	sessionTimeout time.Duration
	hold           time.Duration
	zk             string
	zkServers      int
	seed           int64
	out            string
	name           string
	quiet          bool
}

// addLockRunFlags registers the lock workload's own flags. `run` already has
// --time-limit, --seed, --out, --name, --zk, --zk-servers and --quiet: it
// passes withCommon=false and copies those into lockRunFlags itself.
func addLockRunFlags(cmd *cobra.Command, f *lockRunFlags, withCommon bool) {
	fl := cmd.Flags()
	fl.StringVar(&f.recipe, "recipe", lockload.RecipeLock, "lock recipe: recipe (ephemeral-sequential) or naive")
	fl.StringVar(&f.fencing, "fencing", "off", "on: every write is a cas carrying the lock's fencing token")
	fl.IntVar(&f.workers, "workers", 3, "lock client processes")
	fl.DurationVar(&f.pauseEvery, "pause-every", 2*time.Second, "gap between holder pauses (negative: no pauses)")
	fl.DurationVar(&f.pauseFor, "pause-for", 0, "how long a holder stays SIGSTOPped (default 3x --session-timeout)")
	fl.DurationVar(&f.sessionTimeout, "session-timeout", time.Second, "the workers' ZooKeeper session timeout")
	fl.DurationVar(&f.hold, "hold", 100*time.Millisecond, "time a holder spends between its read and its write")
	if withCommon {
		fl.DurationVar(&f.timeLimit, "time-limit", 15*time.Second, "how long the workers run")
		fl.StringVar(&f.zk, "zk", "", "existing ZooKeeper ensemble host:port,... (empty: start one)")
		fl.IntVar(&f.zkServers, "zk-servers", 1, "ZooKeeper servers to start (1 or 3)")
		fl.Int64Var(&f.seed, "seed", 1, "seed of the pause schedule and think times")
		fl.StringVar(&f.out, "out", "runs", "directory for run directories")
		fl.StringVar(&f.name, "name", "default", "run name (last part of the run directory)")
		fl.BoolVar(&f.quiet, "quiet", false, "no progress lines on stderr")
	}
}

func newLockrunCmd() *cobra.Command {
	var f lockRunFlags
	cmd := &cobra.Command{
		Use:   "lockrun",
		Short: "Run the ZooKeeper lock workload under holder pauses and check it",
		Long: `Lockrun starts ZooKeeper, a counter resource and --workers lock client
processes that each loop lock, read, write read+1, unlock, while a nemesis
SIGSTOPs the lock holder between its read and its write for longer than its
session timeout. It checks, from the resource's own history, that critical
sections did not interleave and no increment was lost.

Exit codes: 0 ok, 1 violation, 2 bad usage, 3 unknown (no accepted write),
4 the run failed or was interrupted.`,
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runLockWorkload(cmd.Context(), cmd, f)
		},
	}
	addLockRunFlags(cmd, &f, true)
	return cmd
}

// runLockWorkload runs the lock workload in a new run directory under
// f.out, prints the outcome and maps it to the exit codes of run.
func runLockWorkload(ctx context.Context, cmd *cobra.Command, f lockRunFlags) error {
	cfg, err := f.config()
	if err != nil {
		return err
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	stopNet := proc.KillAllOnSignal()
	defer stopNet()

	bin, err := os.Executable()
	if err != nil {
		return withCode(exitRunFailed, fmt.Errorf("lock workload: %w", err))
	}
	cfg.Binary = bin
	start := time.Now()
	if err := os.MkdirAll(f.out, 0o755); err != nil {
		return withCode(exitRunFailed, err)
	}
	dir, err := lockRunDir(f.out, start, f.name)
	if err != nil {
		return withCode(exitRunFailed, err)
	}
	cfg.Dir = dir
	if !f.quiet {
		cfg.Progress = cmd.ErrOrStderr()
	}
	res, err := lockload.Run(ctx, cfg)
	if err != nil {
		return withCode(exitRunFailed, err)
	}
	_ = linkLatestRun(f.out, dir)
	if err := report.WriteIndex(f.out); err != nil {
		fmt.Fprintf(cmd.ErrOrStderr(), "chainraft: index %s: %v\n", f.out, err)
	}
	printLockResult(cmd.OutOrStdout(), res)
	switch res.Check.Verdict {
	case lockload.VerdictOK:
		return nil
	case lockload.VerdictViolation:
		return withCode(exitIllegal, fmt.Errorf("lock workload: %d violation(s) (see %s)", res.Check.ViolationCount, filepath.Join(dir, "summary.json")))
	default:
		return withCode(exitUnknown, fmt.Errorf("lock workload: no accepted write: the run says nothing"))
	}
}

func (f lockRunFlags) config() (lockload.Config, error) {
	switch {
	case f.recipe != lockload.RecipeLock && f.recipe != lockload.RecipeNaive:
		return lockload.Config{}, usageErrorf("lock workload: --recipe must be recipe or naive, got %q", f.recipe)
	case f.fencing != "on" && f.fencing != "off":
		return lockload.Config{}, usageErrorf("lock workload: --fencing must be on or off, got %q", f.fencing)
	case f.timeLimit <= 0:
		return lockload.Config{}, usageErrorf("lock workload: --time-limit must be positive, got %v", f.timeLimit)
	case f.workers < 2:
		return lockload.Config{}, usageErrorf("lock workload: --workers must be at least 2, got %d", f.workers)
	case f.sessionTimeout <= 0:
		return lockload.Config{}, usageErrorf("lock workload: --session-timeout must be positive, got %v", f.sessionTimeout)
	case f.pauseFor < 0:
		return lockload.Config{}, usageErrorf("lock workload: --pause-for must not be negative, got %v", f.pauseFor)
	case f.hold <= 0:
		return lockload.Config{}, usageErrorf("lock workload: --hold must be positive, got %v", f.hold)
	case f.zkServers != 1 && f.zkServers != 3:
		return lockload.Config{}, usageErrorf("lock workload: --zk-servers must be 1 or 3, got %d", f.zkServers)
	case f.name == "" || strings.ContainsAny(f.name, `/\`) || f.name == "." || f.name == "..":
		return lockload.Config{}, usageErrorf("lock workload: --name must be a plain name, got %q", f.name)
	case f.pauseEvery == 0:
		return lockload.Config{}, usageErrorf("lock workload: --pause-every must not be 0 (negative disables pauses)")
	}
	return lockload.Config{
		Workers: f.workers, Recipe: f.recipe, Fencing: f.fencing == "on",
		Duration: f.timeLimit, PauseEvery: f.pauseEvery, PauseFor: f.pauseFor,
		SessionTimeout: f.sessionTimeout, Hold: f.hold,
		ZK: f.zk, ZKServers: f.zkServers, Seed: f.seed,
	}, nil
}

// lockRunDir creates out/<UTC timestamp>-lock-<name>, as run names its
// directories.
func lockRunDir(out string, start time.Time, name string) (string, error) {
	base := filepath.Join(out, fmt.Sprintf("%s-lock-%s", start.UTC().Format("20060102T150405Z"), name))
	for i := 1; i < 1000; i++ {
		dir := base
		if i > 1 {
			dir = fmt.Sprintf("%s.%d", base, i)
		}
		err := os.Mkdir(dir, 0o755)
		if err == nil {
			return dir, nil
		}
		if !os.IsExist(err) {
			return "", fmt.Errorf("lock workload: run directory: %w", err)
		}
	}
	return "", fmt.Errorf("lock workload: no free run directory name for %s", base)
}

// linkLatestRun points out/latest at dir, atomically.
func linkLatestRun(out, dir string) error {
	target, err := filepath.Rel(out, dir)
	if err != nil {
		target = dir
	}
	tmp := filepath.Join(out, fmt.Sprintf(".latest.%d.%d", os.Getpid(), time.Now().UnixNano()))
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(out, "latest")); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

func printLockResult(w io.Writer, r *lockload.Result) {
	c := r.Check
	fmt.Fprintf(w, "lock workload: recipe %s, fencing %v, %d workers, %v, session timeout %v, %d pause(s) of %v\n",
		r.Recipe, r.Fencing, r.Workers, r.Duration, r.SessionTimeout, r.Pauses, r.PauseFor)
	fmt.Fprintf(w, "  acquisitions %d (worker-reported %d, lost %d, errors %d)\n", c.Acquisitions, r.Acquires, r.LostEvents, r.Errors)
	fmt.Fprintf(w, "  resource: %d requests, %d accepted writes, final counter %d, %d refused (%d stale token), two holders at once %d\n",
		c.Requests, c.AcceptedWrites, c.Final, c.Refused, c.StaleRefused, c.TwoHolders)
	for i, v := range c.Violations {
		if i == 10 {
			fmt.Fprintf(w, "  ... %d more in summary.json\n", c.ViolationCount-i)
			break
		}
		why := ""
		if v.Kind == lockload.KindInterleave && !v.Paused {
			why = " [no paused holder involved: a fault of the lock itself]"
		}
		fmt.Fprintf(w, "  VIOLATION %s: %s%s\n", v.Kind, v.Detail, why)
	}
	if c.Unexplained > 0 {
		fmt.Fprintf(w, "  %d interleaving(s) involve no paused holder\n", c.Unexplained)
	}
	fmt.Fprintf(w, "verdict: %s   (%s)\n", c.Verdict, filepath.Join(r.Dir, "report.html"))
}
