package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/chainraft/chainraft/harness/workload"
	"github.com/chainraft/chainraft/histories"
)

// CheckResult is one end-of-run check in summary.json's "checks". OK is nil
// for a check that could not be made here (Status "skipped"), which neither
// passes nor fails the run.
type CheckResult struct {
	Name   string `json:"name"`
	OK     *bool  `json:"ok"`
	Status string `json:"status"` // "pass", "fail" or "skipped"
	Detail string `json:"detail,omitempty"`
}

// Passed reports whether the check passed (skipped counts as not failed).
func (c CheckResult) Failed() bool { return c.OK != nil && !*c.OK }

// FailedChecks lists the checks of s that failed, as "name: detail".
func FailedChecks(s *Summary) []string {
	var out []string
	for _, c := range s.Checks {
		if c.Failed() {
			out = append(out, c.Name+": "+c.Detail)
		}
	}
	return out
}

// Bounds of the end-of-run checks. A store that does not answer within
// availableWait of the last heal has not recovered, which is a finding, not
// a reason to hang the run.
const (
	availableWait = 30 * time.Second
	finalOpsWait  = 20 * time.Second
	replicaWait   = 30 * time.Second
)

// endOfRun runs the end-of-run checks after the workload and the nemesis
// have stopped, in order: every fault healed; the store answers again
// (bounded); a final write that must succeed; a final read of every key;
// the replicas agree. The final operations are recorded in the history, so
// the linearizability check covers them too.
func (r *runner) endOfRun(ctx context.Context, cluster Cluster) []CheckResult {
	var out []CheckResult
	add := func(name string, ok bool, detail string) {
		st := "pass"
		if !ok {
			st = "fail"
		}
		out = append(out, CheckResult{Name: name, OK: &ok, Status: st, Detail: detail})
		fmt.Fprintf(r.log, "check %-16s %s  %s\n", name, st, detail)
	}
	skip := func(name, detail string) {
		out = append(out, CheckResult{Name: name, Status: "skipped", Detail: detail})
		fmt.Fprintf(r.log, "check %-16s skipped  %s\n", name, detail)
	}

	for _, sc := range r.cfg.Sidecars {
		if h, ok := sc.(Healer); ok {
			if err := h.Healed(); err != nil {
				add("healed", false, err.Error())
			} else {
				add("healed", true, "every fault healed")
			}
		}
	}

	store, err := cluster.NewClient()
	if err != nil {
		add("available", false, fmt.Sprintf("new client: %v", err))
		return out
	}
	defer func() {
		if c, ok := store.(io.Closer); ok {
			_ = c.Close()
		}
	}()
	c := workload.NewClient(store, r.rec.Session(), nil, r.cfg.Cluster.RequestTimeout, nil)
	keys := workload.KeyNames(r.w.Keys)

	// retry does op until it returns ok or the bound passes; every attempt
	// is in the history.
	retry := func(bound time.Duration, op histories.Operation) (histories.Operation, int, time.Duration, error) {
		began := time.Now()
		deadline := began.Add(bound)
		var done histories.Operation
		for n := 1; ; n++ {
			done = c.Do(ctx, op)
			if done.Outcome == histories.OK {
				return done, n, time.Since(began), nil
			}
			if ctx.Err() != nil || time.Now().After(deadline) {
				return done, n, time.Since(began), fmt.Errorf("no ok after %d attempts in %v; last: %s %s", n, bound, done.Outcome, done.Error)
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}

	_, n, took, err := retry(availableWait, histories.Operation{Op: histories.Get, Key: keys[0]})
	if err != nil {
		add("available", false, err.Error())
		return out
	}
	add("available", true, fmt.Sprintf("a read succeeded after %d attempt(s), %.0f ms", n, ms(int64(took))))

	final := fmt.Sprintf("final-%d", r.w.Seed)
	_, n, took, err = retry(finalOpsWait, histories.Operation{Op: histories.Put, Key: keys[0], Value: final})
	if err != nil {
		add("final-write", false, err.Error())
	} else {
		add("final-write", true, fmt.Sprintf("put %s=%s after %d attempt(s), %.0f ms", keys[0], final, n, ms(int64(took))))
	}

	var bad []string
	found := 0
	began := time.Now()
	for _, k := range keys {
		left := finalOpsWait - time.Since(began)
		done, _, _, err := retry(max(left, time.Second), histories.Operation{Op: histories.Get, Key: k})
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", k, err))
			continue
		}
		if done.Found {
			found++
		}
	}
	if len(bad) > 0 {
		add("final-reads", false, fmt.Sprintf("%d of %d keys not read: %s", len(bad), len(keys), strings.Join(bad[:min(len(bad), 3)], "; ")))
	} else {
		add("final-reads", true, fmt.Sprintf("read all %d keys (%d present) in %.0f ms", len(keys), found, ms(int64(time.Since(began)))))
	}

	rc, ok := cluster.(ReplicaComparer)
	if !ok {
		skip("replica-digests", fmt.Sprintf("a %s cluster has no replicas to compare", r.cfg.Store))
		return out
	}
	dctx, cancel := context.WithTimeout(ctx, replicaWait)
	defer cancel()
	if w, ok := cluster.(WholeWaiter); ok {
		// A replica spliced out during a fault must be back before the
		// comparison: comparing only the members left would pass a store
		// that never rejoins its nodes.
		if err := w.WaitServing(dctx); err != nil {
			add("replica-digests", false, fmt.Sprintf("not every replica is back in its group: %v", err))
			return out
		}
	}
	detail, err := rc.CompareReplicas(dctx)
	switch {
	case errors.Is(err, ErrNoDigest):
		skip("replica-digests", err.Error())
	case err != nil:
		add("replica-digests", false, err.Error())
	default:
		add("replica-digests", true, detail)
	}
	return out
}
