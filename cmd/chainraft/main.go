// Command chainraft runs, checks and compares linearizability tests of a
// chain-replicated store and a raft store. See the README for the commands.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// Exit codes shared by run, compare and check (see the README).
const (
	exitOK        = 0
	exitIllegal   = 1
	exitUsage     = 2
	exitUnknown   = 3
	exitRunFailed = 4
)

// exitError carries the process exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// withCode attaches an exit code to err.
func withCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: code, err: err}
}

// usageErrorf is bad usage or input: exit 2.
func usageErrorf(format string, args ...any) error {
	return withCode(exitUsage, fmt.Errorf(format, args...))
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "chainraft",
		Short:         "Linearizability tests of chain replication and raft, side by side",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	// Flag parse errors are usage errors.
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return withCode(exitUsage, err)
	})
	for _, add := range subcommands {
		root.AddCommand(add())
	}
	return root
}

// subcommands is filled by each command's file from init, so adding a
// command touches only its own file.
var subcommands []func() *cobra.Command

func main() {
	os.Exit(execute(os.Args[1:]))
}

func execute(args []string) int {
	root := newRootCmd()
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil && ee.err.Error() != "" {
			fmt.Fprintln(os.Stderr, "chainraft:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(os.Stderr, "chainraft:", err)
	// Errors cobra raises itself (unknown command, bad arguments) are usage.
	return exitUsage
}
