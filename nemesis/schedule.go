package nemesis

import (
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"time"
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
	// "delay", or "all" (every kind but delay). Empty means no faults, so
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
// same steps, faults, roles and per-fault seeds.
func Generate(seed int64, o ScheduleOptions) ([]Step, error) {
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
