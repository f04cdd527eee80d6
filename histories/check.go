package histories

import (
	"cmp"
	"context"
	"errors"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anishathalye/porcupine"
)

// CheckOptions tunes Check. The zero value is usable.
type CheckOptions struct {
	// Budget bounds the search over all keys; 0 means 60 s. Visualizations
	// get a second budget of the same size (see doc.go).
	Budget time.Duration
	// Workers is how many searches (of keys, or of segments of a key) run
	// at once; 0 means GOMAXPROCS. Each search holds its own cache, so this
	// also bounds memory.
	Workers int
	// VisualizeDir receives <key>.html for every illegal key; "" writes none.
	VisualizeDir string
	// VisualizeAll also visualizes ok keys when the history has at most
	// VisualizeAllMaxOps operations.
	VisualizeAll bool
	// Annotations are drawn on every visualization (nemesis faults, phases).
	Annotations []Annotation
	// MaxVisualizationBytes caps the bytes written for all visualizations
	// together; 0 means 256 MiB. Keys past the cap are listed without a file.
	MaxVisualizationBytes int64
	// TempDir holds the file a long history's operations spill to while
	// it is checked (unlinked at once); "" means os.TempDir.
	TempDir string
}

// Result is the verdict of a history and of each of its keys.
type Result struct {
	Verdict Verdict
	// Keys has every key: illegal first, then unknown, then ok, each by key.
	Keys    []KeyResult
	Elapsed time.Duration
	// Operations is the number of operations in the history.
	Operations int
	// Pruned counts unknown writes dropped because nothing observed them;
	// Bounded counts unknown writes whose return was bounded by their first
	// observer (see doc.go).
	Pruned, Bounded int
	// Visualizations are the HTML files written, sorted.
	Visualizations []string
}

// KeyResult is the verdict of one key.
type KeyResult struct {
	Key     string
	Verdict Verdict
	// Ops is the number of operations searched: fail operations, unknown
	// reads and pruned writes are not counted.
	Ops           int
	Elapsed       time.Duration
	Visualization string // path of the HTML file, "" if none
}

// VisualizeAllMaxOps is the largest history whose ok keys VisualizeAll
// draws: about 2 MB of HTML, which a browser still renders in seconds.
const VisualizeAllMaxOps = 10_000

// Defaults and limits; see doc.go for why these values.
const (
	defaultBudget      = 60 * time.Second
	defaultMaxVizBytes = 256 << 20
	visualizeKeyBudget = 30 * time.Second
	porcupineBackstop  = time.Second
)

// visualizeMaxOps is the most operations drawn for one key; a longer key is
// drawn as a window that keeps the violation. A variable so tests can use
// small keys.
var visualizeMaxOps = 5_000

// keyHistory is one key's operations as searched.
type keyHistory struct {
	key      string
	ops      []porcupine.Operation // sorted by call, clients dense from 0
	segs     []segment             // ops split where the state is forced; see segmentKey
	verdicts []Verdict             // per segment
	elapsed  []time.Duration       // per segment
	pruned   int
	bounded  int
	unique   bool // no appends, all written values distinct: the unique-value rules applied
	dec      *decoder
	// late and lateSegs are ops with the writes open to the end moved to
	// the end (see lateVariant), nil when there are none: tried first,
	// since its Ok stands for the key.
	late     []porcupine.Operation
	lateSegs []segment
	lateOK   bool          // every segment of late is Ok: so is the key
	lateTime time.Duration // spent on late
}

// Check decides whether ops is linearizable, key by key. A search that runs
// out of budget, or whose ctx ends, makes its key (and so the history)
// Unknown, never Ok. The error is an *InputError for an invalid history,
// or a visualization that could not be written (the verdict is still valid).
func Check(ctx context.Context, ops []Operation, opts CheckOptions) (Result, error) {
	start := time.Now()
	if err := ValidateAll(ops); err != nil {
		return Result{}, err
	}
	st := newOpStore(opts.TempDir)
	defer st.close()
	for _, op := range ops {
		if err := st.add(op); err != nil {
			return Result{}, err
		}
	}
	return checkStore(ctx, start, st, opts)
}

// CheckFile is Check on the history file at path, read as a stream: each
// operation is validated (as ReadFile does) and split by key into a
// compact store as it is read (fail operations and unknown reads are
// counted, not kept); the store spills to a temporary file past
// spillLimit. Keys are then checked in batches of at most batchOps
// operations, each key released once decided, so memory does not grow
// with the history (doc.go, "Memory"). The error is an *InputError for a
// bad file.
func CheckFile(ctx context.Context, path string, opts CheckOptions) (Result, error) {
	start := time.Now()
	st := newOpStore(opts.TempDir)
	defer st.close()
	if err := ScanFile(path, st.add); err != nil {
		return Result{}, err
	}
	return checkStore(ctx, start, st, opts)
}

// batchOps bounds the operations prepared and searched together: a
// prepared operation costs a few hundred bytes, so a batch stays near
// 50 MB. A key longer than this is a batch of its own. A variable so
// tests can make batches small.
var batchOps = 100_000

// retainOps bounds the operations of decided keys kept for drawing
// (illegal keys, or ok keys of small histories); past it, further keys are
// listed without a file.
const retainOps = 1_000_000

func checkStore(ctx context.Context, start time.Time, st *opStore, opts CheckOptions) (Result, error) {
	nOps := st.ops
	if opts.Budget <= 0 {
		opts.Budget = defaultBudget
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	if opts.MaxVisualizationBytes <= 0 {
		opts.MaxVisualizationBytes = defaultMaxVizBytes
	}
	deadline := start.Add(opts.Budget)
	slice := max(opts.Budget/64, firstSlice)

	order := seq(len(st.keys))
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(st.keys[a].key, st.keys[b].key) })
	res := Result{Keys: make([]KeyResult, len(order)), Operations: nOps}
	wantViz := func(v Verdict) bool {
		return opts.VisualizeDir != "" && (v == VerdictIllegal || (opts.VisualizeAll && nOps <= VisualizeAllMaxOps && v == VerdictOK))
	}
	// keys[i] is res.Keys[i]'s prepared key while it is still needed: to
	// search further, or to draw.
	keys := make([]*keyHistory, len(order))
	var pending []int // undecided after the first round
	retained := 0
	var loadErr error
	for lo := 0; lo < len(order); {
		hi, n := lo, 0
		for hi < len(order) && (hi == lo || n+st.keys[order[hi]].n <= batchOps) {
			n += st.keys[order[hi]].n
			hi++
		}
		batch := make([]*keyHistory, hi-lo)
		errs := make([]error, hi-lo)
		parallel(opts.Workers, hi-lo, func(i int) {
			ops, err := st.load(order[lo+i])
			if err != nil {
				errs[i] = err
				return
			}
			batch[i] = prepareKey(st.keys[order[lo+i]].key, ops)
		})
		if err := errors.Join(errs...); err != nil {
			loadErr = err
			break
		}
		firstRound(ctx, batch, deadline, slice, opts.Workers)
		for i, kh := range batch {
			k := lo + i
			st.release(order[k])
			res.Keys[k] = KeyResult{Key: kh.key, Ops: len(kh.ops)}
			res.Pruned += kh.pruned
			res.Bounded += kh.bounded
			v := keyVerdict(kh, &res.Keys[k])
			kh.dec = nil // later rounds only search
			switch {
			case v == VerdictUnknown:
				keys[k] = kh
				pending = append(pending, k)
			case wantViz(v) && len(kh.ops) > 0 && retained+len(kh.ops) <= retainOps:
				keys[k] = kh
				retained += len(kh.ops)
			}
		}
		lo = hi
	}
	if loadErr != nil {
		return Result{}, loadErr
	}
	st.close()

	illegal := false
	for _, kr := range res.Keys {
		illegal = illegal || kr.Verdict == VerdictIllegal
	}
	if !illegal && len(pending) > 0 {
		ks := make([]*keyHistory, len(pending))
		for i, k := range pending {
			ks[i] = keys[k]
		}
		laterRounds(ctx, ks, deadline, slice*4, opts.Workers)
	}
	for _, k := range pending {
		keyVerdict(keys[k], &res.Keys[k])
		if !wantViz(res.Keys[k].Verdict) {
			keys[k] = nil
		}
	}

	// Visualize: illegal keys always, ok keys of small histories on request.
	var vizErr error
	if opts.VisualizeDir != "" {
		var vk []*keyHistory
		var vr []KeyResult
		var at []int
		for i, kr := range res.Keys {
			if keys[i] != nil && kr.Ops > 0 && wantViz(kr.Verdict) {
				vk, vr, at = append(vk, keys[i]), append(vr, kr), append(at, i)
			}
		}
		vizErr = visualizeKeys(ctx, vk, vr, seq(len(vk)), opts)
		for j, i := range at {
			res.Keys[i].Visualization = vr[j].Visualization
		}
	}

	res.Verdict = VerdictOK
	for _, kr := range res.Keys {
		switch kr.Verdict {
		case VerdictIllegal:
			res.Verdict = VerdictIllegal
		case VerdictUnknown:
			if res.Verdict == VerdictOK {
				res.Verdict = VerdictUnknown
			}
		}
		if kr.Visualization != "" {
			res.Visualizations = append(res.Visualizations, kr.Visualization)
		}
	}
	slices.Sort(res.Visualizations)
	slices.SortFunc(res.Keys, func(a, b KeyResult) int {
		if c := cmp.Compare(verdictRank(a.Verdict), verdictRank(b.Verdict)); c != 0 {
			return c
		}
		return cmp.Compare(a.Key, b.Key)
	})
	res.Elapsed = time.Since(start)
	return res, vizErr
}

func verdictRank(v Verdict) int {
	switch v {
	case VerdictIllegal:
		return 0
	case VerdictUnknown:
		return 1
	case VerdictOK:
		return 2
	}
	return 3
}

// keyVerdict sets kr's verdict and elapsed time from kh's segments and
// returns the verdict.
func keyVerdict(kh *keyHistory, kr *KeyResult) Verdict {
	v := VerdictOK
	kr.Elapsed = kh.lateTime
	for s := range kh.segs {
		kr.Elapsed += kh.elapsed[s]
		switch kh.verdicts[s] {
		case VerdictIllegal:
			v = VerdictIllegal
		case VerdictUnknown:
			if v == VerdictOK {
				v = VerdictUnknown
			}
		}
	}
	kr.Verdict = v
	return v
}

// firstRound tries the late variants (lateFirst), then walks every
// segment (witness), then searches each segment the witness did not
// explain for at most slice. It reports whether a segment is illegal.
func firstRound(ctx context.Context, keys []*keyHistory, deadline time.Time, slice time.Duration, workers int) bool {
	lateFirst(ctx, keys, deadline, slice, workers)
	units := keyUnits(keys)
	// First, without searching: a witness is a linearization, so its Ok is
	// final; segments it cannot explain are searched.
	parallel(workers, len(units), func(i int) {
		if ctx.Err() != nil || time.Now().After(deadline) {
			return
		}
		kh, s := keys[units[i].key], units[i].seg
		t0 := time.Now()
		if witness(kh.ops[kh.segs[s].lo:kh.segs[s].hi], kh.segs[s].init, kh.dec) {
			kh.verdicts[s] = VerdictOK
		}
		kh.elapsed[s] += time.Since(t0)
	})
	return searchRounds(ctx, keys, units, deadline, slice, workers, true)
}

// laterRounds searches the undecided segments of keys in rounds, the
// first of slice, each next one four times longer.
func laterRounds(ctx context.Context, keys []*keyHistory, deadline time.Time, slice time.Duration, workers int) {
	searchRounds(ctx, keys, keyUnits(keys), deadline, slice, workers, false)
}

type unit struct{ key, seg int }

// keyUnits lists the undecided segments of keys, biggest first, so a long
// segment does not start last in its round. It sets up the per-segment
// verdicts on first use.
func keyUnits(keys []*keyHistory) []unit {
	var units []unit
	for k, kh := range keys {
		if kh.verdicts == nil {
			kh.verdicts = make([]Verdict, len(kh.segs))
			kh.elapsed = make([]time.Duration, len(kh.segs))
			for s := range kh.segs {
				kh.verdicts[s] = VerdictUnknown
				if kh.lateOK {
					kh.verdicts[s] = VerdictOK
				}
			}
		}
		for s := range kh.segs {
			if kh.verdicts[s] == VerdictUnknown {
				units = append(units, unit{k, s})
			}
		}
	}
	size := func(u unit) int { sg := keys[u.key].segs[u.seg]; return sg.hi - sg.lo }
	slices.SortStableFunc(units, func(a, b unit) int { return cmp.Compare(size(b), size(a)) })
	return units
}

// searchRounds decides the undecided units in rounds of growing slices,
// so one hard segment cannot starve the others: round r gives each
// undecided segment budget/64·4^r (at least firstSlice), restarting its
// search from scratch, which wastes at most a third of the time spent on
// it. The last round gets whatever budget is left. Once a segment is
// illegal the history's verdict is settled, and segments still undecided
// after that round stay Unknown rather than use the rest of the budget.
// With once set it runs one round (checkStore runs the first round batch
// by batch, the later ones on the keys left undecided). It reports whether
// a segment is illegal.
func searchRounds(ctx context.Context, keys []*keyHistory, units []unit, deadline time.Time, slice time.Duration, workers int, once bool) bool {
	var todo []int
	for i, u := range units {
		if keys[u.key].verdicts[u.seg] != VerdictOK {
			todo = append(todo, i)
		}
	}
	for len(todo) > 0 && ctx.Err() == nil && time.Now().Before(deadline) {
		if time.Until(deadline) < 2*slice {
			slice = time.Until(deadline) // last round: all that is left
		}
		runPool(ctx, deadline, workers, todo, func(ctx context.Context, i int) {
			kh, s := keys[units[i].key], units[i].seg
			v, d := searchSegment(ctx, kh.ops[kh.segs[s].lo:kh.segs[s].hi], kh.segs[s].init, slice)
			kh.verdicts[s] = v
			kh.elapsed[s] += d
		})
		next := todo[:0]
		illegal := false
		for _, i := range todo {
			switch keys[units[i].key].verdicts[units[i].seg] {
			case VerdictUnknown:
				next = append(next, i)
			case VerdictIllegal:
				illegal = true
			}
		}
		if illegal || once {
			return illegal
		}
		todo = next
		slice *= 4
	}
	return false
}

// lateFirst decides the keys that have a late variant (see lateVariant)
// by it when it is Ok: each of its segments by the witness or by a search.
// A key it does not decide is searched as recorded, which is usually much
// harder (the open writes block every cut), so a late segment whose search
// merely ran out of time (Unknown, not Illegal) is searched again with a
// slice four times larger, as searchRounds does, while the late searches
// have used less than a quarter of the time left: on a loaded machine the
// first slice can be too short for a segment that checks in a fraction of
// it alone, and giving up on the easy form then costs the hard one. An
// Illegal late variant proves nothing (narrowing removes linearizations),
// so it is left at once.
func lateFirst(ctx context.Context, keys []*keyHistory, deadline time.Time, slice time.Duration, workers int) {
	type unit struct{ key, seg int }
	var units []unit
	for k, kh := range keys {
		for s := range kh.lateSegs {
			units = append(units, unit{k, s})
		}
	}
	if len(units) == 0 {
		return
	}
	verdict := make([]Verdict, len(units))
	took := make([]time.Duration, len(units))
	lateDeadline := time.Now().Add(time.Until(deadline) / 4)
	todo := seq(len(units))
	for first := true; len(todo) > 0 && ctx.Err() == nil; first = false {
		runPool(ctx, deadline, workers, todo, func(ctx context.Context, i int) {
			kh, sg := keys[units[i].key], keys[units[i].key].lateSegs[units[i].seg]
			t0 := time.Now()
			ops := kh.late[sg.lo:sg.hi]
			if first && witness(ops, sg.init, kh.dec) {
				verdict[i] = VerdictOK
			} else {
				verdict[i], _ = searchSegment(ctx, ops, sg.init, slice)
			}
			took[i] += time.Since(t0)
		})
		next := todo[:0]
		for _, i := range todo {
			if verdict[i] == VerdictUnknown {
				next = append(next, i)
			}
		}
		todo = next
		slice *= 4
		if time.Now().Add(slice).After(lateDeadline) {
			break
		}
	}
	for _, kh := range keys {
		kh.lateOK = kh.late != nil
	}
	for i, u := range units {
		kh := keys[u.key]
		kh.lateOK = kh.lateOK && verdict[i] == VerdictOK
		kh.lateTime += took[i]
	}
	for _, kh := range keys {
		kh.late, kh.lateSegs = nil, nil // searched as recorded from here on
	}
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// firstSlice is the least a segment gets in the first round: enough for the
// typical segment of a generated history (milliseconds) to finish at once.
const firstSlice = 50 * time.Millisecond

// runPool runs job over the items with a fixed number of workers and waits
// for all of them. The ctx given to job ends at deadline or when ctx ends.
func runPool(ctx context.Context, deadline time.Time, workers int, items []int, job func(ctx context.Context, i int)) {
	cctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	parallel(workers, len(items), func(i int) { job(cctx, items[i]) })
}

// parallel calls fn(0..n-1) from min(workers, n) goroutines and returns
// when all calls have.
func parallel(workers, n int, fn func(i int)) {
	work := make(chan int) // unbuffered: the feeder is the only queue
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Go(func() {
			for i := range work {
				fn(i)
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
}

// stopFlag is set when ctx ends. The model reads it on every step, which a
// ctx.Err() call (a mutex) would make noticeably slower.
func stopFlag(ctx context.Context) (*atomic.Bool, func() bool) {
	var stop atomic.Bool
	if ctx.Err() != nil {
		stop.Store(true)
	}
	return &stop, context.AfterFunc(ctx, func() { stop.Store(true) })
}

// searchSegment runs porcupine on one segment for at most slice, or until
// ctx ends.
func searchSegment(ctx context.Context, ops []porcupine.Operation, init kvState, slice time.Duration) (Verdict, time.Duration) {
	if ctx.Err() != nil {
		return VerdictUnknown, 0
	}
	if len(ops) == 0 {
		return VerdictOK, 0
	}
	t0 := time.Now()
	kctx, cancel := context.WithTimeout(ctx, slice)
	defer cancel()
	stop, unregister := stopFlag(kctx)
	defer unregister()
	// porcupine's own timer is only a backstop: stop ends the search first.
	res := porcupine.CheckOperationsTimeout(newModel(init, stop), ops, slice+porcupineBackstop)
	return verdictOf(res, stop), time.Since(t0)
}

// verdictOf maps porcupine's answer. An Illegal reached after stop was set
// may come from steps refused to stop the search, so it is Unknown; an Ok is
// a complete linearization found with genuine steps, so it stands.
func verdictOf(res porcupine.CheckResult, stop *atomic.Bool) Verdict {
	switch res {
	case porcupine.Ok:
		return VerdictOK
	case porcupine.Illegal:
		if stop.Load() {
			return VerdictUnknown
		}
		return VerdictIllegal
	}
	return VerdictUnknown
}

// partition prepares each key of ops for the search (tests).
func partition(ops []Operation, workers int) []*keyHistory {
	st := newOpStore("")
	defer st.close()
	for _, op := range ops {
		if err := st.add(op); err != nil {
			panic(err)
		}
	}
	order := seq(len(st.keys))
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(st.keys[a].key, st.keys[b].key) })
	out := make([]*keyHistory, len(order))
	parallel(workers, len(order), func(i int) {
		ops, err := st.load(order[i])
		if err != nil {
			panic(err)
		}
		out[i] = prepareKey(st.keys[order[i]].key, ops)
	})
	return out
}

// prepareKey implements the checking rules of doc.go for one key.
func prepareKey(key string, ops []Operation) *keyHistory {
	kh := &keyHistory{key: key}
	slices.SortStableFunc(ops, func(a, b Operation) int { return cmp.Compare(a.Call, b.Call) })
	var maxTime int64
	for _, op := range ops {
		maxTime = max(maxTime, op.Call)
		if op.Outcome != Info {
			maxTime = max(maxTime, op.Return)
		}
	}
	inf := afterAll(maxTime)

	// call[i], ret[i] are the interval given to the search; drop[i]
	// removes the op.
	call := make([]int64, len(ops))
	ret := make([]int64, len(ops))
	notes := make([]string, len(ops))
	for i, op := range ops {
		call[i], ret[i] = op.Call, op.Return
		if op.Outcome == Info {
			ret[i] = inf
		}
	}
	kh.dec = newDecoder(ops)
	var drop []bool
	if len(kh.dec.tokens) > 0 {
		drop = useAppendTokens(ops, call, ret, notes, kh, kh.dec)
	} else {
		drop = useUniqueValues(ops, call, ret, notes, kh)
		if kh.unique {
			tightenClusters(ops, call, ret, drop, notes)
		}
	}

	clients := map[int]int{}
	kh.ops = make([]porcupine.Operation, 0, len(ops)-kh.pruned)
	for i, op := range ops {
		if drop != nil && drop[i] {
			continue
		}
		c, ok := clients[op.Client]
		if !ok {
			c = len(clients)
			clients[op.Client] = c
		}
		pop := toPorcupine(op, c, ret[i], notes[i])
		pop.Call = call[i]
		kh.ops = append(kh.ops, pop)
	}
	slices.SortStableFunc(kh.ops, func(a, b porcupine.Operation) int { return cmp.Compare(a.Call, b.Call) })
	kh.segs = segmentKey(kh.ops)
	kh.late = lateVariant(kh.ops, inf)
	if kh.late != nil {
		kh.lateSegs = segmentKey(kh.late)
	}
	return kh
}

// lateVariant returns ops with every write still open to the end (an
// unknown write neither pruned nor bounded: return inf) narrowed to the
// instant inf, or nil when there is none. Such writes block every segment
// cut after their call, and the search tries each of them at every step;
// narrowed, they sit in the last segment. Narrowing an interval only
// removes linearizations, so an Ok of the narrowed history is an Ok of the
// real one (its linearization puts each such write where the write may
// have taken effect: after everything, which is also "never"). Anything
// else proves nothing, and the real history is searched.
func lateVariant(ops []porcupine.Operation, inf int64) []porcupine.Operation {
	open := 0
	for _, op := range ops {
		if op.Return >= inf && op.Output.(kvOutput).unknown {
			open++
		}
	}
	if open == 0 {
		return nil
	}
	late := slices.Clone(ops)
	for i := range late {
		if late[i].Return >= inf && late[i].Output.(kvOutput).unknown {
			late[i].Call = late[i].Return
		}
	}
	slices.SortStableFunc(late, func(a, b porcupine.Operation) int { return cmp.Compare(a.Call, b.Call) })
	return late
}

// useUniqueValues applies the unique-value rules of doc.go to a key without
// appends whose written values are all distinct (otherwise it does
// nothing): it prunes unobserved unknown writes (returned as drop; nil when
// none), bounds observed ones, and tightens intervals by what values
// reveal: a write of v precedes every operation that saw v, so the write's
// return is at most the first observer's return, and an observer's call is
// at least the write's call.
func useUniqueValues(ops []Operation, call, ret []int64, notes []string, kh *keyHistory) []bool {
	writer := make(map[string]int, len(ops)/2) // value -> index of the op that wrote it
	for i, op := range ops {
		switch op.Op {
		case Append:
			return nil // an append's value is not the state: no unique observation
		case Put, CAS:
			if _, dup := writer[op.Value]; dup {
				return nil
			}
			writer[op.Value] = i
		}
	}
	kh.unique = true
	// firstSeen[v]: earliest return of an ok operation that saw the state
	// equal to v (a read of v, a cas that swapped from v).
	firstSeen := map[string]int64{}
	see := func(v string, at int64) {
		if t, ok := firstSeen[v]; !ok || at < t {
			firstSeen[v] = at
		}
	}
	casExpects := map[string]struct{}{} // any remaining cas could compare against these
	lastNonSwap := int64(-1)            // latest return of an ok cas that did not swap and could have
	for _, op := range ops {
		switch {
		case op.Op == Get && op.Outcome == OK && op.Found:
			see(op.Output, op.Return)
		case op.Op == CAS:
			casExpects[op.Expect] = struct{}{}
			if op.Outcome == OK && op.Swapped {
				see(op.Expect, op.Return)
			}
			if _, could := writer[op.Expect]; op.Outcome == OK && !op.Swapped && could {
				lastNonSwap = max(lastNonSwap, op.Return)
			}
		}
	}
	var drop []bool
	for i, op := range ops {
		if op.Op == Get || op.Op == CAS && op.Outcome == OK && !op.Swapped {
			continue // never puts its value in the state
		}
		if t, seen := firstSeen[op.Value]; seen {
			if t >= op.Call && t < ret[i] { // else the observer precedes the write: the search refutes it
				ret[i] = t
				notes[i] = "return lowered to that of the first operation that observed its value"
				if op.Outcome == Info {
					kh.bounded++
				}
			}
			continue
		}
		if op.Outcome != Info {
			continue
		}
		if _, compared := casExpects[op.Value]; compared {
			continue
		}
		if lastNonSwap >= op.Call {
			continue
		}
		if drop == nil {
			drop = make([]bool, len(ops))
		}
		drop[i] = true
		kh.pruned++
	}
	// Observers start no earlier than the write they saw.
	for i, op := range ops {
		var v string
		switch {
		case op.Op == Get && op.Outcome == OK && op.Found:
			v = op.Output
		case op.Op == CAS && op.Outcome == OK && op.Swapped:
			v = op.Expect
		default:
			continue
		}
		w, ok := writer[v]
		if !ok || (ops[w].Op == CAS && ops[w].Outcome == OK && !ops[w].Swapped) {
			continue
		}
		if wc := ops[w].Call; wc > call[i] && wc <= ret[i] {
			call[i] = wc
			notes[i] = strings.TrimPrefix(notes[i]+"; call raised to that of the write it observed", "; ")
		}
	}
	return drop
}
