package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/chainraft/chainraft/harness"
)

func init() {
	subcommands = append(subcommands, newNodeCmd)
}

// newNodeCmd is `chainraft node STORE [FLAGS]`: one node of a store whose
// driver runs its nodes as chainraft processes (harness.NodeDriver). The
// driver parses its own flags, so this command knows none of them; the
// older spelling `chainraft node --store STORE [FLAGS]` is accepted too.
func newNodeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "node STORE [flags]",
		Short: "Run one node of a store (started by the harness, or by hand)",
		Long: `Node runs one node of STORE until SIGTERM or SIGINT. The flags are the
store's own: 'chainraft node STORE --help' lists them.`,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			store, rest, err := nodeStore(args)
			if err != nil {
				return err
			}
			d, err := harness.LookupDriver(store)
			if err != nil {
				return usageErrorf("node: %v", err)
			}
			nd, ok := d.(harness.NodeDriver)
			if !ok {
				return usageErrorf("node: the %s store has no node processes of chainraft's own", store)
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if err := nd.NodeMain(ctx, rest); err != nil {
				var ee *exitError
				if errors.As(err, &ee) {
					return err
				}
				if errors.Is(err, harness.ErrInvalidConfig) {
					return withCode(exitUsage, fmt.Errorf("node: %w", err))
				}
				return withCode(exitRunFailed, fmt.Errorf("node: %w", err))
			}
			return nil
		},
	}
}

// nodeStore takes the store's name off args: the first argument, or the
// value of --store anywhere.
func nodeStore(args []string) (string, []string, error) {
	for i, a := range args {
		switch {
		case a == "--store" && i+1 < len(args):
			return args[i+1], append(append([]string{}, args[:i]...), args[i+2:]...), nil
		case strings.HasPrefix(a, "--store="):
			return strings.TrimPrefix(a, "--store="), append(append([]string{}, args[:i]...), args[i+1:]...), nil
		}
	}
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return "", nil, usageErrorf("node: name the store: chainraft node STORE [flags] (known: %s)", strings.Join(harness.Stores(), ", "))
	}
	return args[0], args[1:], nil
}
