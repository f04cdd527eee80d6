package histories

import (
	"unicode/utf8"
)

// fastLine parses the lines the Writer makes, and any line as plain: one
// JSON object, no whitespace, only the format's field names, each once,
// spelled exactly; strings without escapes or control characters; integers
// without fraction or exponent; no null. It fills l as encoding/json would
// and reports true, or reports false and leaves the line to encoding/json
// (decodeLine), which then decides it, error messages included. So the
// fast path never changes what a line means; it only skips reflection,
// which was most of the cost of reading a long history (a differential
// fuzz test holds the two paths together). vals holds the values l's
// pointers point to; intern shares repeated texts (keys, nodes).
func fastLine(raw []byte, l *line, vals *fastVals, intern func([]byte) string) bool {
	p := fastParser{b: raw}
	if !p.eat('{') {
		return false
	}
	seen := 0
	for {
		name, ok := p.str()
		if !ok || !p.eat(':') {
			return false
		}
		bit := 0
		switch string(name) {
		case "client":
			bit = 1 << 0
			n, ok := p.int()
			if !ok || n != int64(int(n)) {
				return false
			}
			vals.client, l.Client = int(n), &vals.client
		case "op":
			bit = 1 << 1
			s, ok := p.str()
			if !ok {
				return false
			}
			vals.op, l.Op = constOr(s, intern), &vals.op
		case "key":
			bit = 1 << 2
			s, ok := p.str()
			if !ok {
				return false
			}
			vals.key, l.Key = data(intern(s)), &vals.key
		case "value":
			bit = 1 << 3
			s, ok := p.str()
			if !ok {
				return false
			}
			vals.value, l.Value = data(s), &vals.value
		case "expect":
			bit = 1 << 4
			s, ok := p.str()
			if !ok {
				return false
			}
			vals.expect, l.Expect = data(s), &vals.expect
		case "call":
			bit = 1 << 5
			n, ok := p.int()
			if !ok {
				return false
			}
			vals.call, l.Call = n, &vals.call
		case "return":
			bit = 1 << 6
			n, ok := p.int()
			if !ok {
				return false
			}
			vals.ret, l.Return = n, &vals.ret
		case "outcome":
			bit = 1 << 7
			s, ok := p.str()
			if !ok {
				return false
			}
			vals.outcome, l.Outcome = constOr(s, intern), &vals.outcome
		case "found":
			bit = 1 << 8
			b, ok := p.bool()
			if !ok {
				return false
			}
			vals.found, l.Found = b, &vals.found
		case "output":
			bit = 1 << 9
			s, ok := p.str()
			if !ok {
				return false
			}
			vals.output, l.Output = data(s), &vals.output
		case "swapped":
			bit = 1 << 10
			b, ok := p.bool()
			if !ok {
				return false
			}
			vals.swapped, l.Swapped = b, &vals.swapped
		case "node":
			bit = 1 << 11
			s, ok := p.str()
			if !ok {
				return false
			}
			vals.node, l.Node = intern(s), &vals.node
		case "error":
			bit = 1 << 12
			s, ok := p.str()
			if !ok {
				return false
			}
			vals.err, l.Error = intern(s), &vals.err
		default:
			return false // an unknown field, or another spelling: encoding/json decides
		}
		if seen&bit != 0 {
			return false // a repeated field: encoding/json keeps the last
		}
		seen |= bit
		if p.eat('}') {
			return p.i == len(p.b)
		}
		if !p.eat(',') {
			return false
		}
	}
}

// fastVals backs the pointers fastLine puts in a line.
type fastVals struct {
	client                     int
	op, outcome, node, err     string
	key, value, expect, output data
	call, ret                  int64
	found, swapped             bool
}

// constOr returns the constant spelling of an op or outcome, avoiding an
// allocation per line.
func constOr(s []byte, intern func([]byte) string) string {
	switch string(s) {
	case "get":
		return string(Get)
	case "put":
		return string(Put)
	case "append":
		return string(Append)
	case "cas":
		return string(CAS)
	case "ok":
		return string(OK)
	case "fail":
		return string(Fail)
	case "info":
		return string(Info)
	case "invoke":
		return string(Invoke)
	}
	return intern(s)
}

type fastParser struct {
	b []byte
	i int
}

func (p *fastParser) eat(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// str reads a string without escapes or control characters, in valid
// UTF-8 (encoding/json would replace invalid bytes).
func (p *fastParser) str() ([]byte, bool) {
	if !p.eat('"') {
		return nil, false
	}
	start := p.i
	ascii := true
	for ; p.i < len(p.b); p.i++ {
		c := p.b[p.i]
		switch {
		case c == '"':
			s := p.b[start:p.i]
			p.i++
			if !ascii && !utf8.Valid(s) {
				return nil, false
			}
			return s, true
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, false
}

// int reads -?(0|[1-9][0-9]*) of at most 18 digits, which cannot overflow.
func (p *fastParser) int() (int64, bool) {
	neg := p.eat('-')
	start := p.i
	var n int64
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		n = n*10 + int64(p.b[p.i]-'0')
		p.i++
	}
	digits := p.i - start
	if digits == 0 || digits > 18 || (digits > 1 && p.b[start] == '0') {
		return 0, false
	}
	if p.i < len(p.b) && (p.b[p.i] == '.' || p.b[p.i] == 'e' || p.b[p.i] == 'E') {
		return 0, false
	}
	if neg {
		n = -n
	}
	return n, true
}

func (p *fastParser) bool() (bool, bool) {
	switch {
	case len(p.b)-p.i >= 4 && string(p.b[p.i:p.i+4]) == "true":
		p.i += 4
		return true, true
	case len(p.b)-p.i >= 5 && string(p.b[p.i:p.i+5]) == "false":
		p.i += 5
		return false, true
	}
	return false, false
}
