package histories

import (
	"context"
	"errors"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestCorpus runs every history in testdata. The expected result is in the
// name: ok-*, illegal-*, or bad-L<line>-* for input the reader must refuse
// at that line.
func TestCorpus(t *testing.T) {
	files, err := filepath.Glob("testdata/*.jsonl")
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(files), 30)
	badLine := regexp.MustCompile(`^bad-L(\d+)-`)
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(strings.TrimSuffix(name, ".jsonl"), func(t *testing.T) {
			ops, err := ReadFile(path)
			if m := badLine.FindStringSubmatch(name); m != nil {
				want, _ := strconv.Atoi(m[1])
				var ie *InputError
				require.True(t, errors.As(err, &ie), "want an *InputError, got %v", err)
				require.Equal(t, path, ie.File)
				require.Equal(t, want, ie.Line, "error: %v", err)
				require.True(t, strings.HasPrefix(err.Error(), path+":"+m[1]+": "), err.Error())
				return
			}
			require.NoError(t, err)
			var want Verdict
			switch {
			case strings.HasPrefix(name, "ok-"):
				want = VerdictOK
			case strings.HasPrefix(name, "illegal-"):
				want = VerdictIllegal
			default:
				t.Fatalf("corpus file %s has no verdict prefix", name)
			}
			res, err := Check(context.Background(), ops, CheckOptions{Budget: 10 * time.Second})
			require.NoError(t, err)
			require.Equal(t, want, res.Verdict, "keys: %+v", res.Keys)
			// The same history through the reference checker (no pruning).
			require.Equal(t, string(want), strings.ToLower(string(plainCheck(ops, 10*time.Second))))
		})
	}
}
