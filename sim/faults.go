package sim

import (
	"math/rand"
	"slices"
	"time"

	"github.com/chainraft/chainraft/nemesis"
)

// Fault kinds of the simulator. The nemesis's own kinds keep their names
// (kill, pause, partition, delay, power: only synced data survives); the
// rest exist only where the world is simulated: a torn write (power fails
// while a Ready's write is in flight), a one-way cut of a single directed
// link, and clock skew (a node's ticks run fast or slow).
const (
	kindTorn   = "torn-write"
	kindOneWay = "one-way"
	kindSkew   = "skew"
)

// kindWeight is a fault kind and how often it is drawn.
type kindWeight struct {
	kind   string
	weight int
}

// faultWeights is how often each kind common to every store is drawn; a
// store adds its own kinds after them (cluster.kinds), so the draws of a
// store without any are unchanged.
var faultWeights = []kindWeight{
	{nemesis.KindKill, 3},
	{nemesis.KindPower, 2},
	{kindTorn, 2},
	{nemesis.KindPause, 3},
	{nemesis.KindPartition, 4},
	{kindOneWay, 2},
	{nemesis.KindDelay, 1},
	{kindSkew, 1},
}

// cluster is a simulated store as the fault injector and the run see it.
type cluster interface {
	ids() []int
	// resolve names the nodes holding a store role now.
	resolve(role string) []int
	roles() []string
	up(id int) bool
	crash(id int, mode crashMode)
	tornWrite(id int, arm bool)
	restart(id int)
	pause(id int)
	resume(id int)
	skew(id int, rate float64)
	writeback(id int)
	newClient(i int) storeClient
	converged() (bool, string)
	refusals() []string
	// settleTime bounds how long a quiet cluster may take to converge.
	settleTime() time.Duration
	// kinds are the store's own fault kinds, drawn besides faultWeights.
	kinds() []kindWeight
	// zkCut cuts a node from the coordination service, or heals one cut
	// (zk-partition; only a store that lists it in kinds is asked).
	zkCut(id int, cut bool)
}

// step is one scheduled fault: what to inject at At, healed Duration later
// (or when the fault phase ends).
type step struct {
	id       int
	at, dur  time.Duration
	fault    nemesis.Fault
	skewRate float64
}

// active is an injected fault awaiting its heal.
type active struct {
	step    step
	targets []int
	cuts    [][2]int
	grudge  *nemesis.Grudge
	healed  bool
}

// schedule draws the fault steps of the fault phase [quiet, end) from the
// world's source: faults start at exponentially spaced times and last from
// a few hundred milliseconds to a few seconds, so they overlap often.
func schedule(w *world, quiet, end time.Duration, roles []string, extra []kindWeight) []step {
	weights := append(slices.Clip(faultWeights), extra...)
	total := 0
	for _, k := range weights {
		total += k.weight
	}
	mean := w.between(400*time.Millisecond, 2*time.Second)
	var steps []step
	for at := quiet; ; {
		at += time.Duration(w.rng.ExpFloat64() * float64(mean))
		if at >= end {
			return steps
		}
		x := w.rng.IntN(total)
		kind := ""
		for _, k := range weights {
			if x < k.weight {
				kind = k.kind
				break
			}
			x -= k.weight
		}
		f := nemesis.Fault{Kind: kind, Seed: w.rng.Int64()}
		nodeRoles := append([]string{nemesis.RoleAny, nemesis.RoleAny}, roles...)
		s := step{id: len(steps) + 1, at: at, dur: w.between(200*time.Millisecond, 4*time.Second)}
		switch kind {
		case nemesis.KindPartition:
			f.Shape = nemesis.Shapes[w.rng.IntN(len(nemesis.Shapes))]
			if f.Shape == nemesis.ShapeIsolate {
				f.Role = nodeRoles[w.rng.IntN(len(nodeRoles))]
			}
		case nemesis.KindKill, nemesis.KindPause, nemesis.KindZKPartition:
			f.Role = append(nodeRoles, nemesis.RoleMinority)[w.rng.IntN(len(nodeRoles)+1)]
		case nemesis.KindPower:
			// Every node at once too: a rack losing power, the one
			// fault that shows acknowledged writes that were never
			// synced (a majority keeps them otherwise).
			rs := append(nodeRoles, nemesis.RoleMinority, nemesis.RoleAll)
			f.Role = rs[w.rng.IntN(len(rs))]
		case nemesis.KindDelay:
			f.Role = nodeRoles[w.rng.IntN(len(nodeRoles))]
			f.Delay = w.between(20*time.Millisecond, 500*time.Millisecond)
		case kindOneWay:
		case kindSkew:
			f.Role = nodeRoles[w.rng.IntN(len(nodeRoles))]
			s.skewRate = 0.5 + w.rng.Float64()
		default:
			f.Role = nodeRoles[w.rng.IntN(len(nodeRoles))]
		}
		s.fault = f
		steps = append(steps, s)
	}
}

// resolveNodes turns a role into node ids the way the nemesis does
// (nemesis.Inject's resolveNodes), from the fault's own seed: any, all,
// minority, or a store role with one holder picked.
func resolveNodes(c cluster, role string, rng *rand.Rand) []int {
	all := c.ids()
	switch role {
	case nemesis.RoleAny, "":
		return []int{all[rng.Intn(len(all))]}
	case nemesis.RoleAll:
		return all
	case nemesis.RoleMinority:
		k := (len(all) - 1) / 2
		perm := rng.Perm(len(all))
		out := make([]int, k)
		for i := range out {
			out[i] = all[perm[i]]
		}
		slices.Sort(out)
		return out
	}
	cands := c.resolve(role)
	if len(cands) == 0 {
		return nil
	}
	slices.Sort(cands)
	return []int{cands[rng.Intn(len(cands))]}
}

// inject applies s now and records the event; it returns nil when the step
// could not apply (a role nobody holds, a node already down).
func (r *run) inject(s step) *active {
	f := s.fault
	rng := rand.New(rand.NewSource(f.Seed))
	ev := nemesis.Event{
		Time: r.w.now, Step: s.id, Fault: f.Kind, Event: nemesis.PhaseInject, Role: f.Role,
		Spec: &f, At: s.at, Duration: s.dur,
	}
	a := &active{step: s}
	skip := func(why string) *active {
		ev.Skipped, ev.Error = true, why
		r.events = append(r.events, ev)
		return nil
	}
	c := r.c
	switch f.Kind {
	case nemesis.KindZKPartition:
		a.targets = resolveNodes(c, f.Role, rng)
		if len(a.targets) == 0 {
			return skip("no node holds role " + f.Role)
		}
		for _, id := range a.targets {
			c.zkCut(id, true)
		}
	case nemesis.KindKill, nemesis.KindPower, kindTorn, nemesis.KindPause:
		targets := resolveNodes(c, f.Role, rng)
		var live []int
		for _, id := range targets {
			if c.up(id) {
				live = append(live, id)
			}
		}
		if len(live) == 0 {
			return skip("no live node holds role " + f.Role)
		}
		a.targets = live
		for _, id := range live {
			switch f.Kind {
			case nemesis.KindKill:
				c.crash(id, crashKill)
			case nemesis.KindPower:
				c.crash(id, crashPower)
			case kindTorn:
				c.tornWrite(id, true)
			case nemesis.KindPause:
				c.pause(id)
			}
		}
	case nemesis.KindPartition:
		shape := f.Shape
		var isolate []int
		if shape == nemesis.ShapeIsolate {
			isolate = resolveNodes(c, f.Role, rng)
			if len(isolate) == 0 {
				return skip("no node holds role " + f.Role)
			}
		}
		g, err := nemesis.PartitionGrudge(shape, c.ids(), isolate, rng)
		if err != nil {
			return skip(err.Error())
		}
		a.targets, a.grudge = isolate, &g
		tos := make([]int, 0, len(g.Drops))
		for to := range g.Drops {
			tos = append(tos, to)
		}
		slices.Sort(tos)
		for _, to := range tos {
			for _, from := range g.Drops[to] {
				a.cuts = append(a.cuts, [2]int{from, to})
			}
		}
		ev.Grudge, ev.Cuts = &g, g.Cuts()
		r.net.cut(a.cuts)
	case kindOneWay:
		all := c.ids()
		from := all[rng.Intn(len(all))]
		to := all[rng.Intn(len(all)-1)]
		if to >= from {
			to++
		}
		a.targets = []int{from, to}
		a.cuts = [][2]int{{from, to}}
		ev.Cuts = []nemesis.Cut{{From: nemesis.NodeEndpoint(from), To: nemesis.NodeEndpoint(to)}}
		r.net.cut(a.cuts)
	case nemesis.KindDelay:
		a.targets = resolveNodes(c, f.Role, rng)
		if len(a.targets) == 0 {
			return skip("no node holds role " + f.Role)
		}
		for _, id := range a.targets {
			r.net.addSlow(id, f.Delay)
		}
	case kindSkew:
		a.targets = resolveNodes(c, f.Role, rng)
		if len(a.targets) == 0 {
			return skip("no node holds role " + f.Role)
		}
		for _, id := range a.targets {
			c.skew(id, s.skewRate)
		}
	}
	ev.Targets = a.targets
	r.events = append(r.events, ev)
	r.logf("inject %d %s %s targets %v", s.id, f.Describe(), describeCuts(a.cuts), a.targets)
	return a
}

// heal undoes a, once.
func (r *run) heal(a *active) {
	if a.healed {
		return
	}
	a.healed = true
	f := a.step.fault
	c := r.c
	switch f.Kind {
	case nemesis.KindKill, nemesis.KindPower, kindTorn:
		for _, id := range a.targets {
			if f.Kind == kindTorn {
				c.tornWrite(id, false)
			}
			if !c.up(id) {
				c.restart(id)
			}
		}
	case nemesis.KindPause:
		for _, id := range a.targets {
			c.resume(id)
		}
	case nemesis.KindZKPartition:
		for _, id := range a.targets {
			c.zkCut(id, false)
		}
	case nemesis.KindPartition, kindOneWay:
		r.net.uncut(a.cuts)
	case nemesis.KindDelay:
		for _, id := range a.targets {
			r.net.removeSlow(id, f.Delay)
		}
	case kindSkew:
		for _, id := range a.targets {
			c.skew(id, 1)
		}
	}
	r.events = append(r.events, nemesis.Event{
		Time: r.w.now, Step: a.step.id, Fault: f.Kind, Event: nemesis.PhaseHeal, Role: f.Role, Targets: a.targets,
	})
	r.logf("heal %d %s", a.step.id, f.Describe())
}

func describeCuts(cs [][2]int) string {
	if len(cs) == 0 {
		return ""
	}
	s := "cuts"
	for _, c := range cs {
		s += " " + nemesis.NodeEndpoint(c[0]) + "->" + nemesis.NodeEndpoint(c[1])
	}
	return s
}
