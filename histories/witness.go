package histories

import (
	"cmp"
	"math"
	"slices"

	"github.com/anishathalye/porcupine"
)

// witness tries to build a linearization of ops (one key's segment, with
// the intervals the rules narrowed) from state init without searching,
// using what decoded states say about the order of writes. It walks the
// calls and returns in time order (calls first at equal times: porcupine
// takes touching intervals as concurrent) and:
//
//   - takes a read (or a cas that did not swap) as soon as it is called or
//     a write makes it legal: a read changes nothing, so taking it as early
//     as it is legal never loses a linearization;
//   - applies a write at its return, the latest it may, unless a read
//     needs it first;
//   - at the return of a read that is not legal, decodes the state it saw
//     and applies, in order, the pending writes that make that state (the
//     put or cas of its base, then its appended values);
//   - before a write is forced at its return, first serves each pending
//     read that it would spoil and whose state the other pending writes
//     can make.
//
// It answers true only with a complete sequence of legal model steps in
// which every operation sits between its call and its return: a
// linearization, so Ok is sound whatever the heuristics. False means only
// "not found this way"; the caller then searches.
func witness(ops []porcupine.Operation, init kvState, dec *decoder) bool {
	if dec != nil {
		// Segments of one key are walked in parallel: each walk decodes
		// with its own scratch space (the indexes are only read).
		own := *dec
		own.ways, own.step = nil, nil
		dec = &own
	}
	w := witnessRun{ops: ops, dec: dec, st: init, status: make([]uint8, len(ops))}
	w.index()
	w.decomposed = !init.present
	if init.present && dec != nil {
		if p, ok := dec.decode(init.value, nil); ok {
			w.decomposed, w.base, w.toks = true, p.base, slices.Clone(p.tokens)
		}
	}
	// Writes due at the same instant go in the order their states were
	// last seen: one nobody saw first (being overwritten costs it
	// nothing), the one whose state was seen latest last.
	lastSeen := w.lastSeen()
	type event struct {
		t    int64
		kind uint8 // 0 call, 1 return of a read-like, 2 return of a write
		seen int64
		i    int32
	}
	events := make([]event, 0, 2*len(ops))
	for i, op := range ops {
		kind := uint8(2)
		if w.readLike(int32(i)) {
			kind = 1
		}
		events = append(events, event{op.Call, 0, 0, int32(i)}, event{op.Return, kind, lastSeen[i], int32(i)})
	}
	slices.SortFunc(events, func(a, b event) int {
		if c := cmp.Compare(a.t, b.t); c != 0 {
			return c
		}
		if c := cmp.Compare(a.kind, b.kind); c != 0 {
			return c
		}
		if c := cmp.Compare(a.seen, b.seen); c != 0 {
			return c
		}
		return cmp.Compare(a.i, b.i)
	})
	for _, e := range events {
		i := e.i
		if e.kind == 0 {
			w.status[i] = statusPending
			w.pending = append(w.pending, i)
			if w.readLike(i) && w.legal(i) {
				w.take(i)
			}
			continue
		}
		if w.status[i] == statusDone {
			continue
		}
		if w.readLike(i) {
			if !w.legal(i) && !w.reach(i, -1) && !w.dodge(i) {
				return false
			}
			w.take(i)
			continue
		}
		w.protect(i)
		if w.status[i] == statusDone {
			continue // protect applied it as part of a read's state
		}
		if !w.legal(i) {
			// A cas that swapped needs the state it expected.
			in := ops[i].Input.(*kvInput)
			if in.op != opCAS || !w.reachValue(in.expect, i) || !w.legal(i) {
				return false
			}
		}
		w.apply(i)
		w.sweep()
	}
	return true
}

const (
	statusUncalled uint8 = iota
	statusPending
	statusDone
)

type witnessRun struct {
	ops        []porcupine.Operation
	dec        *decoder
	st         kvState
	status     []uint8
	pending    []int32
	baseAt     map[string]int32 // put and cas values -> position (multiWriter if several)
	tokAt      map[string]int32 // append values -> position (multiWriter if several)
	decomposed bool             // base and toks describe st
	base       string
	toks       []string
	scratch    []string
	plan       []int32
	// firstNeed is, per write, the earliest return of an operation whose
	// decoded state includes it (MaxInt64 when none); see dodge.
	firstNeed []int64
	// chain is the plan's prefix when its base is a cas that needs another
	// state first (see chainTo); used only with a base write.
	chain []int32
}

// lastSeen gives each write the latest call of an operation whose decoded
// state includes it (MinInt64 when none).
func (w *witnessRun) lastSeen() []int64 {
	seen := make([]int64, len(w.ops))
	for i := range seen {
		seen[i] = math.MinInt64
	}
	if w.dec == nil {
		return seen
	}
	w.firstNeed = make([]int64, len(w.ops))
	for i := range w.firstNeed {
		w.firstNeed[i] = math.MaxInt64
	}
	var ret int64
	mark := func(m map[string]int32, v string, at int64) {
		if j, ok := m[v]; ok && j >= 0 {
			seen[j] = max(seen[j], at)
			w.firstNeed[j] = min(w.firstNeed[j], ret)
		}
	}
	for _, op := range w.ops {
		in, out := op.Input.(*kvInput), op.Output.(kvOutput)
		var v string
		switch {
		case out.unknown:
			continue
		case in.op == opGet && out.found:
			v = out.value
		case in.op == opCAS && out.swapped:
			v = in.expect
		default:
			continue
		}
		p, ok := w.dec.decode(v, w.scratch)
		if !ok {
			continue
		}
		w.scratch = p.tokens
		ret = op.Return
		if p.base != "" {
			mark(w.baseAt, p.base, op.Call)
		}
		for _, t := range p.tokens {
			mark(w.tokAt, t, op.Call)
		}
	}
	return seen
}

func (w *witnessRun) index() {
	w.baseAt, w.tokAt = map[string]int32{}, map[string]int32{}
	for i, op := range w.ops {
		in, out := op.Input.(*kvInput), op.Output.(kvOutput)
		m := w.baseAt
		switch {
		case in.op == opGet, in.op == opCAS && !out.unknown && !out.swapped:
			continue
		case in.op == opAppend:
			m = w.tokAt
		}
		if _, dup := m[in.value]; dup {
			m[in.value] = multiWriter
		} else {
			m[in.value] = int32(i)
		}
	}
}

// readLike: operations that change nothing and are legal or not by the
// state alone.
func (w *witnessRun) readLike(i int32) bool {
	in, out := w.ops[i].Input.(*kvInput), w.ops[i].Output.(kvOutput)
	return in.op == opGet || (in.op == opCAS && !out.unknown && !out.swapped)
}

func (w *witnessRun) legal(i int32) bool {
	ok, _ := kvStep(w.st, w.ops[i].Input, w.ops[i].Output)
	return ok
}

// take linearizes a legal read-like operation.
func (w *witnessRun) take(i int32) {
	w.status[i] = statusDone
	w.unpend(i)
}

func (w *witnessRun) unpend(i int32) {
	for k, j := range w.pending {
		if j == i {
			w.pending[k] = w.pending[len(w.pending)-1]
			w.pending = w.pending[:len(w.pending)-1]
			return
		}
	}
}

// apply linearizes a legal write, keeping the decomposition of the state.
func (w *witnessRun) apply(i int32) {
	in := w.ops[i].Input.(*kvInput)
	before := w.st
	_, next := kvStep(w.st, w.ops[i].Input, w.ops[i].Output)
	w.st = next.(kvState)
	switch in.op {
	case opAppend:
		w.toks = append(w.toks, in.value)
	case opPut:
		w.decomposed, w.base, w.toks = true, in.value, w.toks[:0]
	case opCAS:
		if before.present && before.value == in.expect {
			w.decomposed, w.base, w.toks = true, in.value, w.toks[:0]
		}
	}
	w.status[i] = statusDone
	w.unpend(i)
}

// sweep takes every pending read-like operation that is now legal.
func (w *witnessRun) sweep() {
	for k := 0; k < len(w.pending); {
		i := w.pending[k]
		if w.readLike(i) && w.legal(i) {
			w.take(i)
			continue // take moved another entry to k
		}
		k++
	}
}

// protect serves, before the write at position forced is applied, each
// pending read and each pending cas that swapped which the forced write
// would spoil for good: one whose state is the current one or extends it
// by pending appends. States never recur (written values are unique, or the
// decoding fails and nothing is served this way), so once the forced write
// lands they never can be served.
func (w *witnessRun) protect(forced int32) {
	for k := 0; k < len(w.pending); {
		i := w.pending[k]
		if i == forced {
			k++
			continue
		}
		in, out := w.ops[i].Input.(*kvInput), w.ops[i].Output.(kvOutput)
		switch {
		case in.op == opGet && out.found && !w.legal(i) && w.extend(out.value, forced) && w.legal(i):
			w.take(i)
		case in.op == opCAS && !out.unknown && out.swapped && (w.legal(i) || w.extend(in.expect, forced) && w.legal(i)):
			w.apply(i)
			w.sweep()
		default:
			k++
			continue
		}
		k = 0 // the pending list changed under us
	}
}

// dodge makes a completed cas that did not swap legal, at its return, by
// applying first a pending write that leaves another state than the one
// it expected: of those legal now, the one whose state some operation
// needs soonest (the others' states can still come later). The pending
// reads the write would spoil are served first (protect). False when no
// pending write helps.
func (w *witnessRun) dodge(i int32) bool {
	in, out := w.ops[i].Input.(*kvInput), w.ops[i].Output.(kvOutput)
	if in.op != opCAS || out.unknown || out.swapped {
		return false
	}
	best := int32(-1)
	for _, j := range w.pending {
		if j == i || w.readLike(j) {
			continue
		}
		legal, next := kvStep(w.st, w.ops[j].Input, w.ops[j].Output)
		if st := next.(kvState); !legal || (st.present && st.value == in.expect) {
			continue
		}
		if best < 0 || w.firstNeed[j] < w.firstNeed[best] || (w.firstNeed[j] == w.firstNeed[best] && w.ops[j].Return < w.ops[best].Return) {
			best = j
		}
	}
	if best < 0 {
		return false
	}
	w.protect(best)
	if w.status[best] != statusPending || !w.legal(best) {
		return w.legal(i)
	}
	w.apply(best)
	w.sweep()
	return w.legal(i)
}

// reach applies pending writes, not the one at position except, so that
// the read at position i becomes legal; false (having changed nothing) when
// it cannot.
func (w *witnessRun) reach(i, except int32) bool {
	in, out := w.ops[i].Input.(*kvInput), w.ops[i].Output.(kvOutput)
	if in.op != opGet || !out.found {
		return false // an absent key or a changed state cannot be made by writes here
	}
	if !w.reachValueExcept(out.value, except) {
		return false
	}
	return w.legal(i)
}

func (w *witnessRun) reachValue(v string, except int32) bool {
	return w.reachValueExcept(v, except)
}

// extend serves, before the write at position forced, a pending read
// whose state extends the current one by appends: the one kind of read
// that the forced write, were it not in the read's appends, would spoil for
// good (a read that needs another base is not spoiled by it, and serving
// it early could spoil others). When the forced write is itself one of
// those appends, the appends before it are applied now and the rest wait.
func (w *witnessRun) extend(v string, forced int32) bool {
	if w.dec == nil || !w.decomposed {
		return false
	}
	p, ok := w.dec.decode(v, w.scratch)
	if !ok {
		return false
	}
	w.scratch = p.tokens
	if p.base != w.base || len(w.toks) >= len(p.tokens) || !slices.Equal(w.toks, p.tokens[:len(w.toks)]) {
		return false
	}
	rest := p.tokens[len(w.toks):]
	if in := w.ops[forced].Input.(*kvInput); in.op == opAppend {
		for k, t := range rest {
			if t == in.value {
				if k > 0 {
					w.tryPlan(-1, rest[:k], "", -1, false)
				}
				return false
			}
		}
	}
	return w.tryPlan(-1, rest, v, forced, true)
}

// reachValueExcept makes the state v by applying pending writes (never
// except): first by extending the current state with appends, else from
// the put or cas that wrote v's base.
func (w *witnessRun) reachValueExcept(v string, except int32) bool {
	if w.dec == nil {
		return false
	}
	p, ok := w.dec.decode(v, w.scratch)
	if !ok {
		return false
	}
	w.scratch = p.tokens
	if w.decomposed && p.base == w.base && len(w.toks) <= len(p.tokens) && slices.Equal(w.toks, p.tokens[:len(w.toks)]) {
		if w.tryPlan(-1, p.tokens[len(w.toks):], v, except, true) {
			return true
		}
	}
	b, ok := w.baseAt[p.base]
	if !ok || b < 0 {
		return false
	}
	tokens := slices.Clone(p.tokens) // chainTo decodes again
	chain, ok := w.chainTo(b, w.chain[:0], maxChain)
	w.chain = chain
	if !ok {
		return false
	}
	return w.tryPlan(b, tokens, v, except, true)
}

// maxChain bounds how many cas a plan goes back through (see chainTo).
const maxChain = 8

// chainTo returns prefix extended by the pending writes that make, from
// the current state, the state the cas at position b expects, when b is a
// cas that needs another state than the current one: the write of that
// state's base (itself chained the same way, at most depth deep) and then
// its appended values. A put needs nothing. false means no such writes.
// The plan is only proposed: tryPlan checks every step against the model.
func (w *witnessRun) chainTo(b int32, prefix []int32, depth int) ([]int32, bool) {
	in := w.ops[b].Input.(*kvInput)
	if in.op != opCAS || (w.st.present && w.st.value == in.expect) {
		return prefix, true
	}
	if depth == 0 || w.dec == nil {
		return prefix, false
	}
	p, ok := w.dec.decode(in.expect, w.scratch)
	if !ok {
		return prefix, false
	}
	w.scratch = p.tokens
	var toks []int32
	for _, t := range p.tokens {
		j, ok := w.tokAt[t]
		if !ok || j < 0 {
			return prefix, false
		}
		toks = append(toks, j)
	}
	if w.decomposed && p.base == w.base && len(w.toks) <= len(p.tokens) && slices.Equal(w.toks, p.tokens[:len(w.toks)]) {
		return append(prefix, toks[len(w.toks):]...), true
	}
	a, ok := w.baseAt[p.base]
	if !ok || a < 0 || w.status[a] != statusPending {
		return prefix, false
	}
	prefix, ok = w.chainTo(a, prefix, depth-1)
	if !ok {
		return prefix, false
	}
	prefix = append(prefix, a)
	return append(prefix, toks...), true
}

// tryPlan checks that the base write (if ≥ 0) and then the appends of
// tokens are pending and legal in turn and (when exact) end in state v,
// and if so applies them.
func (w *witnessRun) tryPlan(base int32, tokens []string, v string, except int32, exact bool) bool {
	plan := w.plan[:0]
	if base >= 0 {
		plan = append(plan, w.chain...)
		plan = append(plan, base)
	}
	for _, t := range tokens {
		j, ok := w.tokAt[t]
		if !ok || j < 0 {
			return false
		}
		plan = append(plan, j)
	}
	w.plan = plan
	st := interface{}(w.st)
	for _, j := range plan {
		if j == except || w.status[j] != statusPending {
			return false
		}
		var legal bool
		legal, st = kvStep(st, w.ops[j].Input, w.ops[j].Output)
		if !legal {
			return false
		}
	}
	if s := st.(kvState); exact && (!s.present || s.value != v) {
		return false
	}
	if w.ops[plan[0]].Input.(*kvInput).op == opPut {
		w.flushUnseen(plan, except)
	}
	for _, j := range plan {
		w.apply(j)
	}
	w.sweep()
	return true
}

// flushUnseen applies, before a plan that starts with a put, the pending
// writes outside the plan whose state no operation ever showed: the put
// erases what they did, so nothing can need them after it, while applied
// after it they would spoil the state the plan makes. The pending reads
// each would spoil are served first (protect); a write that protect
// applied, or that is not legal, is left alone.
func (w *witnessRun) flushUnseen(plan []int32, except int32) {
	var unseen []int32
	for _, j := range w.pending {
		if j != except && !w.readLike(j) && !w.ops[j].Output.(kvOutput).unknown && w.firstNeed[j] == math.MaxInt64 && !slices.Contains(plan, j) {
			unseen = append(unseen, j)
		}
	}
	slices.SortFunc(unseen, func(a, b int32) int { return cmp.Compare(w.ops[a].Return, w.ops[b].Return) })
	for _, j := range unseen {
		if w.status[j] != statusPending {
			continue
		}
		w.protect(j)
		if w.status[j] == statusPending && w.legal(j) {
			w.apply(j)
			w.sweep()
		}
	}
}
