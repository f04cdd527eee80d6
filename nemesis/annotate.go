package nemesis

import (
	"fmt"
	"sort"
	"strings"

	"github.com/chainraft/chainraft/histories"
)

// AnnotationTag is the timeline row nemesis annotations go in.
const AnnotationTag = "nemesis"

// kindColors are the timeline colours per fault kind: light enough for the
// box text to stay readable.
var kindColors = map[string]string{
	KindKill:        "#f4a7a7",
	KindPause:       "#f7d58b",
	KindPartition:   "#a9c8f5",
	KindZKPartition: "#b9e3f0",
	KindZKKill:      "#d7b5ef",
	KindMember:      "#b5e6b5",
	KindDelay:       "#e0e0e0",
	KindClock:       "#a0e9e3",
}

// KindColor is the colour used for kind on timelines.
func KindColor(kind string) string {
	if c, ok := kindColors[kind]; ok {
		return c
	}
	return "#cccccc"
}

// Annotations turns events into timeline annotations: one interval per
// injected fault, from its injection to its heal (or to end, for a fault
// never healed), and one instant per skipped or failed injection. Faults
// are intervals rather than instants because a fault's effect is its span:
// operations that straddle it are the ones to look at.
func Annotations(events []Event, end int64) []histories.Annotation {
	heals := map[int]Event{}
	for _, e := range events {
		if e.Event == PhaseHeal {
			heals[e.Step] = e
		}
	}
	var out []histories.Annotation
	for _, e := range events {
		if e.Event != PhaseInject {
			continue
		}
		a := histories.Annotation{
			Tag:         AnnotationTag,
			Start:       e.Time,
			End:         e.Time,
			Description: e.Description(),
			Color:       KindColor(e.Fault),
		}
		var details []string
		details = append(details, fmt.Sprintf("step %d, injected at %.3fs", e.Step, secs(e.Time)))
		switch {
		case e.Skipped:
			a.Description = "skipped: " + a.Description
			details = append(details, "skipped: "+e.Error)
		case e.Error != "":
			a.Description = "failed: " + a.Description
			details = append(details, "inject failed: "+e.Error)
		default:
			if h, ok := heals[e.Step]; ok {
				a.End = h.Time
				details = append(details, fmt.Sprintf("healed at %.3fs", secs(h.Time)))
				if h.Error != "" {
					details = append(details, "heal failed: "+h.Error)
				}
			} else {
				a.End = max(end, e.Time)
				details = append(details, "never healed")
			}
		}
		if e.Grudge != nil && len(e.Grudge.Components) > 0 {
			details = append(details, fmt.Sprintf("components %v", e.Grudge.Components))
		}
		a.Details = strings.Join(details, "; ")
		out = append(out, a)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Start < out[j].Start })
	return out
}
