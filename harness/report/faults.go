package report

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// Band is one fault drawn on the time axis: from its inject to its heal, in
// seconds since the run's start. A fault never healed in the log runs to
// the end of the run (Open); an event with no duration (a restart, a role
// change) has End == Start.
type Band struct {
	Start, End float64
	Kind       string
	Shape      string // partition shape, when the log gives it
	Role       string
	Targets    []string
	Open       bool
	// NotApplied: the inject was skipped (the store cannot do this fault)
	// or failed, so nothing happened; listed, never drawn.
	NotApplied bool
	Error      string // the inject's or heal's error, if any
	lane       int    // vertical slot of the label among overlapping bands
}

// Label is the band's text on the charts, in the nemesis log's own words:
// "kill n2 (leader)", "partition majorities-ring n1,n2".
func (b Band) Label() string {
	s := b.Kind
	if b.Shape != "" {
		s += " " + b.Shape
	}
	if len(b.Targets) > 0 {
		s += " " + strings.Join(b.Targets, ",")
	}
	if b.Role != "" && !(len(b.Targets) == 1 && strings.HasPrefix(b.Role, "node:") && "n"+strings.TrimPrefix(b.Role, "node:") == b.Targets[0]) {
		s += " (" + b.Role + ")"
	}
	return s
}

// nemesisEvent is one line of nemesis.jsonl, read tolerantly: the field
// names of the nemesis log are accepted under the few spellings a log of
// faults naturally uses, so the report keeps working as the log grows.
type nemesisEvent struct {
	time    int64 // ns since the run's start
	kind    string
	shape   string
	event   string // inject, heal, or something instantaneous
	role    string
	targets []string
	id      string // the schedule step, pairing a heal with its inject
	err     string
	skipped bool
}

func firstString(m map[string]json.RawMessage, names ...string) string {
	for _, n := range names {
		var s string
		if raw, ok := m[n]; ok && json.Unmarshal(raw, &s) == nil && s != "" {
			return s
		}
		var num json.Number
		if raw, ok := m[n]; ok && json.Unmarshal(raw, &num) == nil {
			return num.String()
		}
	}
	return ""
}

func decodeNemesisEvent(line []byte) (nemesisEvent, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(line, &m); err != nil {
		return nemesisEvent{}, err
	}
	var e nemesisEvent
	found := false
	for _, n := range []string{"time", "time_ns", "at", "t"} {
		if raw, ok := m[n]; ok {
			var f float64
			if json.Unmarshal(raw, &f) == nil {
				e.time, found = int64(f), true
				break
			}
		}
	}
	if !found {
		return e, errors.New("no time")
	}
	e.kind = firstString(m, "fault", "kind", "type", "name")
	if e.kind == "" {
		e.kind = "fault"
	}
	e.event = strings.ToLower(firstString(m, "event", "action", "phase", "op"))
	e.role = firstString(m, "role")
	e.id = firstString(m, "step", "id", "fault_id", "seq")
	e.err = firstString(m, "error")
	_ = json.Unmarshal(m["skipped"], &e.skipped)
	if raw, ok := m["spec"]; ok {
		var spec struct {
			Shape string `json:"shape"`
		}
		_ = json.Unmarshal(raw, &spec)
		e.shape = spec.Shape
	}
	// Targets are node ids (numbers: n<id>, or zk<id> for ZooKeeper
	// faults) or names.
	prefix := "n"
	if strings.HasPrefix(e.kind, "zk") {
		prefix = "zk"
	}
	for _, n := range []string{"targets", "target", "nodes", "node"} {
		raw, ok := m[n]
		if !ok {
			continue
		}
		var list []any
		var one any
		if json.Unmarshal(raw, &list) != nil {
			if json.Unmarshal(raw, &one) != nil {
				break
			}
			list = []any{one}
		}
		for _, t := range list {
			switch t := t.(type) {
			case float64:
				e.targets = append(e.targets, fmt.Sprintf("%s%d", prefix, int64(t)))
			case string:
				e.targets = append(e.targets, t)
			}
		}
		break
	}
	return e, nil
}

func isInject(ev string) bool {
	switch ev {
	case "inject", "start", "begin", "on":
		return true
	}
	return false
}

func isHeal(ev string) bool {
	switch ev {
	case "heal", "stop", "end", "off", "recover":
		return true
	}
	return false
}

// ReadBands reads <path> (nemesis.jsonl) and pairs each heal with its
// inject: by fault id when the log has one, otherwise with the oldest open
// inject of the same kind and targets, otherwise of the same kind. endS is
// the end of the run, where unhealed faults stop. A missing file is no
// faults; malformed lines are counted and skipped.
func ReadBands(path string, endS float64) (bands []Band, malformed int, err error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	var events []nemesisEvent
	br := bufio.NewReader(f)
	for {
		line, rerr := br.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			if e, derr := decodeNemesisEvent(line); derr != nil {
				malformed++
			} else {
				events = append(events, e)
			}
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return nil, malformed, fmt.Errorf("read nemesis log: %w", rerr)
		}
	}
	return pairBands(events, endS), malformed, nil
}

func pairBands(events []nemesisEvent, endS float64) []Band {
	sort.SliceStable(events, func(i, j int) bool { return events[i].time < events[j].time })
	var open []int // indices into bands still waiting for a heal
	var openIDs []string
	var bands []Band
	sameTargets := func(a, b []string) bool { return strings.Join(a, ",") == strings.Join(b, ",") }
	for _, e := range events {
		at := float64(e.time) / 1e9
		switch {
		case isInject(e.event) && (e.skipped || e.err != ""):
			// Nothing was applied and no heal follows.
			bands = append(bands, Band{Start: at, End: at, Kind: e.kind, Shape: e.shape, Role: e.role,
				Targets: e.targets, NotApplied: true, Error: e.err})
		case isInject(e.event):
			bands = append(bands, Band{Start: at, End: endS, Kind: e.kind, Shape: e.shape, Role: e.role, Targets: e.targets, Open: true})
			open = append(open, len(bands)-1)
			openIDs = append(openIDs, e.id)
		case isHeal(e.event):
			match := -1
			for i := range open { // by id
				if e.id != "" && openIDs[i] == e.id {
					match = i
					break
				}
			}
			for i, bi := range open { // by kind and targets
				if match < 0 && bands[bi].Kind == e.kind && (len(e.targets) == 0 || sameTargets(bands[bi].Targets, e.targets)) {
					match = i
				}
			}
			for i, bi := range open { // by kind
				if match < 0 && bands[bi].Kind == e.kind {
					match = i
				}
			}
			if match < 0 { // a heal of nothing we saw: mark the instant
				bands = append(bands, Band{Start: at, End: at, Kind: e.kind + " heal", Role: e.role, Targets: e.targets})
				continue
			}
			b := &bands[open[match]]
			b.End, b.Open = max(at, b.Start), false
			if e.err != "" {
				b.Error = "heal: " + e.err
			}
			open = append(open[:match], open[match+1:]...)
			openIDs = append(openIDs[:match], openIDs[match+1:]...)
		default:
			bands = append(bands, Band{Start: at, End: at, Kind: strings.TrimSpace(e.kind + " " + e.event), Role: e.role, Targets: e.targets})
		}
	}
	for i := range bands {
		if bands[i].Open && bands[i].End < bands[i].Start {
			bands[i].End = bands[i].Start
		}
	}
	return bands
}

// applied are the bands that happened: the ones the charts draw.
func applied(bands []Band) []Band {
	var out []Band
	for _, b := range bands {
		if !b.NotApplied {
			out = append(out, b)
		}
	}
	return out
}

// assignLanes gives overlapping bands (or labels wider than their band;
// labelSpan says where a band's label lies on the time axis) different
// label rows, so labels of concurrent faults do not print over each other.
// It returns the number of lanes.
func assignLanes(bands []Band, labelSpan func(Band) (from, to float64)) int {
	var laneEnd []float64
	for i := range bands {
		from, to := labelSpan(bands[i])
		from = min(from, bands[i].Start)
		reach := max(bands[i].End, to)
		placed := false
		for l, end := range laneEnd {
			if from > end {
				bands[i].lane, laneEnd[l], placed = l, reach, true
				break
			}
		}
		if !placed {
			bands[i].lane = len(laneEnd)
			laneEnd = append(laneEnd, reach)
		}
	}
	return len(laneEnd)
}
