package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/chainraft/chainraft/harness/lockload"
	"github.com/chainraft/chainraft/zkrecipes"
)

// lockworker is one lock client of the lock workload, a process of its own
// so that the nemesis can SIGSTOP a lock holder for real: its ZooKeeper
// session, its timers and its half-done critical section all freeze together,
// as in a long GC pause. The harness (lockload.Run) starts it; it is hidden.

func init() {
	subcommands = append(subcommands, newLockworkerCmd)
}

func newLockworkerCmd() *cobra.Command {
	var (
		cfg       lockload.WorkerConfig
		zk        string
		fencing   string
		startNano int64
	)
	cmd := &cobra.Command{
		Use:    "lockworker",
		Short:  "One lock client of the lock workload (started by the harness)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.ZK = zkrecipes.SplitAddrs(zk)
			switch {
			case len(cfg.ZK) == 0:
				return usageErrorf("lockworker: --zk is required")
			case cfg.Resource == "":
				return usageErrorf("lockworker: --resource is required")
			case cfg.Events == "":
				return usageErrorf("lockworker: --events is required")
			case cfg.LockPath == "" || cfg.LockPath[0] != '/':
				return usageErrorf("lockworker: --lock-path must be an absolute znode path, got %q", cfg.LockPath)
			case cfg.Recipe != lockload.RecipeLock && cfg.Recipe != lockload.RecipeNaive:
				return usageErrorf("lockworker: --recipe must be recipe or naive, got %q", cfg.Recipe)
			case fencing != "on" && fencing != "off":
				return usageErrorf("lockworker: --fencing must be on or off, got %q", fencing)
			case cfg.SessionTimeout <= 0:
				return usageErrorf("lockworker: --session-timeout must be positive")
			}
			cfg.Fencing = fencing == "on"
			cfg.Start = time.Now()
			if startNano != 0 {
				cfg.Start = time.Unix(0, startNano)
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if err := lockload.RunWorker(ctx, cfg); err != nil {
				return withCode(exitRunFailed, fmt.Errorf("lockworker %d: %w", cfg.ID, err))
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&cfg.ID, "id", 0, "worker id")
	fl.StringVar(&zk, "zk", "", "ZooKeeper ensemble host:port,...")
	fl.StringVar(&cfg.Recipe, "recipe", lockload.RecipeLock, "lock recipe: recipe or naive")
	fl.StringVar(&cfg.LockPath, "lock-path", "/chainraft/lockload/lock", "the lock's znode directory (recipe) or znode (naive)")
	fl.StringVar(&cfg.Resource, "resource", "", "the resource's host:port")
	fl.StringVar(&fencing, "fencing", "off", "on: writes are cas carrying the lock token")
	fl.DurationVar(&cfg.SessionTimeout, "session-timeout", time.Second, "ZooKeeper session timeout")
	fl.DurationVar(&cfg.Hold, "hold", 100*time.Millisecond, "time between the read and the write")
	fl.StringVar(&cfg.Events, "events", "", "JSON Lines file of this worker's events")
	fl.Int64Var(&startNano, "start-unix-nanos", 0, "the run's start, unix ns (event times count from it)")
	fl.Int64Var(&cfg.Seed, "seed", 1, "seed of the worker's think times")
	return cmd
}
