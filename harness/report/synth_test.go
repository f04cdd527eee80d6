package report

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/histories"
)

// synthRun describes a synthetic run directory: a steady workload with an
// outage while a fault is active, so charts, bands and recovery all have
// something to show.
type synthRun struct {
	store, name, verdict string
	seed                 int64
	start                time.Time
	seconds              int
	opsPerSecond         int    // per client
	outageFrom, outageTo int    // seconds: nothing completes in between
	nemesis              string // nemesis.jsonl contents; empty for none
	failingKeys          []string
	throughput           float64
	p99                  float64
}

func defaultNemesis() string {
	// The nemesis's own format: node ids as numbers, steps pairing heal
	// with inject, the spec on inject lines.
	return `{"time":8000000000,"step":0,"fault":"kill","event":"inject","role":"leader","targets":[1],"spec":{"kind":"kill","role":"leader","seed":0},"at":8000000000,"duration":3500000000}
{"time":11500000000,"step":0,"fault":"kill","event":"heal","role":"leader","targets":[1]}
{"time":16000000000,"step":1,"fault":"partition","event":"inject","role":"follower","targets":[2,3],"spec":{"kind":"partition","shape":"isolate","seed":0}}
{"time":17000000000,"step":2,"fault":"pause","event":"inject","role":"follower","targets":[3]}
{"time":18000000000,"step":3,"fault":"member","event":"inject","role":"tail","error":"store cannot change membership","skipped":true}
{"time":19000000000,"step":2,"fault":"pause","event":"heal","role":"follower","targets":[3]}
{"time":21000000000,"step":1,"fault":"partition","event":"heal","role":"follower","targets":[2,3]}
{"time":26000000000,"step":4,"fault":"kill","event":"inject","role":"tail","targets":[2]}
`
}

// write creates the run under parent and returns its directory.
func (r synthRun) write(t testing.TB, parent string) string {
	t.Helper()
	dir := filepath.Join(parent, r.start.UTC().Format("20060102T150405")+"-"+r.store+"-"+r.name)
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "nodes"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "porcupine"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "zk"), 0o755))

	f, err := os.Create(filepath.Join(dir, "history.jsonl"))
	require.NoError(t, err)
	enc := json.NewEncoder(f)
	rng := rand.New(rand.NewPCG(uint64(r.seed), 1))
	kinds := []histories.Kind{histories.Get, histories.Get, histories.Put, histories.Append, histories.CAS}
	var ok, fail, info int64
	const clients = 4
	for c := 0; c < clients; c++ {
		now := int64(c) * 1e6
		end := int64(r.seconds) * 1e9
		client := c
		for now < end {
			op := histories.Operation{Client: client, Op: kinds[rng.IntN(len(kinds))], Key: fmt.Sprint("k", rng.IntN(5)), Call: now}
			lat := int64(1e9/r.opsPerSecond) - 2e5 + rng.Int64N(4e5)
			if op.Op != histories.Get {
				lat += 1e6 // writes are slower: visible on the latency chart
			}
			ret := now + lat
			from, to := int64(r.outageFrom)*1e9, int64(r.outageTo)*1e9
			switch {
			case ret > from && now < to && rng.IntN(3) == 0:
				op.Outcome, op.Error = histories.Info, "timeout"
				info++
				client += clients // an indeterminate result continues under a new id
				now = min(now+2e9, end)
				_ = enc.Encode(op)
				continue
			case ret > from && now < to:
				ret = to + rng.Int64N(3e8) // stuck until the outage ends
			}
			if rng.IntN(200) == 0 {
				op.Outcome, op.Error = histories.Fail, "not leader"
				fail++
			} else {
				op.Outcome = histories.OK
				ok++
			}
			op.Return = ret
			require.NoError(t, enc.Encode(op))
			now = ret
		}
	}
	require.NoError(t, f.Close())

	if r.nemesis != "" {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "nemesis.jsonl"), []byte(r.nemesis), 0o644))
	}
	var keyResults []map[string]any
	for i, k := range r.failingKeys {
		// Visualization file names are the checker's business: the report
		// follows key_results, whatever the name.
		viz := fmt.Sprintf("porcupine/key%d~%08x.html", i, i*7919)
		require.NoError(t, os.WriteFile(filepath.Join(dir, filepath.FromSlash(viz)), []byte("<html>viz</html>"), 0o644))
		keyResults = append(keyResults, map[string]any{"key": k, "verdict": "illegal", "ops": 100, "seconds": 0.1, "visualization": viz})
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "porcupine", "k0.html"), []byte("<html>viz</html>"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "nodes", "n1.log"), []byte("node n1 started\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "zk", "zk1.log"), []byte("zk up\n"), 0o644))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "nodes", "1", "wal"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "nodes", "1", "wal", "0.log"), make([]byte, 3000), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "harness.log"), []byte("run started\n"), 0o644))

	first := func(v float64) *float64 { return &v }
	summary := map[string]any{
		"store": r.store, "name": r.name, "seed": r.seed, "start": r.start,
		"duration_s": float64(r.seconds), "clients": clients, "keys": 5, "read_fraction": 0.4,
		"verdict": r.verdict, "ops_total": ok + fail + info, "ops_ok": ok, "ops_fail": fail, "ops_info": info,
		"throughput": r.throughput, "check_seconds": 0.42, "failing_keys": r.failingKeys, "key_results": keyResults,
		"visualizations": []string{"porcupine/k0.html"},
		"command":        []string{"chainraft", "run", "--store", r.store, "--seed", fmt.Sprint(r.seed), "--name", r.name + " x"},
		"latency": map[string]any{
			"get": map[string]float64{"p50_ms": 3.1, "p99_ms": r.p99 / 2, "p999_ms": 900, "max_ms": 1200},
			"put": map[string]float64{"p50_ms": 4.2, "p99_ms": r.p99, "p999_ms": 1500, "max_ms": 3100},
			"all": map[string]float64{"p50_ms": 3.5, "p99_ms": r.p99 * 0.9, "p999_ms": 1400, "max_ms": 3100},
		},
		"recovery": []map[string]any{
			{"time": 8e9, "step": 0, "fault": "kill", "event": "inject", "targets": []int{1}, "role": "leader",
				"first_read_ms": first(1234.5), "first_write_ms": first(3512), "throughput_ms": first(4100)},
			{"time": 11.5e9, "step": 0, "fault": "kill", "event": "heal", "targets": []int{1}, "role": "leader",
				"first_read_ms": first(2.5), "first_write_ms": first(40), "throughput_ms": first(900)},
			{"time": 26e9, "step": 4, "fault": "kill", "event": "inject", "targets": []int{2}, "role": "tail",
				"first_read_ms": first(20), "first_write_ms": nil, "throughput_ms": nil},
		},
		"checks": []map[string]any{
			{"name": "replicas converge", "ok": true, "detail": "3 replicas, 5 keys equal"},
			{"name": "acknowledged writes present", "ok": false, "detail": "k3: append 17 missing"},
		},
		"a_future_field": map[string]int{"x": 1},
	}
	b, err := json.MarshalIndent(summary, "", "  ")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "summary.json"), b, 0o644))
	return dir
}

func defaultSynth() synthRun {
	return synthRun{
		store: "raft", name: "kill-leader", verdict: "illegal", seed: 42,
		start: time.Date(2026, 11, 26, 17, 0, 0, 0, time.UTC), seconds: 30, opsPerSecond: 200,
		outageFrom: 8, outageTo: 11, nemesis: defaultNemesis(),
		failingKeys: []string{"k3", "a/b c"}, throughput: 640, p99: 410,
	}
}
