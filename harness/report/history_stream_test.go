package report

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// A streamed history's invoke lines are not operations of their own: a
// completed one is replaced by its completion, an uncompleted one (the
// recorder was killed) counts as unknown.
func TestTimelineReadsInvokeLines(t *testing.T) {
	in := `{"client":0,"op":"put","key":"k","value":"a","call":1,"outcome":"invoke"}
{"client":1,"op":"put","key":"k","value":"b","call":2,"outcome":"invoke"}
{"client":0,"op":"put","key":"k","value":"a","call":1,"return":5,"outcome":"ok"}
{"client":2,"op":"get","key":"k","call":3,"return":6,"outcome":"ok","found":true,"output":"a"}
`
	tl, err := readTimeline(strings.NewReader(in))
	require.NoError(t, err)
	require.Equal(t, int64(3), tl.Ops, "two completed operations and one never completed")
	var infos int64
	for _, n := range tl.Infos {
		infos += n
	}
	require.Equal(t, int64(1), infos, "the uncompleted write is unknown")
	require.Zero(t, tl.Malformed)
}
