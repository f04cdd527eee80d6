package main

import (
	"os"
	"testing"

	"github.com/chainraft/chainraft/internal/proc"
)

// TestMain lets this test binary stand in for chainraft when a command
// under test starts children from os.Executable() (`node STORE`,
// `lockworker`): the child runs the command, not the test suite again.
// Otherwise it runs the tests and kills whatever process a test left.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && (os.Args[1] == "node" || os.Args[1] == "lockworker") {
		os.Exit(execute(os.Args[1:]))
	}
	os.Exit(proc.RunTests(m))
}
