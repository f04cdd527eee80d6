package main

import (
	"os"
	"testing"
)

// TestMain lets this test binary stand in for chainraft when a command
// under test starts children from os.Executable() (`node STORE`,
// `lockworker`): the child runs the command, not the test suite again.
// Otherwise it runs the tests. (Not proc.RunTests: its handler would turn
// the interrupt that TestServeServesRunsAndStops sends serve into the
// test binary's exit.)
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && (os.Args[1] == "node" || os.Args[1] == "lockworker") {
		os.Exit(execute(os.Args[1:]))
	}
	os.Exit(m.Run())
}
