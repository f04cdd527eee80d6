package histories

import (
	"cmp"
	"context"
	"runtime"
	"slices"
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
	// Workers is how many keys are searched at once; 0 means GOMAXPROCS.
	// Each search holds its own cache, so this also bounds memory.
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
}

// Result is the verdict of a history and of each of its keys.
type Result struct {
	Verdict Verdict
	// Keys has every key: illegal first, then unknown, then ok, each by key.
	Keys    []KeyResult
	Elapsed time.Duration
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
	key     string
	ops     []porcupine.Operation // sorted by call, clients dense from 0
	pruned  int
	bounded int
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
	if opts.Budget <= 0 {
		opts.Budget = defaultBudget
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	if opts.MaxVisualizationBytes <= 0 {
		opts.MaxVisualizationBytes = defaultMaxVizBytes
	}

	keys := partition(ops)
	res := Result{Keys: make([]KeyResult, len(keys))}
	for i, kh := range keys {
		res.Keys[i] = KeyResult{Key: kh.key, Ops: len(kh.ops), Verdict: VerdictUnknown}
		res.Pruned += kh.pruned
		res.Bounded += kh.bounded
	}

	// Search: biggest keys first, so a long key does not start last and
	// hold up the end of the check.
	order := make([]int, len(keys))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(len(keys[b].ops), len(keys[a].ops)) })
	runPool(ctx, opts.Budget, opts.Workers, order, func(ctx context.Context, i int, stop *atomic.Bool, deadline time.Time) {
		res.Keys[i].Verdict, res.Keys[i].Elapsed = searchKey(ctx, keys[i], stop, deadline)
	})

	// Visualize: illegal keys always, ok keys of small histories on request.
	var vizErr error
	if opts.VisualizeDir != "" {
		var todo []int
		for i, kr := range res.Keys {
			if kr.Verdict == VerdictIllegal || (opts.VisualizeAll && len(ops) <= VisualizeAllMaxOps && kr.Verdict == VerdictOK) {
				todo = append(todo, i)
			}
		}
		vizErr = visualizeKeys(ctx, keys, res.Keys, todo, opts)
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

// runPool runs job over the items with a fixed number of workers, all of
// which it waits for. stop flips when ctx ends or the budget runs out (and
// the ctx given to job ends), and each job must give up promptly then; a job
// started after that sees stop already set.
func runPool(ctx context.Context, budget time.Duration, workers int, items []int, job func(ctx context.Context, i int, stop *atomic.Bool, deadline time.Time)) {
	deadline := time.Now().Add(budget)
	cctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var stop atomic.Bool
	unregister := context.AfterFunc(cctx, func() { stop.Store(true) })
	defer unregister()

	work := make(chan int) // unbuffered: the feeder is the only queue
	var wg sync.WaitGroup
	for range min(workers, len(items)) {
		wg.Go(func() {
			for i := range work {
				job(cctx, i, &stop, deadline)
			}
		})
	}
	for _, i := range items {
		work <- i
	}
	close(work)
	wg.Wait()
}

// searchKey runs porcupine on one key until it decides or stop is set.
func searchKey(ctx context.Context, kh *keyHistory, stop *atomic.Bool, deadline time.Time) (Verdict, time.Duration) {
	t0 := time.Now()
	if ctx.Err() != nil { // stop is set asynchronously; ctx is the authority
		return VerdictUnknown, 0
	}
	if stop.Load() {
		return VerdictUnknown, 0
	}
	if len(kh.ops) == 0 {
		return VerdictOK, 0
	}
	// porcupine's own timer is only a backstop: stop ends the search first.
	res := porcupine.CheckOperationsTimeout(newModel(kvState{}, stop), kh.ops, time.Until(deadline)+porcupineBackstop)
	return verdictOf(res, stop), time.Since(t0)
}

// verdictOf maps porcupine's answer. An Illegal reached after stop was set
// may come from steps refused to stop the search, so it is Unknown.
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

// partition groups operations by key and prepares each key for the search:
// drops what cannot matter, prunes and bounds unknown writes, remaps
// clients. Keys come back sorted.
func partition(ops []Operation) []*keyHistory {
	byKey := map[string][]Operation{}
	for _, op := range ops {
		if op.Outcome == Fail || (op.Outcome == Info && op.Op == Get) {
			continue // no effect and nothing observed
		}
		byKey[op.Key] = append(byKey[op.Key], op)
	}
	// Keys that only saw dropped operations still get a (trivially ok)
	// verdict, so every key of the history is listed.
	for _, op := range ops {
		if _, ok := byKey[op.Key]; !ok {
			byKey[op.Key] = nil
		}
	}
	out := make([]*keyHistory, 0, len(byKey))
	for key, kops := range byKey {
		out = append(out, prepareKey(key, kops))
	}
	slices.SortFunc(out, func(a, b *keyHistory) int { return cmp.Compare(a.key, b.key) })
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

	// ret[i] is the return given to the search; drop[i] removes the op.
	ret := make([]int64, len(ops))
	notes := make([]string, len(ops))
	for i, op := range ops {
		ret[i] = op.Return
		if op.Outcome == Info {
			ret[i] = inf
		}
	}
	drop := pruneUnknownWrites(ops, ret, notes, kh)

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
		kh.ops = append(kh.ops, toPorcupine(op, c, ret[i], notes[i]))
	}
	return kh
}

// pruneUnknownWrites applies the unique-value pruning of doc.go. It only
// acts on keys without appends whose written values are all distinct; it
// sets ret for bounded writes and returns which ops to drop (nil: none).
func pruneUnknownWrites(ops []Operation, ret []int64, notes []string, kh *keyHistory) []bool {
	written := make(map[string]struct{}, len(ops)/2)
	unknownWrites := 0
	for _, op := range ops {
		switch op.Op {
		case Append:
			return nil // an append's value is not the state: no unique observation
		case Put, CAS:
			if _, dup := written[op.Value]; dup {
				return nil
			}
			written[op.Value] = struct{}{}
			if op.Outcome == Info {
				unknownWrites++
			}
		}
	}
	if unknownWrites == 0 {
		return nil
	}
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
			if _, could := written[op.Expect]; op.Outcome == OK && !op.Swapped && could {
				lastNonSwap = max(lastNonSwap, op.Return)
			}
		}
	}
	var drop []bool
	for i, op := range ops {
		if op.Outcome != Info || op.Op == Get {
			continue
		}
		if t, seen := firstSeen[op.Value]; seen {
			if t >= op.Call { // else the read precedes the write: leave it to the search to refute
				ret[i] = t
				notes[i] = "return bounded by the first operation that observed its value"
				kh.bounded++
			}
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
	return drop
}
