package hosts

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Clock faults step a host's wall clock (CLOCK_REALTIME), as an NTP step
// or an operator's `date -s` would. Nothing else can be moved from outside
// a Go process: Go reads its clocks through the vDSO, so LD_PRELOAD tricks
// (libfaketime) never see the calls, and a time namespace offsets only the
// monotonic and boot clocks, once, before its first process starts. The
// monotonic clock cannot be stepped at all, so a store that measures its
// leases and timeouts on it is immune, which is the point: the fault finds
// code that trusts the wall clock.
//
// Every step is recorded, before it is made, as the run's net offset in
// /tmp/<chain>.clock on the host; teardownCmd steps it back, so a run's
// end, the guard of a harness that died (SSH hosts), the netns reaper and
// Sweep all restore the clock. The record is taken by a rename before the
// step back: an undoer killed in between leaves <file>.undo, which the
// cleanup tests report, and the clock off. Steps are made with GNU date, one process
// reading the time and another setting it, so each step is off by the
// few milliseconds between them.

// ClockShared reports whether the hosts share one clock: netns hosts are
// namespaces of one kernel, whose wall clock is also the control
// machine's. The harness's own timestamps are monotonic and do not move.
func (p *Pool) ClockShared() bool { return p.Kind == "netns" }

// clockFile is where a host records the run's net clock offset in
// nanoseconds.
func clockFile(chain string) string { return "/tmp/" + chain + ".clock" }

// StepClocks steps the wall clock of every host in hs by d, once per
// clock: on netns hosts the one clock they share.
func (p *Pool) StepClocks(ctx context.Context, hs []*Host, d time.Duration) error {
	if p.ClockShared() && len(hs) > 0 {
		hs = p.Hosts[:1]
	}
	seen := map[*Host]bool{}
	for _, h := range hs {
		if seen[h] {
			continue
		}
		seen[h] = true
		if err := h.stepClock(ctx, d); err != nil {
			return err
		}
	}
	return nil
}

// ntpDaemons are the time daemons that would undo a step (or fight its
// heal); a clock fault refuses to run beside them, as Jepsen stops ntpd.
const ntpDaemons = "chronyd ntpd openntpd systemd-timesyn"

func (h *Host) stepClock(ctx context.Context, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	f := clockFile(h.pool.Chain())
	script := fmt.Sprintf(`for p in %[1]s; do if command -v pgrep >/dev/null && pgrep -x $p >/dev/null; then echo "$p runs and would fight the step: stop it for clock faults" >&2; exit 3; fi; done
date +%%s%%N | grep -qE '^[0-9]+$' || { echo 'date cannot print nanoseconds (GNU coreutils needed)' >&2; exit 3; }
f=%[2]s; o=$(cat "$f" 2>/dev/null || echo 0)
echo $((o + (%[3]d))) > "$f.new" && mv "$f.new" "$f" || exit 1
%[4]s || { if [ "$o" = 0 ]; then rm -f "$f"; else echo "$o" > "$f"; fi; exit 1; }`, ntpDaemons, Quote(f), d.Nanoseconds(), stepCmd(fmt.Sprint(d.Nanoseconds())))
	// Do's error names the host and carries the script's output (the
	// daemon found, or date's complaint).
	if _, err := h.Do(ctx, script, ""); err != nil {
		return fmt.Errorf("step the clock by %v: %w", d, err)
	}
	return nil
}

// stepCmd steps CLOCK_REALTIME by the shell expression ns (nanoseconds).
// It is one braced command, so that `a || step` never runs half of it.
func stepCmd(ns string) string {
	return fmt.Sprintf(`{ t=$(( $(date +%%s%%N) + (%s) )) && date -s "@$((t / 1000000000)).$(printf %%09d $((t %% 1000000000)))" >/dev/null; }`, ns)
}

// clockUndoCmd steps the clock back by the offset a run recorded, once:
// the file is taken by a rename, so of several undoers (every netns host's
// teardown, the reaper, Sweep) one acts.
func clockUndoCmd(chain string) string {
	f := Quote(clockFile(chain))
	return fmt.Sprintf(`if mv %[1]s %[1]s.undo 2>/dev/null; then o=$(cat %[1]s.undo); [ "${o:-0}" = 0 ] || %[2]s; rm -f %[1]s.undo; fi`,
		f, stepCmd("-($o)"))
}

// sweepClocks restores the clock offsets recorded by netns runs whose
// harness is gone (the reaper normally does it when the harness dies).
func sweepClocks() []string {
	m, _ := filepath.Glob("/tmp/" + chainPrefix + "*.clock")
	var out []string
	for _, f := range m {
		chain := strings.TrimSuffix(filepath.Base(f), ".clock")
		if alive(strings.TrimPrefix(chain, chainPrefix)) {
			continue
		}
		if exec.Command("sh", "-c", clockUndoCmd(chain)).Run() == nil {
			out = append(out, "clock offset of "+chain)
		}
	}
	return out
}

// clockLeftovers lists recorded offsets not yet undone.
func clockLeftovers() []string {
	m, _ := filepath.Glob("/tmp/" + chainPrefix + "*.clock*")
	var out []string
	for _, f := range m {
		if b, err := os.ReadFile(f); err == nil {
			out = append(out, "clock offset "+strings.TrimSpace(string(b))+" ns in "+f)
		}
	}
	return out
}
