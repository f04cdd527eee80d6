package raftdriver_test

import (
	"os"
	"strings"
	"testing"

	"github.com/chainraft/chainraft/internal/proc"
)

// TestMain kills whatever a test leaves running, also on ^C, and removes
// the chainraft binary proc.BuildChainraft built.
func TestMain(m *testing.M) { os.Exit(proc.RunTests(m)) }

// testLog sends the cluster's and the harness's lines to the test's log.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Helper()
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
