package harness

// A handful of Porcupine pages for a passing run. The checker draws the
// keys it fails, and every key only of a small history; a passing run of
// any length then had one timeline (k000, drawn so the faults show on
// one), which says little about what the faults did to the other keys.
// This draws a few more: the keys whose operations most often ended
// unknown (the ones the faults hit hardest), k000 first.

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"time"

	"github.com/chainraft/chainraft/harness/workload"
	"github.com/chainraft/chainraft/histories"
)

// passingKeysDrawn is how many keys a passing run draws.
const passingKeysDrawn = 4

// visualizePassing draws up to passingKeysDrawn keys of a passing run
// with the fault annotations, each checked on its own under a short
// budget; keys too long to draw are skipped. Failures are logged: the
// verdict stands without them.
func visualizePassing(ctx context.Context, h *RunHistory, ann []histories.Annotation, dir string, s *Summary, log io.Writer) {
	if s.Verdict != string(histories.VerdictOK) || h.Ops == 0 {
		return
	}
	infos := h.KeyInfos
	keys := make([]string, 0, len(h.KeyOps))
	for k, n := range h.KeyOps {
		if n <= histories.VisualizeAllMaxOps { // longer keys are not drawn
			keys = append(keys, k)
		}
	}
	first := workload.KeyNames(1)[0]
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if (a == first) != (b == first) {
			return a == first
		}
		if infos[a] != infos[b] {
			return infos[a] > infos[b]
		}
		return a < b
	})
	keys = keys[:min(len(keys), passingKeysDrawn)]
	if len(keys) == 0 {
		return
	}
	// Only the keys drawn are read back: a few thousand operations.
	byKey, err := h.Keys(keys...)
	if err != nil {
		fmt.Fprintf(log, "warning: timelines: %v\n", err)
		return
	}
	drawn := map[string]bool{}
	for _, v := range s.Visualizations {
		drawn[v] = true
	}
	n := 0
	for _, k := range keys {
		if n >= passingKeysDrawn || ctx.Err() != nil {
			break
		}
		mine := byKey[k]
		if len(mine) > histories.VisualizeAllMaxOps {
			continue
		}
		res, err := histories.Check(ctx, mine, histories.CheckOptions{
			Budget: 20 * time.Second, VisualizeDir: filepath.Join(dir, "porcupine"), VisualizeAll: true, Annotations: ann,
		})
		if err != nil {
			fmt.Fprintf(log, "warning: timeline of %s: %v\n", k, err)
		}
		for _, v := range res.Visualizations {
			if rel := relTo(dir, v); !drawn[rel] {
				drawn[rel] = true
				s.Visualizations = append(s.Visualizations, rel)
			}
		}
		n++
	}
}
