package nemesis

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestGenerateRefusesIntervalsTooShortToBeFaults(t *testing.T) {
	_, err := Generate(1, ScheduleOptions{Kinds: []string{KindKill}, Interval: time.Nanosecond, Total: 30 * time.Second})
	require.ErrorContains(t, err, "below 100ms")
	_, err = Generate(1, ScheduleOptions{Kinds: []string{KindKill}, Interval: 100 * time.Millisecond, Overlap: true, Total: 24 * time.Hour})
	require.ErrorContains(t, err, "more than 10000")
}

func TestReadScheduleNamesTheFileAndLine(t *testing.T) {
	write := func(content string) string {
		p := filepath.Join(t.TempDir(), "nemesis.jsonl")
		require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
		return p
	}
	kill := `{"step":1,"fault":"kill","event":"inject","spec":{"kind":"kill","role":"leader"},"at":1000000000,"duration":1000000000}`
	steps, err := ReadSchedule(write(kill + "\n" + `{"step":1,"fault":"kill","event":"heal"}` + "\n"))
	require.NoError(t, err)
	require.Len(t, steps, 1)
	require.Equal(t, time.Second, steps[0].At)

	for content, want := range map[string]string{
		"":                                   "no inject lines",
		kill + "\n" + kill + "\n":            ":2: step 1 injected again (first on line 1)",
		kill + "\n{not json\n":               ":2: not a nemesis event",
		`{"step":2,"event":"inject"}` + "\n": ":1: inject of step 2 has no spec",
		`{"step":3,"event":"inject","spec":{"kind":"melt"}}` + "\n":                     `:1: step 3: nemesis: unknown fault kind "melt"`,
		`{"step":4,"event":"inject","spec":{"kind":"kill"},"at":-5}` + "\n":             ":1: step 4: negative at",
		`{"step":5,"event":"inject","spec":{"kind":"partition","shape":"blob"}}` + "\n": ":1: step 5:",
		`{"step":6,"event":"wobble"}` + "\n":                                            `:1: event "wobble" is neither inject nor heal`,
	} {
		p := write(content)
		_, err := ReadSchedule(p)
		require.ErrorContains(t, err, want, content)
		require.ErrorContains(t, err, p)
	}
}
