package harness

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func compareConfig(t *testing.T, stores ...string) CompareConfig {
	rc := baseConfig(t, stores[0])
	rc.Name = ""
	rc.TimeLimit = 400 * time.Millisecond
	if testing.Short() {
		rc.TimeLimit = 200 * time.Millisecond
	}
	return CompareConfig{Stores: stores, Run: rc}
}

func readCompareJSON(t *testing.T, dir string) compareFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "compare.json"))
	require.NoError(t, err)
	var f compareFile
	require.NoError(t, json.Unmarshal(b, &f))
	return f
}

func TestCompareMemoryWithMemory(t *testing.T) {
	cfg := compareConfig(t, "memory", "memory")
	res, err := Compare(context.Background(), cfg)
	require.NoError(t, err)
	require.Equal(t, "ok", res.Verdict())
	require.True(t, strings.HasSuffix(filepath.Base(res.Dir), "Z-compare"), res.Dir)
	require.Len(t, res.Runs, 2)
	require.Equal(t, []string{"memory", "memory-2"}, []string{res.Runs[0].Dir, res.Runs[1].Dir})

	f := readCompareJSON(t, res.Dir)
	require.Equal(t, "ok", f.Verdict)
	require.Equal(t, int64(7), f.Seed)
	require.Len(t, f.Runs, 2)
	require.False(t, f.Faults)
	for i, r := range f.Runs {
		require.Equal(t, "memory", r.Store)
		require.Equal(t, "ok", r.Verdict)
		require.NotNil(t, r.Summary)
		require.Equal(t, int64(7), r.Summary.Seed, "the same seed in every run")
		// The link in the compare directory reaches the run, which is an
		// ordinary run directory next to the compare directory.
		require.FileExists(t, filepath.Join(res.Dir, r.Dir, "summary.json"))
		require.FileExists(t, filepath.Join(res.Dir, r.Dir, "report.html"))
		require.Equal(t, filepath.Dir(res.Dir), filepath.Dir(filepath.Join(res.Dir, r.RunDir)), "run %d", i)
	}
	// The table in compare.json has one value per run, and real numbers.
	var tp *float64
	for _, row := range f.Table {
		require.Len(t, row.Text, 2, row.Metric)
		if row.Metric == "ok ops/s" {
			tp = row.Values[1]
		}
	}
	require.NotNil(t, tp)
	require.Greater(t, *tp, 0.0)

	html, err := os.ReadFile(filepath.Join(res.Dir, "compare.html"))
	require.NoError(t, err)
	require.Contains(t, string(html), `<span class="badge ok" id="verdict">ok</span>`)
	require.Contains(t, string(html), `href="memory-2/report.html"`)
	// The index lists the two runs (the compare directory is not a run).
	index, err := os.ReadFile(filepath.Join(cfg.Run.Out, "index.html"))
	require.NoError(t, err)
	require.Contains(t, string(index), filepath.Base(filepath.Join(res.Dir, f.Runs[1].RunDir)))
}

func TestCompareCatchesAStoreThatLosesWrites(t *testing.T) {
	cfg := compareConfig(t, "memory", "test-lost")
	cfg.Run.TimeLimit = 400 * time.Millisecond
	res, err := Compare(context.Background(), cfg)
	require.NoError(t, err, "a store that is not linearizable is a verdict, not an error")
	require.Equal(t, "illegal", res.Verdict())
	require.Equal(t, "ok", res.Runs[0].Verdict)
	require.Equal(t, "illegal", res.Runs[1].Verdict)
	require.Equal(t, "illegal", readCompareJSON(t, res.Dir).Verdict)
}

func TestCompareKeepsGoingPastAFailedRun(t *testing.T) {
	cfg := compareConfig(t, "test-fail-start", "memory")
	res, err := Compare(context.Background(), cfg)
	require.NoError(t, err)
	require.Len(t, res.Runs, 2)
	require.Error(t, res.Runs[0].Err)
	require.Contains(t, res.Runs[0].Error, "would not start")
	require.Equal(t, "ok", res.Runs[1].Verdict)
	require.Equal(t, "unknown", res.Verdict(), "a comparison with a failed run is not ok")
	require.FileExists(t, filepath.Join(res.Dir, "compare.html"))
}

func TestCompareRefusesBadConfigs(t *testing.T) {
	for _, c := range []CompareConfig{
		{Stores: []string{"memory", "nosuch"}},
		{Stores: []string{"memory"}, Targets: "nearest"},
	} {
		c.Run = baseConfig(t, "memory")
		_, err := Compare(context.Background(), c)
		require.ErrorIs(t, err, ErrInvalidConfig)
	}
	c := compareConfig(t, "memory")
	c.Run.Clients = 0
	_, err := Compare(context.Background(), c)
	require.ErrorIs(t, err, ErrInvalidConfig)

	// A schedule the nemesis refuses is found when the first run starts:
	// still bad usage, and no compare directory is left behind.
	c = compareConfig(t, "memory", "memory")
	c.Run.Nemesis = NemesisConfig{Kinds: []string{"no-such-fault"}}
	_, err = Compare(context.Background(), c)
	require.ErrorIs(t, err, ErrInvalidConfig)
	entries, err := os.ReadDir(c.Run.Out)
	require.NoError(t, err)
	require.Empty(t, entries)
}

func TestMappedScheduleReplaysTheFirstRunsFaults(t *testing.T) {
	first := t.TempDir()
	log := `{"time":5000000000,"step":0,"fault":"kill","event":"inject","role":"leader","targets":[2],"spec":{"kind":"kill","role":"leader","seed":11},"at":5000000000,"duration":5000000000}
{"time":10000000000,"step":0,"fault":"kill","event":"heal","role":"leader","targets":[2]}
{"time":15000000000,"step":1,"fault":"partition","event":"inject","targets":[1,3],"spec":{"kind":"partition","shape":"majorities-ring","seed":12},"at":15000000000,"duration":5000000000,"cuts":[{"from":"n1","to":"n3"}]}
{"time":20000000000,"step":2,"fault":"pause","event":"inject","role":"follower","targets":[3],"spec":{"kind":"pause","role":"follower","seed":13},"at":20000000000,"duration":5000000000}
`
	from := filepath.Join(first, "nemesis.jsonl")
	require.NoError(t, os.WriteFile(from, []byte(log), 0o644))
	read := func(path string) []map[string]any {
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		var out []map[string]any
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var e map[string]any
			require.NoError(t, json.Unmarshal([]byte(l), &e))
			out = append(out, e)
		}
		return out
	}

	to := filepath.Join(t.TempDir(), "schedule-chain.jsonl")
	require.NoError(t, writeMappedSchedule(from, to, TargetsRole, leaderDriver, chainDriver))
	got := read(to)
	require.Len(t, got, 3, "inject lines only: the replay needs nothing else")
	spec := func(e map[string]any) map[string]any { return e["spec"].(map[string]any) }
	require.Equal(t, "head", spec(got[0])["role"])
	require.Equal(t, "head", got[0]["role"])
	require.Equal(t, 5e9, got[0]["at"], "same offsets")
	require.Equal(t, 11.0, spec(got[0])["seed"], "same fault seeds")
	require.Nil(t, got[0]["targets"], "the replay resolves its own targets")
	require.Nil(t, spec(got[1])["role"], "a partition shape has no role to map")
	require.Equal(t, "majorities-ring", spec(got[1])["shape"])
	require.Nil(t, got[1]["cuts"])
	require.Equal(t, "middle", spec(got[2])["role"], "a follower replicates, as a middle node does")

	require.NoError(t, writeMappedSchedule(from, to, TargetsSameNode, leaderDriver, chainDriver))
	got = read(to)
	require.Equal(t, "node:2", spec(got[0])["role"], "the node the first run killed")
	require.Equal(t, "node:3", spec(got[2])["role"])

	require.Error(t, writeMappedSchedule(filepath.Join(t.TempDir(), "nemesis.jsonl"), to, TargetsRole, leaderDriver, chainDriver),
		"a first run without a schedule")
}

func TestSameNodeTargetsFollowTheFirstRun(t *testing.T) {
	log := `{"time":1,"step":0,"fault":"kill","event":"inject","role":"leader","targets":[2]}
{"time":2,"step":0,"fault":"kill","event":"heal","role":"leader","targets":[2]}
{"time":3,"step":1,"fault":"partition","event":"inject","role":"minority","targets":[1,3]}
{"time":4,"step":2,"fault":"member","event":"inject","role":"tail","skipped":true}
{"time":5,"step":3,"fault":"zk-kill","event":"inject","role":"zk-leader","targets":[1]}

`
	ts, err := parseInjectTargets(strings.NewReader(log))
	require.NoError(t, err)
	require.Equal(t, map[int][]int{0: {2}, 1: {1, 3}}, ts)
	m := sameNodeMapper{targets: ts, fallback: roleMapper{from: leaderRoles, to: chainRoles}}
	require.Equal(t, "node:2", m.Role(0, "leader"), "the node the first run's fault hit")
	require.Equal(t, "minority", m.Role(1, "minority"), "several nodes: the role stays")
	require.Equal(t, "middle", m.Role(2, "follower"), "not applied in the first run: mapped by role")
	require.Equal(t, "zk-leader", m.Role(3, "zk-leader"))

	_, err = parseInjectTargets(strings.NewReader("{\"step\":\n"))
	require.Error(t, err)

	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "nemesis.jsonl"), []byte(log), 0o644))
	mm, err := newMapper(TargetsSameNode, leaderDriver, chainDriver, dir)
	require.NoError(t, err)
	require.Equal(t, "node:2", mm.Role(0, "leader"))
	mm, err = newMapper(TargetsRole, leaderDriver, chainDriver, dir)
	require.NoError(t, err)
	require.Equal(t, "head", mm.Role(0, "leader"))
	_, err = newMapper(TargetsSameNode, leaderDriver, chainDriver, t.TempDir())
	require.Error(t, err, "no nemesis log to follow")
}

func TestCompareVerdictIsTheWorst(t *testing.T) {
	r := func(vs ...string) *CompareResult {
		res := &CompareResult{}
		for _, v := range vs {
			res.Runs = append(res.Runs, CompareRun{Verdict: v})
		}
		return res
	}
	require.Equal(t, "ok", r("ok", "ok").Verdict())
	require.Equal(t, "illegal", r("ok", "illegal").Verdict())
	require.Equal(t, "illegal", r("unknown", "illegal").Verdict())
	require.Equal(t, "unknown", r("ok", "unknown").Verdict())
	require.Equal(t, "unknown", r().Verdict())
	failed := r("ok", "ok")
	failed.Runs[1].Err = ErrInterrupted
	require.Equal(t, "unknown", failed.Verdict())
}
