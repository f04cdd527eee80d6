package nemesis

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"
)

// Runner executes a schedule against a Target. Run and HealAll are meant to
// be called from one goroutine (the harness's nemesis goroutine, then its
// teardown); the Runner starts no goroutine of its own.
type Runner struct {
	Target Target
	// Clock returns ns since the run's start: the recorder's clock, so that
	// events and history share one time axis.
	Clock func() int64
	// Events receives every event (may be nil).
	Events *EventWriter
	// Log receives one line per injection and per heal (may be nil).
	Log io.Writer
	// OpTimeout bounds each inject and each heal (default
	// DefaultOpTimeout).
	OpTimeout time.Duration

	mu       sync.Mutex
	active   []active // injection order
	healErrs []error
}

type active struct {
	step Step
	inj  Injection
	at   int64
}

// Run injects and heals steps at their offsets (on Clock) until the schedule
// is done or ctx ends. Heals that fall due at the same time as an injection
// go first. A step the target cannot do is recorded as skipped; a failed
// injection is recorded and the run goes on (the history still tells what
// happened). Faults still active when ctx ends stay active: call HealAll.
func (r *Runner) Run(ctx context.Context, steps []Step) error {
	type action struct {
		at   time.Duration
		heal bool
		step Step
	}
	// rank orders actions due at the same time: heals of earlier faults
	// first (a fault due to end frees its targets before the next begins),
	// then injections, then the heals of zero-length faults, which must
	// follow their own injection.
	rank := func(a action) int {
		switch {
		case !a.heal:
			return 1
		case a.step.Duration <= 0:
			return 2
		}
		return 0
	}
	var acts []action
	for _, s := range steps {
		acts = append(acts, action{at: s.At, step: s}, action{at: s.At + max(s.Duration, 0), heal: true, step: s})
	}
	sort.SliceStable(acts, func(i, j int) bool {
		if acts[i].at != acts[j].at {
			return acts[i].at < acts[j].at
		}
		return rank(acts[i]) < rank(acts[j])
	})
	// lag shifts the rest of the schedule by how late injections completed:
	// an injection that took long (a node slow to stop, a conf change
	// waiting for a quorum) still gets its whole duration, and the faults
	// behind it keep their lengths and gaps instead of shrinking to nothing.
	// Order is kept, so a schedule without overlap stays without.
	var lag time.Duration
	for _, a := range acts {
		if err := r.sleepUntil(ctx, a.at+lag); err != nil {
			return err
		}
		if a.heal {
			r.heal(ctx, a.step.ID)
		} else {
			r.inject(ctx, a.step)
			lag = max(lag, time.Duration(r.Clock())-a.at)
		}
	}
	return nil
}

// HealAll heals every fault still active, latest first, and returns the
// heal errors. It keeps going past failures: a fault left injected would
// poison the end-of-run checks and leak processes.
func (r *Runner) HealAll(ctx context.Context) error {
	var errs []error
	for {
		r.mu.Lock()
		if len(r.active) == 0 {
			r.mu.Unlock()
			break
		}
		id := r.active[len(r.active)-1].step.ID
		r.mu.Unlock()
		if err := r.heal(ctx, id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Active lists the step ids currently injected, in injection order.
func (r *Runner) Active() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := make([]int, len(r.active))
	for i, a := range r.active {
		ids[i] = a.step.ID
	}
	return ids
}

// ActiveFaults describes the faults in force, in injection order ("kill n2
// (leader)"), for a progress line. Safe for concurrent use.
func (r *Runner) ActiveFaults() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.active))
	for _, a := range r.active {
		f := a.step.Fault
		e := Event{Fault: f.Kind, Role: f.role(), Targets: a.inj.Targets, Spec: &f}
		out = append(out, e.Description())
	}
	return out
}

func (r *Runner) opTimeout() time.Duration {
	if r.OpTimeout > 0 {
		return r.OpTimeout
	}
	return DefaultOpTimeout
}

// DefaultOpTimeout is Runner.OpTimeout's default.
const DefaultOpTimeout = 30 * time.Second

func (r *Runner) sleepUntil(ctx context.Context, at time.Duration) error {
	for {
		wait := time.Duration(int64(at) - r.Clock())
		if wait <= 0 {
			return ctx.Err()
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// inject and heal stamp their event with the time they began applying the
// fault (for an injection: once its targets are resolved): the damage of a
// slow injection (a node stopping cleanly, a conf change) starts with it,
// and recovery is measured from there; Took says how long it took.
func (r *Runner) inject(ctx context.Context, s Step) {
	began := r.Clock()
	octx, cancel := context.WithTimeout(ctx, r.opTimeout())
	inj, err := Inject(withApplying(octx, func() { began = r.Clock() }), r.Target, s.Fault)
	cancel()
	now := r.Clock()
	spec := s.Fault
	e := Event{
		Time: began, Took: time.Duration(now - began), Step: s.ID, Fault: s.Fault.Kind, Event: PhaseInject, Role: s.Fault.role(),
		Targets: inj.Targets, Spec: &spec, At: s.At, Duration: s.Duration,
		Grudge: inj.Grudge, Cuts: inj.Cuts,
	}
	status := "injected"
	if err != nil {
		e.Error = err.Error()
		if Skippable(err) {
			e.Skipped = true
			status = "skipped"
		} else {
			status = "failed"
		}
	} else {
		r.mu.Lock()
		r.active = append(r.active, active{step: s, inj: inj, at: began})
		r.mu.Unlock()
	}
	r.record(e)
	r.logf("nemesis %8.3fs step %d %s: %s%s%s", secs(began), s.ID, status, e.Description(), tookSuffix(e.Took), errSuffix(e.Error))
}

// heal heals step id if it is active; a step that was skipped or failed has
// nothing to heal.
func (r *Runner) heal(ctx context.Context, id int) error {
	r.mu.Lock()
	idx := -1
	for i, a := range r.active {
		if a.step.ID == id {
			idx = i
		}
	}
	if idx < 0 {
		r.mu.Unlock()
		return nil
	}
	a := r.active[idx]
	r.active = append(r.active[:idx], r.active[idx+1:]...)
	r.mu.Unlock()

	// A heal runs to its end even when the run's ctx ends under it (the
	// time limit falling during a slow heal), bounded by its own timeout: a
	// heal cut in half leaves a fault behind that nothing will undo.
	began := r.Clock()
	octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opTimeout())
	err := Heal(octx, r.Target, a.inj)
	cancel()
	now := r.Clock()
	e := Event{
		Time: began, Took: time.Duration(now - began), Step: id, Fault: a.step.Fault.Kind, Event: PhaseHeal,
		Role: a.step.Fault.role(), Targets: a.inj.Targets,
	}
	if err != nil {
		e.Error = err.Error()
	}
	if rp, ok := r.Target.(Replacer); ok && a.step.Fault.Kind == KindMember {
		for _, n := range a.inj.Targets {
			if m, ok := rp.ReplacedBy(n); ok {
				e.Added = append(e.Added, m)
			}
		}
	}
	r.record(e)
	r.logf("nemesis %8.3fs step %d healed: %s, active %.3fs–%.3fs (%.3fs)%s%s",
		secs(began), id, eventWithSpec(e, a.step.Fault).Description(), secs(a.at), secs(began), secs(began-a.at), tookSuffix(e.Took), errSuffix(e.Error))
	if err != nil {
		err = fmt.Errorf("heal step %d (%s): %w", id, a.step.Fault.Describe(), err)
		r.mu.Lock()
		r.healErrs = append(r.healErrs, err)
		r.mu.Unlock()
		return err
	}
	return nil
}

// HealErrors are the errors of every heal that failed so far, during Run
// or HealAll: a fault whose heal failed may still be in force.
func (r *Runner) HealErrors() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return errors.Join(r.healErrs...)
}

func (r *Runner) record(e Event) {
	if r.Events == nil {
		return
	}
	if err := r.Events.Write(e); err != nil {
		r.logf("nemesis: %v", err)
	}
}

func (r *Runner) logf(format string, args ...any) {
	if r.Log != nil {
		fmt.Fprintf(r.Log, format+"\n", args...)
	}
}

func eventWithSpec(e Event, f Fault) Event {
	e.Spec = &f
	return e
}

func secs(ns int64) float64 { return float64(ns) / 1e9 }

// tookSuffix notes an injection or heal that took long enough to matter.
func tookSuffix(d time.Duration) string {
	if d < 100*time.Millisecond {
		return ""
	}
	return fmt.Sprintf(" (took %.3fs)", d.Seconds())
}

func errSuffix(s string) string {
	if s == "" {
		return ""
	}
	return ": " + s
}

// RunAndHeal runs steps until they are done or ctx ends, then heals whatever
// is still active under a fresh context bounded by healTimeout (ctx may be
// over by then: that is when healing matters most). It returns the heal
// errors; a cancelled run is not an error, it is how a run's time limit ends
// the nemesis.
func (r *Runner) RunAndHeal(ctx context.Context, steps []Step, healTimeout time.Duration) error {
	runErr := r.Run(ctx, steps)
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), healTimeout)
	defer cancel()
	healErr := r.HealAll(hctx)
	if runErr != nil && !errors.Is(runErr, context.Canceled) && !errors.Is(runErr, context.DeadlineExceeded) {
		return errors.Join(runErr, healErr)
	}
	return healErr
}
