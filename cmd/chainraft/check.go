package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/chainraft/chainraft/harness"
	"github.com/chainraft/chainraft/harness/report"
	"github.com/chainraft/chainraft/histories"
)

func init() {
	subcommands = append(subcommands, newCheckCmd)
}

func newCheckCmd() *cobra.Command {
	var (
		budget  time.Duration
		out     string
		workers int
		ref     bool
	)
	cmd := &cobra.Command{
		Use:   "check PATH",
		Short: "Check a history (history.jsonl or a run directory) for linearizability",
		Long: `Check reads a history in the JSON Lines format (see the README), checks it for
linearizability key by key, prints one line per key that is not linearizable or
could not be decided, and the overall verdict last.

PATH is a history file or a run directory (its history.jsonl is checked).
Visualizations of failing keys go to --out, or for a run directory to its
porcupine/ directory.

Exit codes: 0 linearizable, 1 not linearizable, 2 bad usage or malformed
input, 3 unknown (the budget ran out).`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageErrorf("check: want exactly one PATH (a history.jsonl or a run directory), got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if budget <= 0 {
				return usageErrorf("check: --budget must be positive, got %v", budget)
			}
			if workers < 0 {
				return usageErrorf("check: --workers must not be negative, got %d", workers)
			}
			path, vizDir := args[0], out
			st, err := os.Stat(path)
			if err != nil {
				return usageErrorf("check: %v", err)
			}
			// A lock-workload run's history.jsonl is its counter resource's
			// log, not KV operations: its own check ran with the run.
			runDir := path
			if !st.IsDir() {
				runDir = filepath.Dir(path)
			}
			if _, err := report.ReadSummary(runDir); errors.Is(err, report.ErrLockRun) {
				return usageErrorf("check: %s: a lock-workload run: its check is in summary.json (see report.html); check reads KV histories only", runDir)
			}
			if st.IsDir() {
				if vizDir == "" {
					vizDir = filepath.Join(path, "porcupine")
				}
				path = filepath.Join(path, "history.jsonl")
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if ref {
				ops, err := histories.ReadFile(path)
				if err != nil {
					return usageErrorf("check: %v", err)
				}
				return checkReference(ctx, cmd, ops, budget)
			}
			// Streamed: the file is split by key as it is read, and each
			// key released once prepared (histories.CheckFile).
			res, err := histories.CheckFile(ctx, path, histories.CheckOptions{
				Budget:       budget,
				Workers:      workers,
				VisualizeDir: vizDir,
				VisualizeAll: true, // the checker draws ok keys only in small histories
			})
			var ie *histories.InputError
			switch {
			case errors.As(err, &ie):
				return usageErrorf("check: %v", ie)
			case err != nil && res.Verdict == "" && !errors.Is(err, context.Canceled):
				return usageErrorf("check: %v", err)
			case err != nil && res.Verdict == "":
				return withCode(exitRunFailed, fmt.Errorf("check: %w", err))
			case err != nil:
				// A visualization could not be written; the verdict stands.
				fmt.Fprintf(cmd.ErrOrStderr(), "chainraft: warning: %v\n", err)
			}
			w := cmd.OutOrStdout()
			for _, k := range res.Keys {
				if k.Verdict == histories.VerdictOK {
					continue
				}
				line := fmt.Sprintf("%s: %s (%d ops, %.2fs)", k.Key, k.Verdict, k.Ops, k.Elapsed.Seconds())
				if k.Visualization != "" {
					line += " " + k.Visualization
				}
				fmt.Fprintln(w, line)
			}
			fmt.Fprintf(w, "%d operations, %d keys, %.2fs, %d unknown writes pruned, %d bounded\n",
				res.Operations, len(res.Keys), res.Elapsed.Seconds(), res.Pruned, res.Bounded)
			fmt.Fprintf(w, "verdict: %s\n", res.Verdict)
			switch res.Verdict {
			case histories.VerdictOK:
				return nil
			case histories.VerdictIllegal:
				return withCode(exitIllegal, errors.New(""))
			default:
				return withCode(exitUnknown, errors.New(""))
			}
		},
	}
	fl := cmd.Flags()
	fl.DurationVar(&budget, "budget", harness.DefaultCheckBudget, "time budget of the check; past it undecided keys are unknown")
	fl.StringVar(&out, "out", "", "directory for visualizations (default: a run directory's porcupine/, none for a file)")
	fl.IntVar(&workers, "workers", 0, "keys checked in parallel (0: one per CPU)")
	fl.BoolVar(&ref, "reference", false, "re-check with the plain reference checker instead (no pruning; slower; overall verdict only)")
	return cmd
}

// checkReference gives the verdict of histories.CheckReference, a second
// opinion that shares none of the main checker's pruning.
func checkReference(ctx context.Context, cmd *cobra.Command, ops []histories.Operation, budget time.Duration) error {
	start := time.Now()
	v, err := histories.CheckReference(ctx, ops, budget)
	if err != nil {
		return usageErrorf("check: %v", err)
	}
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "%d operations, %.2fs, reference checker\n", len(ops), time.Since(start).Seconds())
	fmt.Fprintf(w, "verdict: %s\n", v)
	switch v {
	case histories.VerdictOK:
		return nil
	case histories.VerdictIllegal:
		return withCode(exitIllegal, errors.New(""))
	default:
		return withCode(exitUnknown, errors.New(""))
	}
}
