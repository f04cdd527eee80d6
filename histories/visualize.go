package histories

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anishathalye/porcupine"
)

// visualizeKeys draws the keys in todo, each under its own budget, all
// within a second budget of opts.Budget, writing into opts.VisualizeDir.
func visualizeKeys(ctx context.Context, keys []*keyHistory, results []KeyResult, todo []int, opts CheckOptions) error {
	if len(todo) == 0 {
		return nil
	}
	if err := os.MkdirAll(opts.VisualizeDir, 0o755); err != nil {
		return fmt.Errorf("histories: visualizations: %w", err)
	}
	names := map[string]bool{}
	paths := make(map[int]string, len(todo))
	for _, i := range todo {
		name := fileName(keys[i].key)
		for n := 2; names[name]; n++ {
			name = fmt.Sprintf("%s-%d", fileName(keys[i].key), n)
		}
		names[name] = true
		paths[i] = filepath.Join(opts.VisualizeDir, name+".html")
	}
	var bytesLeft atomic.Int64
	bytesLeft.Store(opts.MaxVisualizationBytes)
	var mu sync.Mutex
	var errs []error
	runPool(ctx, time.Now().Add(opts.Budget), opts.Workers, todo, func(ctx context.Context, i int) {
		if ctx.Err() != nil {
			return // the phase's budget is spent: no file rather than an empty one
		}
		kctx, cancel := context.WithTimeout(ctx, visualizeKeyBudget)
		defer cancel()
		stop, unregister := stopFlag(kctx)
		defer unregister()
		ok, err := visualizeKey(keys[i], results[i].Verdict, paths[i], opts.Annotations, stop, &bytesLeft)
		if err != nil {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
		if ok {
			results[i].Visualization = paths[i]
		}
	})
	return errors.Join(errs...)
}

// visualizeKey writes one key's page. An illegal key split into segments
// (see segmentKey) is drawn from its first illegal segment, which holds the
// violation on its own. What is still longer than visualizeMaxOps is cut:
// the search's longest linearizable prefix is replayed to get the state at
// a cut point, and the page shows the operations from there on, checked
// from that state. That keeps the violation: a porcupine linearization
// prefix respects real time, so had the rest been linearizable from that
// state, the whole would have been too.
func visualizeKey(kh *keyHistory, verdict Verdict, path string, anns []Annotation, stop *atomic.Bool, bytesLeft *atomic.Int64) (bool, error) {
	ops := kh.ops
	init := kvState{}
	from, to := 0, len(ops)-1 // positions in kh.ops of the first and last op drawn
	var why []string
	var notes []porcupine.Annotation
	if verdict == VerdictIllegal && len(kh.segs) > 1 {
		for s, v := range kh.verdicts {
			if v == VerdictIllegal {
				sg := kh.segs[s]
				ops, init, from, to = remapClients(kh.ops[sg.lo:sg.hi]), sg.init, sg.lo, sg.hi-1
				why = append(why, fmt.Sprintf("Operations %d..%d form a segment: all before it returned before any of it began, and every linearization of them ends in state %s.", from+1, to+1, describeStatePlain(init)))
				break
			}
		}
	}
	if len(ops) > visualizeMaxOps {
		_, info := porcupine.CheckOperationsVerbose(newModel(init, stop), ops, 0)
		var longest []int
		for _, l := range info.PartialLinearizations() {
			for _, seq := range l {
				if len(seq) > len(longest) {
					longest = seq
				}
			}
		}
		k := max(0, len(longest)-visualizeMaxOps/2)
		inPrefix := make([]bool, len(ops))
		st := interface{}(init)
		for _, id := range longest[:k] {
			inPrefix[id] = true
			var legal bool
			legal, st = kvStep(st, ops[id].Input, ops[id].Output)
			if !legal {
				panic(fmt.Sprintf("histories: replaying porcupine's linearization of key %q: step %d refused", kh.key, id))
			}
		}
		init = st.(kvState)
		var window []porcupine.Operation
		first, last := -1, -1
		for i, op := range ops {
			if inPrefix[i] || len(window) == visualizeMaxOps {
				continue
			}
			if first < 0 {
				first = i
			}
			last = i
			window = append(window, op)
		}
		ops = remapClients(window)
		from, to = from+first, from+last
		why = append(why, fmt.Sprintf("The search's longest linearization of them was cut after %d operations, in state %s; the page shows the next %d operations in call order from that state.", k, describeStatePlain(init), len(ops)))
	}
	if len(ops) < len(kh.ops) {
		notes = append(notes, porcupine.Annotation{
			Tag:             "checker",
			Start:           ops[0].Call,
			Description:     fmt.Sprintf("cut: showing ops %d..%d of %d", from+1, to+1, len(kh.ops)),
			Details:         fmt.Sprintf("This key has %d operations, in call order. %s", len(kh.ops), strings.Join(why, " ")),
			BackgroundColor: "#ffe08a",
		})
	}
	ops = packRows(ops)
	res, info := porcupine.CheckOperationsVerbose(newModel(init, stop), ops, 0)
	switch {
	case res != porcupine.Ok && stop.Load():
		notes = append(notes, checkerNote(ops, "visualization search stopped by its budget: the linearizations shown are partial"))
	case verdict == VerdictIllegal && res == porcupine.Ok:
		notes = append(notes, checkerNote(ops, "this window is linearizable on its own: the violation involves operations outside it"))
	}
	info.AddAnnotations(append(convertAnnotations(anns, ops), notes...))
	var buf bytes.Buffer
	if err := porcupine.Visualize(newModel(init, nil), info, &buf); err != nil {
		return false, fmt.Errorf("histories: visualize key %q: %w", kh.key, err)
	}
	for {
		left := bytesLeft.Load()
		if int64(buf.Len()) > left {
			return false, nil
		}
		if bytesLeft.CompareAndSwap(left, left-int64(buf.Len())) {
			break
		}
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return false, fmt.Errorf("histories: visualize key %q: %w", kh.key, err)
	}
	return true, nil
}

func checkerNote(ops []porcupine.Operation, text string) porcupine.Annotation {
	return porcupine.Annotation{Tag: "checker", Start: ops[0].Call, Description: text, Details: text, BackgroundColor: "#ffb3b3"}
}

func describeStatePlain(st kvState) string {
	if !st.present {
		return "absent"
	}
	return quoteShort(st.value)
}

// remapClients renumbers client rows densely for a window of a key.
func remapClients(ops []porcupine.Operation) []porcupine.Operation {
	rows := map[int]int{}
	out := make([]porcupine.Operation, len(ops))
	for i, op := range ops {
		r, ok := rows[op.ClientId]
		if !ok {
			r = len(rows)
			rows[op.ClientId] = r
		}
		op.ClientId = r
		out[i] = op
	}
	return out
}

// packRows assigns timeline rows: porcupine draws one row per client id,
// and a key sees many clients (each unknown outcome starts a new one), most
// of them idle on this key. An operation keeps its client's previous row
// when that row is free, else takes the lowest free row, so the page has
// about as many rows as operations were ever in flight at once. A row is
// free once its last operation returned strictly before the call, since
// porcupine draws touching intervals badly. The tooltip names the client.
// ops must be sorted by call.
func packRows(ops []porcupine.Operation) []porcupine.Operation {
	var busyUntil []int64 // per row: return of its last operation
	lastRow := map[int]int{}
	out := make([]porcupine.Operation, len(ops))
	for i, op := range ops {
		row := -1
		if r, ok := lastRow[op.ClientId]; ok && busyUntil[r] < op.Call {
			row = r
		}
		for r := 0; row < 0 && r < len(busyUntil); r++ {
			if busyUntil[r] < op.Call {
				row = r
			}
		}
		if row < 0 {
			row = len(busyUntil)
			busyUntil = append(busyUntil, 0)
		}
		busyUntil[row] = op.Return
		lastRow[op.ClientId] = row
		op.ClientId = row
		out[i] = op
	}
	return out
}

// convertAnnotations keeps the annotations that overlap the operations'
// time span: others would stretch the timeline with nothing to compare them to.
func convertAnnotations(anns []Annotation, ops []porcupine.Operation) []porcupine.Annotation {
	if len(ops) == 0 {
		return nil
	}
	lo, hi := ops[0].Call, ops[0].Call
	for _, op := range ops {
		lo = min(lo, op.Call)
		hi = max(hi, op.Call)
		if md, ok := op.Metadata.(*opMeta); !ok || md.outcome != Info {
			hi = max(hi, op.Return)
		}
	}
	var out []porcupine.Annotation
	for _, a := range anns {
		end := max(a.End, a.Start)
		if end < lo || a.Start > hi {
			continue
		}
		tag := a.Tag
		if tag == "" {
			tag = "notes" // porcupine would put an untagged annotation on client row 0
		}
		out = append(out, porcupine.Annotation{Tag: tag, Start: a.Start, End: a.End, Description: a.Description, Details: a.Details, BackgroundColor: a.Color})
	}
	return out
}

// fileName turns a key into a safe file name: keys are arbitrary strings
// ("../x", "a/b", ""), so anything but [A-Za-z0-9._-] is replaced, and a
// hash of the real key is added whenever the name had to change, so two
// keys never share a file.
func fileName(key string) string {
	var b strings.Builder
	for i := 0; i < len(key) && b.Len() < 64; i++ {
		c := key[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' {
			b.WriteByte(c)
		} else {
			b.WriteByte('_')
		}
	}
	name := b.String()
	if name != key || name == "" || name[0] == '.' {
		h := fnv.New32a()
		h.Write([]byte(key))
		name = fmt.Sprintf("%s~%08x", strings.TrimLeft(name, "."), h.Sum32())
	}
	return name
}
