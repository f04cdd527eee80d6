package histories

import "slices"

// decoder reads a key's state back into the writes that made it. On a key
// with appends, a state is a base (the value of the last put or swapped
// cas, or "" when appends started from an absent key) followed by the
// appended values in the order they were applied. When every parse of a
// value as base + appended values (over the key's put and cas values and
// its append values) is the same one, that parse is what happened: the
// real state was made by some such sequence, and there is only one. See
// doc.go, "Appends".
type decoder struct {
	bases    map[string]int32 // put and cas values -> index of the writer (multiWriter if several)
	tokens   map[string]int32 // append values -> index of the append (multiWriter if several)
	baseLens []int            // distinct lengths of bases, ascending
	tokLens  []int            // distinct lengths of tokens, ascending
	// usable is false when some append value is "" (it would parse
	// anywhere, any number of times): no value decodes then.
	usable bool
	// parses is how many parses the last decode found, capped at 2.
	parses int
	ways   []uint8 // scratch: parses of s[i:] as tokens, capped at 2
	step   []int32 // scratch: length of the token that starts the parse at i
}

// multiWriter marks a value written by more than one operation: it does
// not name its writer.
const multiWriter = -2

// newDecoder indexes the written values of one key's operations.
func newDecoder(ops []Operation) *decoder {
	d := &decoder{bases: map[string]int32{}, tokens: map[string]int32{}, usable: true}
	add := func(m map[string]int32, v string, i int) {
		if _, dup := m[v]; dup {
			m[v] = multiWriter
		} else {
			m[v] = int32(i)
		}
	}
	for i, op := range ops {
		switch op.Op {
		case Put, CAS:
			if op.Op == CAS && op.Outcome == OK && !op.Swapped {
				continue // certainly wrote nothing
			}
			add(d.bases, op.Value, i)
		case Append:
			if op.Value == "" {
				d.usable = false
			}
			add(d.tokens, op.Value, i)
		}
	}
	d.baseLens = lengths(d.bases)
	d.tokLens = lengths(d.tokens)
	return d
}

func lengths(m map[string]int32) []int {
	seen := map[int]bool{}
	var out []int
	for v := range m {
		if !seen[len(v)] {
			seen[len(v)] = true
			out = append(out, len(v))
		}
	}
	slices.Sort(out)
	return out
}

// parse is a decoded state: base, then the appended values in order. The
// strings are substrings of the decoded value.
type parse struct {
	base   string
	tokens []string
}

// decode returns the one parse of s, or false when s has none (no write
// could have made it: the search will refute the observer) or several. The
// returned tokens slice is reused by the next call.
func (d *decoder) decode(s string, tokens []string) (parse, bool) {
	d.parses = 2
	if !d.usable {
		return parse{}, false
	}
	if len(d.tokLens) == 0 {
		// Puts and cas only: the state is a base.
		_, ok := d.bases[s]
		d.parses = 0
		if ok || s == "" {
			d.parses = 1
		}
		return parse{base: s, tokens: tokens[:0]}, d.parses == 1
	}
	n := len(s)
	if cap(d.ways) < n+1 {
		d.ways = make([]uint8, n+1)
		d.step = make([]int32, n+1)
	}
	ways, step := d.ways[:n+1], d.step[:n+1]
	ways[n] = 1
	for i := n - 1; i >= 0; i-- {
		ways[i], step[i] = 0, 0
		for _, l := range d.tokLens {
			if i+l > n {
				break
			}
			if ways[i+l] == 0 {
				continue
			}
			if _, ok := d.tokens[s[i:i+l]]; ok {
				ways[i] = min(2, ways[i]+ways[i+l])
				step[i] = int32(l)
			}
		}
	}
	total, start := int(ways[0]), 0 // base "" (appends from an absent key, or a put of "")
	for _, l := range d.baseLens {
		if l == 0 || l > n || ways[l] == 0 {
			continue
		}
		if _, ok := d.bases[s[:l]]; ok {
			total += int(ways[l])
			start = l
		}
	}
	d.parses = min(total, 2)
	if total != 1 {
		return parse{}, false
	}
	p := parse{base: s[:start], tokens: tokens[:0]}
	for i := start; i < n; i += int(step[i]) {
		p.tokens = append(p.tokens, s[i:i+int(step[i])])
	}
	return p, true
}
