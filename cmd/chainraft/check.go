package main

import (
	"context"
	"encoding/json"
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

PATH is a history file, a run directory (its history.jsonl is checked), or a
compare directory (every run it lists is checked, one block per store; the
exit code is the worst of them).
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
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if st.IsDir() {
				if _, err := os.Stat(filepath.Join(path, "history.jsonl")); errors.Is(err, os.ErrNotExist) {
					if _, err := os.Stat(filepath.Join(path, "compare.json")); err == nil {
						return checkCompare(ctx, cmd, path, budget, workers, ref)
					}
					return usageErrorf("check: %s is neither a run directory (no history.jsonl) nor a compare directory (no compare.json)", path)
				}
				if vizDir == "" {
					vizDir = filepath.Join(path, "porcupine")
				}
				path = filepath.Join(path, "history.jsonl")
			}
			return checkHistory(ctx, cmd, path, vizDir, budget, workers, ref)
		},
	}
	fl := cmd.Flags()
	fl.DurationVar(&budget, "budget", harness.DefaultCheckBudget, "time budget of the check; past it undecided keys are unknown")
	fl.StringVar(&out, "out", "", "directory for visualizations (default: a run directory's porcupine/, none for a file)")
	fl.IntVar(&workers, "workers", 0, "keys checked in parallel (0: one per CPU)")
	fl.BoolVar(&ref, "reference", false, "re-check with the plain reference checker instead (no pruning; slower; overall verdict only)")
	return cmd
}

// checkHistory checks one history file and maps the verdict to the exit
// code.
func checkHistory(ctx context.Context, cmd *cobra.Command, path, vizDir string, budget time.Duration, workers int, ref bool) error {
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
}

// checkCompare checks every run of a compare directory (compare.json's
// runs), one block per store, and exits with the worst code: 1 (not
// linearizable) over 4 (a run's history missing or unreadable) over 3
// (unknown) over 0.
func checkCompare(ctx context.Context, cmd *cobra.Command, dir string, budget time.Duration, workers int, ref bool) error {
	b, err := os.ReadFile(filepath.Join(dir, "compare.json"))
	if err != nil {
		return usageErrorf("check: %v", err)
	}
	var cf struct {
		Runs []struct {
			Store string `json:"store"`
			Dir   string `json:"dir"`
		} `json:"runs"`
	}
	if err := json.Unmarshal(b, &cf); err != nil {
		return usageErrorf("check: %s: %v", filepath.Join(dir, "compare.json"), err)
	}
	if len(cf.Runs) == 0 {
		return usageErrorf("check: %s lists no runs", filepath.Join(dir, "compare.json"))
	}
	rank := map[int]int{exitOK: 0, exitUnknown: 1, exitRunFailed: 2, exitUsage: 2, exitIllegal: 3}
	worst, worstErr := exitOK, error(nil)
	w := cmd.OutOrStdout()
	for _, r := range cf.Runs {
		fmt.Fprintf(w, "== %s (%s) ==\n", r.Store, r.Dir)
		code := exitRunFailed
		var err error
		if r.Dir == "" {
			err = fmt.Errorf("the %s run left no run directory", r.Store)
			fmt.Fprintln(w, "error:", err)
		} else {
			run := filepath.Join(dir, r.Dir)
			err = checkHistory(ctx, cmd, filepath.Join(run, "history.jsonl"), filepath.Join(run, "porcupine"), budget, workers, ref)
			code = exitOK
			var ee *exitError
			if errors.As(err, &ee) {
				code = ee.code
				if code == exitUsage {
					code = exitRunFailed // a run's history is missing or bad: the run failed
					fmt.Fprintln(w, "error:", err)
				}
			}
		}
		if rank[code] > rank[worst] {
			worst, worstErr = code, err
		}
	}
	if worst == exitOK {
		return nil
	}
	if worst == exitRunFailed {
		return withCode(exitRunFailed, fmt.Errorf("check: %s: %v", dir, worstErr))
	}
	return withCode(worst, errors.New(""))
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
