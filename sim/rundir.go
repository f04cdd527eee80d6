package sim

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/chainraft/chainraft/harness"
	"github.com/chainraft/chainraft/harness/report"
	"github.com/chainraft/chainraft/histories"
	"github.com/chainraft/chainraft/nemesis"
)

// WriteRunDir writes res as a run directory under out, the same files a
// real run leaves (harness.Run): history.jsonl, nemesis.jsonl, summary.json,
// report.html and porcupine/<key>.html, plus sim.log (the seed's event log
// and the command that replays it). Times in them are simulated
// nanoseconds. It points out/latest at the directory and refreshes
// out/index.html. Only the directory's name and summary.json's start come
// from the wall clock: they are outside the simulated path.
func WriteRunDir(ctx context.Context, out string, res *Result, command []string) (string, error) {
	o := res.Options
	now := time.Now().UTC()
	dir, err := harness.MakeRunDir(out, fmt.Sprintf("%s-%s-sim-seed%d", now.Format("20060102T150405Z"), o.Store, o.Seed))
	if err != nil {
		return "", err
	}
	if err := histories.WriteFile(filepath.Join(dir, "history.jsonl"), res.Ops); err != nil {
		return dir, err
	}
	if err := nemesis.WriteEventsFile(filepath.Join(dir, "nemesis.jsonl"), res.Events); err != nil {
		return dir, err
	}
	logText := strings.Join(res.Log, "\n") + "\n"
	if res.Failure != "" {
		logText += fmt.Sprintf("failure: %s: %s\n", res.Failure, res.Detail)
	}
	logText += "replay: " + ReplayCommand(o) + "\n"
	if err := os.WriteFile(filepath.Join(dir, "sim.log"), []byte(logText), 0o644); err != nil {
		return dir, err
	}

	end := int64(res.SimTime)
	check, err := histories.Check(ctx, res.Ops, histories.CheckOptions{
		Budget:       o.CheckBudget,
		VisualizeDir: filepath.Join(dir, "porcupine"),
		VisualizeAll: true,
		Annotations:  nemesis.Annotations(res.Events, end),
	})
	if err != nil && check.Verdict == "" {
		return dir, fmt.Errorf("checking: %w", err)
	}
	s := summaryOf(res, command, now, dir, check)
	if err := harness.WriteSummary(filepath.Join(dir, "summary.json"), s); err != nil {
		return dir, err
	}
	if err := linkLatest(out, dir); err != nil {
		return dir, err
	}
	if err := report.WriteRun(dir); err != nil {
		return dir, fmt.Errorf("report.html: %w", err)
	}
	if err := report.WriteIndex(out); err != nil {
		return dir, fmt.Errorf("%s: %w", filepath.Join(out, "index.html"), err)
	}
	return dir, nil
}

// summaryOf fills summary.json from a seed's result; the checks a real run
// calls end-of-run checks are the simulator's liveness and replica checks.
func summaryOf(res *Result, command []string, start time.Time, dir string, check histories.Result) *harness.Summary {
	o := res.Options
	s := &harness.Summary{
		Store: o.Store, Name: fmt.Sprintf("sim-seed%d", o.Seed), Command: command, Seed: o.Seed, Start: start,
		DurationS: res.SimTime.Seconds(), Clients: res.Clients, Keys: res.Workload.Keys,
		ReadFraction: res.Workload.ReadFraction, AppendFraction: res.Workload.AppendFraction, CASFraction: res.Workload.CASFraction,
		Nodes: res.Nodes, NoFsync: o.NoFsync, ReadMode: o.ReadMode, Bug: o.Bug,
		RequestTimeoutMS: float64(o.RequestTimeout) / 1e6,
		Verdict:          string(check.Verdict), FailingKeys: []string{}, History: "history.jsonl",
		CheckSeconds: check.Elapsed.Seconds(), Pruned: check.Pruned, Bounded: check.Bounded,
		OpsByKind: map[string]map[string]int{}, ThroughputByOp: map[string]float64{}, Latency: map[string]harness.Latency{},
	}
	if s.AppendFraction < 0 || s.CASFraction < 0 {
		w := (1 - s.ReadFraction) / 4
		s.AppendFraction, s.CASFraction = w, w
	}
	lat := map[string][]int64{}
	for _, op := range res.Ops {
		k := string(op.Op)
		if s.OpsByKind[k] == nil {
			s.OpsByKind[k] = map[string]int{}
		}
		s.OpsByKind[k][string(op.Outcome)]++
		s.OpsTotal++
		switch op.Outcome {
		case histories.OK:
			s.OpsOK++
			lat[k] = append(lat[k], op.Return-op.Call)
			lat["all"] = append(lat["all"], op.Return-op.Call)
		case histories.Fail:
			s.OpsFail++
		default:
			s.OpsInfo++
		}
	}
	if s.DurationS > 0 {
		s.Throughput = float64(s.OpsOK) / s.DurationS
	}
	for k, ds := range lat {
		if k != "all" && s.DurationS > 0 {
			s.ThroughputByOp[k] = float64(len(ds)) / s.DurationS
		}
		s.Latency[k] = latencyOf(ds)
	}
	for _, k := range check.Keys {
		if k.Verdict == histories.VerdictOK {
			continue
		}
		s.FailingKeys = append(s.FailingKeys, k.Key)
		kr := harness.KeyResult{Key: k.Key, Verdict: string(k.Verdict), Ops: k.Ops, Seconds: k.Elapsed.Seconds()}
		if rel, err := filepath.Rel(dir, k.Visualization); err == nil && k.Visualization != "" {
			kr.Visualization = rel
		}
		s.KeyResults = append(s.KeyResults, kr)
	}
	slices.Sort(s.FailingKeys)
	for _, v := range check.Visualizations {
		if rel, err := filepath.Rel(dir, v); err == nil {
			s.Visualizations = append(s.Visualizations, rel)
		}
	}
	steps := 0
	for _, e := range res.Events {
		if e.Event == nemesis.PhaseInject {
			steps++
		}
	}
	s.Nemesis = &harness.NemesisInfo{Kinds: simKinds(), Steps: steps}
	a := nemesis.Analyze(res.Ops, res.Events)
	s.Recovery, s.RecoveryByKind = a.Recovery, a.ByKind
	progress := res.Failure != FailProgress
	s.Checks = append(s.Checks, harness.CheckResult{Name: "progress", OK: &progress, Status: passFail(progress),
		Detail: ifElse(progress, "an ok write and an ok read after the faults stopped", res.Detail)})
	if progress && res.Failure != FailPanic {
		agree := res.Failure != FailDiverged
		s.Checks = append(s.Checks, harness.CheckResult{Name: "replica-digests", OK: &agree, Status: passFail(agree),
			Detail: ifElse(agree, "every replica applied the same data", res.Detail)})
	}
	if res.Failure == FailPanic {
		s.Error = "panic: " + res.Detail
		s.Verdict = string(histories.VerdictUnknown)
	}
	return s
}

func simKinds() []string {
	out := make([]string, len(faultWeights))
	for i, k := range faultWeights {
		out[i] = k.kind
	}
	return out
}

func passFail(ok bool) string { return ifElse(ok, "pass", "fail") }

func ifElse(c bool, a, b string) string {
	if c {
		return a
	}
	return b
}

func latencyOf(ds []int64) harness.Latency {
	s := slices.Clone(ds)
	slices.Sort(s)
	var sum int64
	for _, d := range s {
		sum += d
	}
	q := func(p float64) float64 { return float64(s[min(len(s)-1, int(p*float64(len(s))))]) / 1e6 }
	return harness.Latency{Count: len(s), MeanMS: float64(sum) / float64(len(s)) / 1e6,
		P50MS: q(0.5), P99MS: q(0.99), P999MS: q(0.999), MaxMS: float64(s[len(s)-1]) / 1e6}
}

// linkLatest points out/latest at dir, atomically (a new link renamed over
// the old one), as real runs do.
func linkLatest(out, dir string) error {
	target, err := filepath.Rel(out, dir)
	if err != nil {
		target = dir
	}
	tmp := filepath.Join(out, fmt.Sprintf(".latest.%d.%d", os.Getpid(), time.Now().UnixNano()))
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("linking latest run: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(out, "latest")); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("linking latest run: %w", err)
	}
	return nil
}

// ReplayCommand is the one-line command that runs o's seed again.
func ReplayCommand(o Options) string {
	parts := []string{"chainraft", "sim", "--store", o.Store, "--seed", fmt.Sprint(o.Seed)}
	if o.Bug != "" {
		parts = append(parts, "--bug", o.Bug)
	}
	if o.ReadMode != "" {
		parts = append(parts, "--read-mode", o.ReadMode)
	}
	if o.NoFsync {
		parts = append(parts, "--no-fsync")
	}
	d := Options{}.withDefaults()
	if o.FaultTime != d.FaultTime {
		parts = append(parts, "--fault-time", o.FaultTime.String())
	}
	if o.LivenessBound != d.LivenessBound {
		parts = append(parts, "--liveness-bound", o.LivenessBound.String())
	}
	if o.RequestTimeout != d.RequestTimeout {
		parts = append(parts, "--request-timeout", o.RequestTimeout.String())
	}
	return strings.Join(parts, " ")
}
