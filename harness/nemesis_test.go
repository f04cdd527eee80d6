package harness

import (
	"os"
	"testing"

	"github.com/chainraft/chainraft/internal/proc"
)

// TestMain kills whatever a test leaves running, also on ^C.
func TestMain(m *testing.M) { os.Exit(proc.RunTests(m)) }
