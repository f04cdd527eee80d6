package histories

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The reference checker must agree with the corpus's known verdicts, so that
// it can arbitrate when Check's verdict is in doubt.
func TestReferenceAgreesWithCorpus(t *testing.T) {
	files, err := filepath.Glob("testdata/*.jsonl")
	require.NoError(t, err)
	checked := 0
	for _, f := range files {
		base := filepath.Base(f)
		var want Verdict
		switch {
		case strings.HasPrefix(base, "ok-"):
			want = VerdictOK
		case strings.HasPrefix(base, "illegal-"):
			want = VerdictIllegal
		default:
			continue
		}
		ops, err := ReadFile(f)
		require.NoError(t, err, base)
		got, err := CheckReference(context.Background(), ops, 10*time.Second)
		require.NoError(t, err, base)
		require.Equal(t, want, got, base)
		checked++
	}
	require.Greater(t, checked, 10)
}

func TestReferenceRejectsBadInput(t *testing.T) {
	_, err := CheckReference(context.Background(), []Operation{{Client: 0, Op: "nope", Key: "k", Outcome: OK, Call: 1, Return: 2}}, time.Second)
	require.Error(t, err)
}
