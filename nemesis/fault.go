package nemesis

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Fault kinds.
const (
	KindKill        = "kill"         // SIGKILL the targets; heal restarts them from their data directories
	KindPause       = "pause"        // SIGSTOP; heal SIGCONT
	KindPartition   = "partition"    // cut store nodes from each other in a Shape
	KindZKPartition = "zk-partition" // cut the targets from every ZooKeeper server only
	KindZKKill      = "zk-kill"      // kill ZooKeeper servers; heal restarts them
	KindMember      = "member"       // remove the targets from the membership; heal adds them back
	KindDelay       = "delay"        // delay every link to and from the targets
	KindPower       = "power"        // SIGKILL the targets and drop what they wrote and did not sync; heal restarts them
	KindClock       = "clock"        // step the wall clock of the targets' hosts; heal steps it back
)

// Kinds lists every fault kind.
var Kinds = []string{KindKill, KindPause, KindPartition, KindZKPartition, KindZKKill, KindMember, KindDelay, KindPower, KindClock}

// Roles understood by the nemesis itself; every other role is the Target's
// (or, with the "zk" prefix, the ZKTarget's) to resolve.
const (
	RoleAny      = "any"      // one node chosen with the fault's seed
	RoleMinority = "minority" // a random minority of the nodes
	RoleAll      = "all"      // every node
	// "node:N" names node N.

	RoleLeader   = "leader"   // raft
	RoleFollower = "follower" // raft
	RoleHead     = "head"     // chain; "head:K" for chain K
	RoleMiddle   = "middle"   // chain
	RoleTail     = "tail"     // chain
	RoleMaster   = "master"   // chain: the configuration master

	RoleZKLeader   = "zk-leader"   // the ZooKeeper ensemble's leader
	RoleZKAny      = "zk"          // one ZooKeeper server
	RoleZKMinority = "zk-minority" // a minority of the ZooKeeper servers
)

// ErrUnsupported is returned (wrapped) by a Target that lacks a capability —
// a store with no membership changes, a raft store asked for a chain tail,
// a cluster without a proxied network or without ZooKeeper. The Runner
// records the step as skipped and schedules no heal.
var ErrUnsupported = errors.New("nemesis: unsupported")

// ErrNoTarget is returned when a role resolves to no node (a chain of two has
// no middle; a cluster between leaders has none). The step is skipped.
var ErrNoTarget = errors.New("nemesis: role resolved to no target")

// Skippable reports whether err means the step could not apply here (and was
// not half-applied), rather than that injection failed.
func Skippable(err error) bool {
	return errors.Is(err, ErrUnsupported) || errors.Is(err, ErrNoTarget)
}

// Target is what the nemesis acts on: the harness implements it for a
// running cluster. Node ids are the store's node ids; ZooKeeper server ids
// are the ensemble's myids. Every method that a store cannot do returns an
// error wrapping ErrUnsupported.
type Target interface {
	// Nodes lists the store's node ids (all configured nodes, running or not).
	Nodes() []int
	// Resolve returns the nodes currently holding role ("leader", "follower",
	// "head", "head:1", "middle", "tail", "master", ...): asked at injection
	// time, so the fault hits whoever holds the role then.
	Resolve(ctx context.Context, role string) ([]int, error)
	// Kill sends SIGKILL to node; Restart starts it again on its data directory.
	Kill(ctx context.Context, node int) error
	Restart(ctx context.Context, node int) error
	// Pause sends SIGSTOP; Resume sends SIGCONT.
	Pause(ctx context.Context, node int) error
	Resume(ctx context.Context, node int) error
	// RemoveMember takes node out of the replication group (raft conf change;
	// chain: the master splices it out); AddMember brings it back.
	RemoveMember(ctx context.Context, node int) error
	AddMember(ctx context.Context, node int) error
	// Network is the proxied network the cluster's links go through, or nil.
	Network() *Network
	// ZK is the ZooKeeper ensemble, or nil for a store without one.
	ZK() ZKTarget
}

// PowerCutter is implemented by a Target whose nodes keep their data on a
// disk that can lose what was not synced (the harness's powerfs). A power
// fault kills every target first (Kill), so that a rack losing power loses
// it everywhere at once, then calls LoseUnsynced on each; the heal
// restarts them (Restart). A Target without it gets power faults skipped
// as unsupported: a kill alone would pass for one, and the page cache
// would keep what the store never synced.
type PowerCutter interface {
	// LoseUnsynced drops everything node wrote and did not sync; node is
	// down (killed) and stays down.
	LoseUnsynced(ctx context.Context, node int) error
}

// ClockStepper is implemented by a Target whose nodes run on hosts whose
// wall clock (CLOCK_REALTIME) the harness may step. A clock fault steps
// the clock of every target's host by Fault.Step, once per clock (hosts
// may share one), and the heal steps it back. A Target without it gets
// clock faults skipped as unsupported: nodes on the harness's own machine
// share its clock.
type ClockStepper interface {
	StepClock(ctx context.Context, nodes []int, d time.Duration) error
}

// Replacer is implemented by a Target whose AddMember cannot bring the same
// node back and adds a fresh one instead (raft never reuses a node id): the
// Runner records the new id on the heal event, and the new node is a target
// of later faults.
type Replacer interface {
	// ReplacedBy returns the node that AddMember added for node, if any.
	ReplacedBy(node int) (int, bool)
}

// ZKTarget is a ZooKeeper ensemble the harness started.
type ZKTarget interface {
	// Servers lists the server ids.
	Servers() []int
	// Resolve returns the servers holding role ("zk-leader", "zk-follower").
	Resolve(ctx context.Context, role string) ([]int, error)
	Kill(ctx context.Context, server int) error
	Restart(ctx context.Context, server int) error
}

// Fault is one fault as data: what to do and to whom, never who that turned
// out to be. It is what schedules hold and nemesis.jsonl records.
type Fault struct {
	Kind string `json:"kind"`
	// Role names the targets, resolved at injection ("leader", "tail:1",
	// "node:2", "zk-leader", "any", "minority"). Empty takes the kind's
	// default: "any" for node faults, "zk-leader" for zk-kill, and for
	// partition the shape alone decides.
	Role string `json:"role,omitempty"`
	// Shape is the partition shape (partition only).
	Shape string `json:"shape,omitempty"`
	// Delay is the added latency per chunk (delay only).
	Delay time.Duration `json:"delay,omitempty"`
	// Step is how far the targets' wall clocks jump, back when negative
	// (clock only; nanoseconds in JSON, as Delay).
	Step time.Duration `json:"step,omitempty"`
	// Seed drives every random choice made at injection: which follower,
	// which random halves.
	Seed int64 `json:"seed"`
}

// Describe is the fault in a few words: "kill leader", "partition
// majorities-ring", "delay any 50ms".
func (f Fault) Describe() string {
	parts := []string{f.Kind}
	if f.Shape != "" {
		parts = append(parts, f.Shape)
	}
	if r := f.role(); r != "" {
		parts = append(parts, r)
	}
	if f.Kind == KindDelay {
		parts = append(parts, f.Delay.String())
	}
	if f.Kind == KindClock {
		parts = append(parts, signed(f.Step))
	}
	return strings.Join(parts, " ")
}

// role is the effective role spec.
func (f Fault) role() string {
	if f.Role != "" {
		return f.Role
	}
	switch f.Kind {
	case KindPartition:
		if f.Shape == ShapeIsolate || f.Shape == "" {
			return RoleAny
		}
		return ""
	case KindZKKill:
		return RoleZKLeader
	}
	return RoleAny
}

// Validate checks that the fault is well formed.
func (f Fault) Validate() error {
	switch f.Kind {
	case KindKill, KindPause, KindZKPartition, KindZKKill, KindMember, KindPower:
	case KindPartition:
		if f.Shape == "" {
			return nil
		}
		for _, s := range Shapes {
			if s == f.Shape {
				return nil
			}
		}
		return fmt.Errorf("%w: %q", ErrBadShape, f.Shape)
	case KindDelay:
		if f.Delay <= 0 {
			return fmt.Errorf("nemesis: delay fault needs a positive delay, got %v", f.Delay)
		}
	case KindClock:
		if f.Step == 0 || f.Step.Abs() > MaxClockStep {
			return fmt.Errorf("nemesis: clock fault needs a step of 1ns to %v either way, got %v", MaxClockStep, f.Step)
		}
	default:
		return fmt.Errorf("nemesis: unknown fault kind %q (known: %v)", f.Kind, Kinds)
	}
	return nil
}

// signed writes a clock step with its sign: "+2s", "-500ms".
func signed(d time.Duration) string {
	if d > 0 {
		return "+" + d.String()
	}
	return d.String()
}

// MaxClockStep bounds a clock fault's step: Jepsen's bumps reach about
// 5 minutes; a larger jump tests little more and risks what else reads
// the clock.
const MaxClockStep = 5 * time.Minute

// Injection is what an injected fault did, resolved: enough to heal it and to
// record it.
type Injection struct {
	Fault Fault `json:"fault"`
	// Targets are the resolved node ids (ZooKeeper server ids for zk-kill).
	Targets []int `json:"targets,omitempty"`
	// Grudge is the computed partition (partition only).
	Grudge *Grudge `json:"grudge,omitempty"`
	// Cuts and Links are what was applied to the network.
	Cuts  []Cut  `json:"cuts,omitempty"`
	Links []Link `json:"links,omitempty"`
}

// Inject resolves f's targets on t and applies the fault. On error, whatever
// part had been applied is undone where it can be and the returned Injection
// still names the targets, for the record.
func Inject(ctx context.Context, t Target, f Fault) (Injection, error) {
	inj := Injection{Fault: f}
	if err := f.Validate(); err != nil {
		return inj, err
	}
	rng := rand.New(rand.NewSource(f.Seed))
	switch f.Kind {
	case KindKill, KindPause, KindMember:
		nodes, err := resolveNodes(ctx, t, f.role(), rng)
		inj.Targets = nodes
		if err != nil {
			return inj, err
		}
		do, undo := t.Kill, t.Restart
		switch f.Kind {
		case KindPause:
			do, undo = t.Pause, t.Resume
		case KindMember:
			do, undo = t.RemoveMember, t.AddMember
		}
		applying(ctx)
		for i, n := range nodes {
			if err := do(ctx, n); err != nil {
				for _, m := range nodes[:i] {
					_ = undo(ctx, m)
				}
				return inj, fmt.Errorf("%s node %d: %w", f.Kind, n, err)
			}
		}
		return inj, nil

	case KindPower:
		pc, ok := t.(PowerCutter)
		if !ok {
			return inj, fmt.Errorf("%w: power needs data directories on a disk that can lose unsynced writes", ErrUnsupported)
		}
		nodes, err := resolveNodes(ctx, t, f.role(), rng)
		inj.Targets = nodes
		if err != nil {
			return inj, err
		}
		applying(ctx)
		for i, n := range nodes {
			if err := t.Kill(ctx, n); err != nil {
				for _, m := range nodes[:i] {
					_ = t.Restart(ctx, m)
				}
				return inj, fmt.Errorf("power node %d: %w", n, err)
			}
		}
		var errs []error
		for _, n := range nodes {
			if err := pc.LoseUnsynced(ctx, n); err != nil {
				errs = append(errs, fmt.Errorf("power node %d: %w", n, err))
			}
		}
		// The nodes are down either way; the heal restarts them all.
		return inj, errors.Join(errs...)

	case KindPartition:
		net := t.Network()
		if net == nil {
			return inj, fmt.Errorf("%w: partition needs a proxied network", ErrUnsupported)
		}
		shape := f.Shape
		if shape == "" {
			shape = ShapeIsolate
		}
		var isolate []int
		if shape == ShapeIsolate {
			nodes, err := resolveNodes(ctx, t, f.role(), rng)
			if err != nil {
				return inj, err
			}
			isolate = nodes
		}
		g, err := PartitionGrudge(shape, t.Nodes(), isolate, rng)
		if err != nil {
			return inj, err
		}
		inj.Targets = isolate
		inj.Grudge = &g
		inj.Cuts = g.Cuts()
		applying(ctx)
		net.Cut(inj.Cuts)
		return inj, nil

	case KindZKPartition:
		// The ZooKeeper servers need not be the harness's to fault
		// (t.ZK): their links to the nodes are in the network either way.
		net := t.Network()
		if net == nil {
			return inj, fmt.Errorf("%w: zk-partition needs a network to cut", ErrUnsupported)
		}
		nodes, err := resolveNodes(ctx, t, f.role(), rng)
		inj.Targets = nodes
		if err != nil {
			return inj, err
		}
		var zks []string
		for _, e := range net.Endpoints() {
			if IsZKEndpoint(e) {
				zks = append(zks, e)
			}
		}
		if len(zks) == 0 {
			return inj, fmt.Errorf("%w: no node→ZooKeeper links in the network", ErrUnsupported)
		}
		for _, n := range nodes {
			for _, z := range zks {
				ne := NodeEndpoint(n)
				inj.Cuts = append(inj.Cuts, Cut{From: ne, To: z}, Cut{From: z, To: ne})
			}
		}
		applying(ctx)
		net.Cut(inj.Cuts)
		return inj, nil

	case KindZKKill:
		zk := t.ZK()
		if zk == nil {
			return inj, fmt.Errorf("%w: zk-kill needs ZooKeeper", ErrUnsupported)
		}
		servers, err := resolveZK(ctx, zk, f.role(), rng)
		inj.Targets = servers
		if err != nil {
			return inj, err
		}
		applying(ctx)
		for i, s := range servers {
			if err := zk.Kill(ctx, s); err != nil {
				for _, m := range servers[:i] {
					_ = zk.Restart(ctx, m)
				}
				return inj, fmt.Errorf("zk-kill server %d: %w", s, err)
			}
		}
		return inj, nil

	case KindDelay:
		net := t.Network()
		if net == nil {
			return inj, fmt.Errorf("%w: delay needs a proxied network", ErrUnsupported)
		}
		if err := net.DelayUnsupported(); err != nil {
			return inj, fmt.Errorf("%w: delay: %v", ErrUnsupported, err)
		}
		nodes, err := resolveNodes(ctx, t, f.role(), rng)
		inj.Targets = nodes
		if err != nil {
			return inj, err
		}
		in := map[string]bool{}
		for _, n := range nodes {
			in[NodeEndpoint(n)] = true
		}
		for _, l := range net.Links() {
			if in[l.From] || in[l.To] {
				inj.Links = append(inj.Links, l)
			}
		}
		if len(inj.Links) == 0 {
			return inj, fmt.Errorf("%w: no links touch %v", ErrNoTarget, nodes)
		}
		applying(ctx)
		net.AddDelay(inj.Links, f.Delay)
		return inj, nil

	case KindClock:
		cs, ok := t.(ClockStepper)
		if !ok {
			return inj, fmt.Errorf("%w: clock faults need nodes on hosts (--hosts): the harness does not step its own machine's clock", ErrUnsupported)
		}
		nodes, err := resolveNodes(ctx, t, f.role(), rng)
		inj.Targets = nodes
		if err != nil {
			return inj, err
		}
		applying(ctx)
		return inj, cs.StepClock(ctx, nodes, f.Step)
	}
	panic(fmt.Sprintf("nemesis: Inject: kind %q passed Validate but has no case", f.Kind))
}

// applyingKey carries the Runner's hook that Inject calls once the targets
// are resolved, right before it applies the fault: the event's time is the
// moment the fault began, not when its targets were looked up (asking the
// nodes who leads takes a round trip, during which nothing is wrong yet).
type applyingKey struct{}

// withApplying returns ctx carrying f as the hook.
func withApplying(ctx context.Context, f func()) context.Context {
	return context.WithValue(ctx, applyingKey{}, f)
}

func applying(ctx context.Context) {
	if f, ok := ctx.Value(applyingKey{}).(func()); ok {
		f()
	}
}

// Heal undoes an injection. It tries every target even when one fails and
// returns all the errors.
func Heal(ctx context.Context, t Target, inj Injection) error {
	var errs []error
	switch inj.Fault.Kind {
	case KindKill, KindPause, KindMember, KindPower:
		undo := t.Restart
		switch inj.Fault.Kind {
		case KindPause:
			undo = t.Resume
		case KindMember:
			undo = t.AddMember
		}
		for _, n := range inj.Targets {
			if err := undo(ctx, n); err != nil {
				errs = append(errs, fmt.Errorf("heal %s node %d: %w", inj.Fault.Kind, n, err))
			}
		}
	case KindPartition, KindZKPartition:
		if net := t.Network(); net != nil {
			net.Uncut(inj.Cuts)
		}
	case KindZKKill:
		if zk := t.ZK(); zk != nil {
			for _, s := range inj.Targets {
				if err := zk.Restart(ctx, s); err != nil {
					errs = append(errs, fmt.Errorf("heal zk-kill server %d: %w", s, err))
				}
			}
		}
	case KindDelay:
		if net := t.Network(); net != nil {
			net.RemoveDelay(inj.Links, inj.Fault.Delay)
		}
	case KindClock:
		if cs, ok := t.(ClockStepper); ok {
			if err := cs.StepClock(ctx, inj.Targets, -inj.Fault.Step); err != nil {
				errs = append(errs, fmt.Errorf("heal clock: %w", err))
			}
		}
	default:
		errs = append(errs, fmt.Errorf("nemesis: heal: unknown fault kind %q", inj.Fault.Kind))
	}
	return errors.Join(errs...)
}

// resolveNodes turns a role spec into store node ids. Roles the nemesis
// knows are resolved here; the rest go to the Target, and when it returns
// several candidates one is picked with rng (a role names one node).
func resolveNodes(ctx context.Context, t Target, role string, rng *rand.Rand) ([]int, error) {
	all := sorted(t.Nodes())
	if len(all) == 0 {
		return nil, fmt.Errorf("%w: the target has no nodes", ErrNoTarget)
	}
	switch {
	case role == RoleAny || role == "":
		return []int{all[rng.Intn(len(all))]}, nil
	case role == RoleAll:
		return all, nil
	case role == RoleMinority:
		k := (len(all) - 1) / 2
		if k == 0 {
			return nil, fmt.Errorf("%w: %d nodes have no non-empty minority", ErrNoTarget, len(all))
		}
		perm := rng.Perm(len(all))
		out := make([]int, k)
		for i := range out {
			out[i] = all[perm[i]]
		}
		return sorted(out), nil
	case strings.HasPrefix(role, "node:"):
		id, err := strconv.Atoi(strings.TrimPrefix(role, "node:"))
		if err != nil {
			return nil, fmt.Errorf("nemesis: bad role %q: %w", role, err)
		}
		for _, n := range all {
			if n == id {
				return []int{id}, nil
			}
		}
		return nil, fmt.Errorf("%w: node %d not among %v", ErrNoTarget, id, all)
	case strings.HasPrefix(role, zkPrefix):
		return nil, fmt.Errorf("%w: role %q names a ZooKeeper server, not a store node", ErrUnsupported, role)
	}
	cands, err := t.Resolve(ctx, role)
	if err != nil {
		return nil, fmt.Errorf("resolve %q: %w", role, err)
	}
	if len(cands) == 0 {
		return nil, fmt.Errorf("%w: %q", ErrNoTarget, role)
	}
	cands = sorted(cands)
	return []int{cands[rng.Intn(len(cands))]}, nil
}

// resolveZK turns a ZooKeeper role into server ids.
func resolveZK(ctx context.Context, zk ZKTarget, role string, rng *rand.Rand) ([]int, error) {
	all := sorted(zk.Servers())
	if len(all) == 0 {
		return nil, fmt.Errorf("%w: no ZooKeeper servers", ErrNoTarget)
	}
	switch role {
	case RoleZKAny:
		return []int{all[rng.Intn(len(all))]}, nil
	case RoleZKMinority:
		k := (len(all) - 1) / 2
		if k == 0 {
			return nil, fmt.Errorf("%w: an ensemble of %d has no non-empty minority", ErrNoTarget, len(all))
		}
		perm := rng.Perm(len(all))
		out := make([]int, k)
		for i := range out {
			out[i] = all[perm[i]]
		}
		return sorted(out), nil
	}
	if strings.HasPrefix(role, "zk:") {
		id, err := strconv.Atoi(strings.TrimPrefix(role, "zk:"))
		if err != nil {
			return nil, fmt.Errorf("nemesis: bad role %q: %w", role, err)
		}
		return []int{id}, nil
	}
	cands, err := zk.Resolve(ctx, role)
	if err != nil {
		return nil, fmt.Errorf("resolve %q: %w", role, err)
	}
	if len(cands) == 0 {
		return nil, fmt.Errorf("%w: %q", ErrNoTarget, role)
	}
	sort.Ints(cands)
	return []int{cands[rng.Intn(len(cands))]}, nil
}
