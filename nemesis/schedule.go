package nemesis

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"sort"
	"strings"
	"time"
)

// Bounds of a schedule, checked before a run starts: a fault needs time to
// take hold and to heal (a kill and its restart take tens of milliseconds,
// a partition's proxies as long), and a schedule of millions of steps is a
// typo, not a test — --nemesis-interval 1ns once built steps until the
// kernel killed the process.
const (
	MinInterval = 100 * time.Millisecond
	MaxSteps    = 10000
)

// Step is one scheduled fault: injected At after the run's start, healed
// Duration later.
type Step struct {
	ID       int           `json:"id"`
	At       time.Duration `json:"at"`
	Duration time.Duration `json:"duration"`
	Fault    Fault         `json:"fault"`
}

// ScheduleOptions shape a generated schedule.
type ScheduleOptions struct {
	// Kinds are fault kinds or groups: "kill", "pause", "partition", "zk"
	// (zk-partition and zk-kill), "zk-partition", "zk-kill", "member",
	// "delay", "clock", or "all" (every kind but delay and clock). Empty means no faults, so
	// that "--nemesis none" cannot turn into "all" by accident.
	Kinds []string
	// Interval is the time between faults (default 5s).
	Interval time.Duration
	// Quiet is the fault-free time before the first fault (default Interval).
	Quiet time.Duration
	// Duration is how long each fault lasts before its heal (default
	// Interval; 2×Interval with Overlap, so that faults do overlap).
	Duration time.Duration
	// Overlap starts the next fault Interval after the previous one started
	// instead of Interval after it healed.
	Overlap bool
	// Total is the run's length: every fault is healed by then.
	Total time.Duration
	// Roles are the node roles the store knows ("leader", "follower"; "head",
	// "middle", "tail", "master"), drawn from for node faults; "any" is always
	// among them. ZooKeeper roles are the nemesis's own.
	Roles []string
	// Delay is the latency of delay faults (default 50ms).
	Delay time.Duration
}

// ParseKinds splits a --nemesis flag value ("kill,pause", "all", "none");
// "none" or "" gives no kinds, and Generate no steps.
func ParseKinds(s string) ([]string, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "none" {
		return nil, nil
	}
	var out []string
	for _, k := range strings.Split(s, ",") {
		k = strings.TrimSpace(k)
		if _, err := expandKind(k); err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
}

func expandKind(k string) ([]string, error) {
	switch k {
	case "all":
		return []string{KindKill, KindPause, KindPartition, KindZKPartition, KindZKKill, KindMember, KindPower}, nil
	case "zk":
		return []string{KindZKPartition, KindZKKill}, nil
	}
	for _, x := range Kinds {
		if x == k {
			return []string{k}, nil
		}
	}
	return nil, fmt.Errorf("nemesis: unknown fault kind %q (known: all, zk, %s)", k, strings.Join(Kinds, ", "))
}

// Generate makes a schedule from seed: the same seed and options give the
// same steps, faults, roles and per-fault seeds. An interval (or duration)
// below MinInterval, or options that would make more than MaxSteps steps,
// are refused before a step is made.
func Generate(seed int64, o ScheduleOptions) ([]Step, error) {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"interval", o.Interval}, {"quiet", o.Quiet}, {"duration", o.Duration}} {
		if d.v != 0 && d.v < MinInterval {
			return nil, fmt.Errorf("nemesis: %s %v is below %v: a fault needs time to take hold and heal", d.name, d.v, MinInterval)
		}
	}
	if o.Interval <= 0 {
		o.Interval = 5 * time.Second
	}
	if o.Quiet <= 0 {
		o.Quiet = o.Interval
	}
	if o.Duration <= 0 {
		o.Duration = o.Interval
		if o.Overlap {
			o.Duration = 2 * o.Interval
		}
	}
	if o.Delay <= 0 {
		o.Delay = 50 * time.Millisecond
	}
	kinds := o.Kinds
	if len(kinds) == 0 {
		return nil, nil
	}
	seen := map[string]bool{}
	var pool []string
	for _, k := range kinds {
		ks, err := expandKind(k)
		if err != nil {
			return nil, err
		}
		for _, x := range ks {
			if !seen[x] {
				seen[x] = true
				pool = append(pool, x)
			}
		}
	}
	sort.Strings(pool) // independent of flag order
	roles := []string{RoleAny}
	for _, r := range o.Roles {
		if r != RoleAny {
			roles = append(roles, r)
		}
	}

	step := o.Duration + o.Interval
	if o.Overlap {
		step = o.Interval
	}
	if n := (o.Total - o.Quiet) / step; n > MaxSteps {
		return nil, fmt.Errorf("nemesis: %d faults in %v at an interval of %v: more than %d", n, o.Total, o.Interval, MaxSteps)
	}
	rng := rand.New(rand.NewSource(seed))
	var steps []Step
	// Kinds are dealt in rounds, each a seeded shuffle of the pool, so that
	// a run long enough for len(pool) faults sees every kind once: a
	// recovery figure per kind is what a run is for, and an independent
	// draw per fault leaves kinds out of short runs.
	var round []string
	powers := 0
	for at := o.Quiet; at+o.Duration <= o.Total; {
		if len(round) == 0 {
			round = append(round, pool...)
			rng.Shuffle(len(round), func(i, j int) { round[i], round[j] = round[j], round[i] })
		}
		f := Fault{Kind: round[0], Seed: rng.Int63()}
		round = round[1:]
		switch f.Kind {
		case KindPartition:
			f.Shape = Shapes[rng.Intn(len(Shapes))]
			if f.Shape == ShapeIsolate {
				f.Role = roles[rng.Intn(len(roles))]
			}
		case KindZKKill:
			f.Role = []string{RoleZKLeader, RoleZKMinority}[rng.Intn(2)]
		case KindDelay:
			f.Role = roles[rng.Intn(len(roles))]
			f.Delay = o.Delay
		case KindClock:
			f.Role = roles[rng.Intn(len(roles))]
			f.Step = clockStep(rng)
		case KindPower:
			// Every other power fault takes the whole cluster (a rack
			// losing power): a store that acknowledges before it syncs
			// loses acknowledged writes only when a majority forgets
			// them at once. The first one does, so that a short run has
			// one.
			f.Role = roles[rng.Intn(len(roles))]
			if powers%2 == 0 {
				f.Role = RoleAll
			}
			powers++
		default:
			f.Role = roles[rng.Intn(len(roles))]
		}
		steps = append(steps, Step{ID: len(steps) + 1, At: at, Duration: o.Duration, Fault: f})
		if o.Overlap {
			at += o.Interval
		} else {
			at += o.Duration + o.Interval
		}
	}
	return steps, nil
}

// clockStep draws a clock fault's jump: back or forward by 250 ms times a
// power of two up to 32 s. Jepsen's bumps span milliseconds to minutes on
// a like scale: a lease's length (around a second here) is where a
// mistake shows, and the larger jumps outlast any timeout of the stores.
func clockStep(rng *rand.Rand) time.Duration {
	d := 250 * time.Millisecond << rng.Intn(8)
	if rng.Intn(2) == 0 {
		return -d
	}
	return d
}

// ReadSchedule reads a schedule to replay from a nemesis.jsonl (a recorded
// run's, or one written by hand or by harness.WriteSchedule) and checks
// every step before anything runs: each inject line must carry its spec,
// a fault kind this nemesis knows, well-formed fields, offsets that are
// not negative, and a step id not seen before; and the file must hold at
// least one step. Errors name the file and the line. Heal lines are
// skipped (a recorded run's own heals), as are blank lines.
func ReadSchedule(path string) ([]Step, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var steps []Step
	seen := map[int]int{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for line := 1; sc.Scan(); line++ {
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 {
			continue
		}
		bad := func(format string, args ...any) error {
			return fmt.Errorf("%s:%d: %s", path, line, fmt.Sprintf(format, args...))
		}
		var e Event
		if err := json.Unmarshal(text, &e); err != nil {
			return nil, bad("not a nemesis event: %v", err)
		}
		switch e.Event {
		case PhaseHeal:
			continue
		case PhaseInject:
		default:
			return nil, bad("event %q is neither inject nor heal", e.Event)
		}
		if e.Spec == nil {
			return nil, bad("inject of step %d has no spec: nothing to replay", e.Step)
		}
		if err := e.Spec.Validate(); err != nil {
			return nil, bad("step %d: %v", e.Step, err)
		}
		if e.At < 0 || e.Duration < 0 {
			return nil, bad("step %d: negative at (%v) or duration (%v)", e.Step, e.At, e.Duration)
		}
		if first, dup := seen[e.Step]; dup {
			return nil, bad("step %d injected again (first on line %d)", e.Step, first)
		}
		seen[e.Step] = line
		steps = append(steps, Step{ID: e.Step, At: e.At, Duration: e.Duration, Fault: *e.Spec})
		if len(steps) > MaxSteps {
			return nil, bad("more than %d steps", MaxSteps)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(steps) == 0 {
		return nil, fmt.Errorf("%s: no inject lines: nothing to replay", path)
	}
	sort.SliceStable(steps, func(i, j int) bool { return steps[i].ID < steps[j].ID })
	return steps, nil
}
