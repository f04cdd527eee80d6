package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/chainraft/chainraft/harness/report"
)

func init() {
	subcommands = append(subcommands, newReportCmd)
}

// newReportCmd regenerates report.html of existing runs (after a template
// change, or for runs made by an older chainraft) and the index of each
// parent directory, from the files on disk alone. A compare directory is
// redrawn whole: each of its runs' reports, then compare.html.
func newReportCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "report DIR...",
		Short: "Regenerate report.html of runs, compare.html of comparisons, and the index.html of their parent directories",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			parents := map[string]bool{}
			var order []string
			var failed error
			for _, dir := range args {
				dir = filepath.Clean(dir)
				if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
					return usageErrorf("report: %s is not a run or compare directory", dir)
				}
				if _, err := os.Stat(filepath.Join(dir, "compare.json")); err == nil {
					pages, err := report.WriteCompareAll(dir)
					for _, p := range pages {
						fmt.Fprintln(cmd.OutOrStdout(), p)
					}
					if err != nil {
						fmt.Fprintf(cmd.ErrOrStderr(), "chainraft: report %s: %v\n", dir, err)
						failed = err
						continue
					}
				} else if err := report.WriteRun(dir); err != nil {
					if errors.Is(err, report.ErrNoSummary) {
						return usageErrorf("report: %s has neither summary.json nor compare.json: not a run or compare directory", dir)
					}
					fmt.Fprintf(cmd.ErrOrStderr(), "chainraft: report %s: %v\n", dir, err)
					failed = err
					continue
				} else {
					fmt.Fprintln(cmd.OutOrStdout(), filepath.Join(dir, "report.html"))
				}
				// Resolve runs/latest to runs, not to the directory it names.
				parent := filepath.Dir(dir)
				if !parents[parent] {
					parents[parent] = true
					order = append(order, parent)
				}
			}
			for _, p := range order {
				if err := report.WriteIndex(p); err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "chainraft: index %s: %v\n", p, err)
					failed = err
					continue
				}
				fmt.Fprintln(cmd.OutOrStdout(), filepath.Join(p, "index.html"))
			}
			if failed != nil {
				return withCode(exitRunFailed, fmt.Errorf("some reports were not written: %w", failed))
			}
			return nil
		},
	}
}
