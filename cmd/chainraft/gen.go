package main

import (
	"bufio"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/chainraft/chainraft/histories"
)

func init() {
	subcommands = append(subcommands, newGenCmd)
}

func newGenCmd() *cobra.Command {
	cfg := histories.GenConfig{Ops: 100_000, Clients: 64, Keys: 10, Unknown: 0.01, Put: 0.3, CAS: 0.1, Append: 0.1, Seed: 1}
	var out string
	cmd := &cobra.Command{
		Use:   "gen",
		Short: "Write a generated history (a simulated linearizable store) for measuring check",
		Long: `Gen simulates a linearizable key-value store driven by concurrent clients and
writes the history in the JSON Lines format, the same shape as the workload of
run: unique written values, half gets, writes 3:1:1 put, cas and append by
default, 1% of operations unknown writes. --bad plants stale reads, which makes
the history certainly not linearizable. The same flags and seed give the same
file. It streams: any --ops fits in memory.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.Ops < 0 || cfg.Clients <= 0 || cfg.Keys <= 0 {
				return usageErrorf("gen: --ops must be ≥ 0, --clients and --keys > 0")
			}
			if s := cfg.Put + cfg.CAS + cfg.Append; s > 1 || cfg.Put < 0 || cfg.CAS < 0 || cfg.Append < 0 || cfg.Unknown < 0 || cfg.Unknown > s {
				return usageErrorf("gen: fractions must be ≥ 0, put+cas+append ≤ 1 and --unknown ≤ put+cas+append")
			}
			var w io.Writer = cmd.OutOrStdout()
			var f *os.File
			if out != "" && out != "-" {
				var err error
				if f, err = os.Create(out); err != nil {
					return usageErrorf("gen: %v", err)
				}
				defer f.Close()
				w = f
			}
			bw := bufio.NewWriterSize(w, 1<<20)
			hw := histories.NewWriter(bw)
			if err := histories.Generate(cfg, hw.Write); err != nil {
				return withCode(exitRunFailed, fmt.Errorf("gen: %w", err))
			}
			if err := hw.Flush(); err != nil {
				return withCode(exitRunFailed, fmt.Errorf("gen: %w", err))
			}
			if err := bw.Flush(); err != nil {
				return withCode(exitRunFailed, fmt.Errorf("gen: %w", err))
			}
			if f != nil {
				if err := f.Close(); err != nil {
					return withCode(exitRunFailed, fmt.Errorf("gen: %w", err))
				}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&cfg.Ops, "ops", cfg.Ops, "operations")
	fl.IntVar(&cfg.Clients, "clients", cfg.Clients, "concurrent clients")
	fl.IntVar(&cfg.Keys, "keys", cfg.Keys, "keys")
	fl.Float64Var(&cfg.Unknown, "unknown", cfg.Unknown, "fraction of operations that are unknown writes (half take effect)")
	fl.Float64Var(&cfg.Put, "put", cfg.Put, "fraction of puts")
	fl.Float64Var(&cfg.CAS, "cas", cfg.CAS, "fraction of cas")
	fl.Float64Var(&cfg.Append, "append", cfg.Append, "fraction of appends")
	fl.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed")
	fl.IntVar(&cfg.Bad, "bad", 0, "stale reads to plant (the history is then not linearizable)")
	fl.StringVarP(&out, "out", "o", "", "file to write (default stdout)")
	return cmd
}
