package nemesis

import (
	"errors"
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"sync"
	"time"
)

// Endpoint names: every party on the proxied network has one.
const (
	ClientEndpoint = "client" // the workload's clients
	nodePrefix     = "n"
	zkPrefix       = "zk"
)

// NodeEndpoint is the endpoint name of store node id ("n1").
func NodeEndpoint(id int) string { return fmt.Sprintf("%s%d", nodePrefix, id) }

// ZKEndpoint is the endpoint name of ZooKeeper server id ("zk1").
func ZKEndpoint(id int) string { return fmt.Sprintf("%s%d", zkPrefix, id) }

// IsZKEndpoint reports whether e names a ZooKeeper server.
func IsZKEndpoint(e string) bool {
	if !strings.HasPrefix(e, zkPrefix) || len(e) == len(zkPrefix) {
		return false
	}
	for _, r := range e[len(zkPrefix):] {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// Link is one directed dialing relation: From opens connections to To. The
// traffic of such a connection flows both ways, Up (From → To) and Down
// (To → From), through the link's one proxy.
type Link struct {
	From string `json:"from"`
	To   string `json:"to"`
}

func (l Link) String() string { return l.From + "->" + l.To }

// Cut drops every message from endpoint From to endpoint To, whichever side
// dialed: it blackholes Up on the link From→To and Down on the link To→From.
// A symmetric partition is a pair of cuts.
type Cut struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// ErrNoLink is returned for a link the network has no proxy for.
var ErrNoLink = errors.New("nemesis: no such link")

// Network is the set of proxies a cluster's connections go through, one per
// link, and the cuts and delays currently applied to them. Faults add and
// remove cuts by reference count, so two overlapping partitions that both cut
// n1→n2 leave it cut until both are healed.
type Network struct {
	mu      sync.Mutex
	proxies map[Link]*Proxy
	cuts    map[Cut]int
	delays  map[Link][]time.Duration // multiset: the largest applies
	closed  bool
	// enforcer, when set, carries cuts and delays instead of proxies: the
	// links in enforced have no proxy (kernel rules on separate hosts).
	enforcer Enforcer
	enforced map[Link]bool
	noDelay  error
}

// Enforcer applies a network's cuts and delays where its links have no
// proxies: firewall rules on the hosts the parties run on. It gets the
// whole state after every change (cuts in force, and the largest delay of
// each delayed link) and must make it so before returning.
type Enforcer interface {
	Enforce(cuts []Cut, delays map[Link]time.Duration) error
}

// Enforce makes links proxy-free links of n whose cuts and delays e
// applies; noDelay, when set, is why delay faults cannot be applied (the
// hosts' kernels lack netem) and DelayUnsupported returns it.
func (n *Network) Enforce(e Enforcer, links []Link, noDelay error) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return ErrProxyClosed
	}
	if n.enforced == nil {
		n.enforced = map[Link]bool{}
	}
	for _, l := range links {
		if _, dup := n.proxies[l]; dup || n.enforced[l] {
			return fmt.Errorf("nemesis: link %s added twice", l)
		}
		n.enforced[l] = true
	}
	n.enforcer, n.noDelay = e, noDelay
	n.applyAllLocked()
	return nil
}

// DelayUnsupported is why delay faults cannot be applied on n, or nil.
func (n *Network) DelayUnsupported() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.noDelay
}

// NewNetwork returns an empty network.
func NewNetwork() *Network {
	return &Network{
		proxies: map[Link]*Proxy{},
		cuts:    map[Cut]int{},
		delays:  map[Link][]time.Duration{},
	}
}

// Add starts a proxy for link on a free loopback port, forwarding to target,
// and returns it: From must dial proxy.Addr() to reach To. Cuts already in
// force apply to it at once.
func (n *Network) Add(link Link, target string) (*Proxy, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, ErrProxyClosed
	}
	if _, dup := n.proxies[link]; dup {
		return nil, fmt.Errorf("nemesis: link %s added twice", link)
	}
	p, err := NewProxy("127.0.0.1:0", target)
	if err != nil {
		return nil, err
	}
	n.proxies[link] = p
	n.applyLocked(link, p)
	return p, nil
}

// Proxy returns the proxy of link, or nil.
func (n *Network) Proxy(link Link) *Proxy {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proxies[link]
}

// Addr returns the address From must dial to reach To through the network.
func (n *Network) Addr(from, to string) (string, error) {
	p := n.Proxy(Link{From: from, To: to})
	if p == nil {
		return "", fmt.Errorf("%w: %s->%s", ErrNoLink, from, to)
	}
	return p.Addr(), nil
}

// Links lists the network's links, sorted.
func (n *Network) Links() []Link {
	n.mu.Lock()
	defer n.mu.Unlock()
	links := make([]Link, 0, len(n.proxies)+len(n.enforced))
	for l := range n.proxies {
		links = append(links, l)
	}
	for l := range n.enforced {
		links = append(links, l)
	}
	sort.Slice(links, func(i, j int) bool {
		if links[i].From != links[j].From {
			return links[i].From < links[j].From
		}
		return links[i].To < links[j].To
	})
	return links
}

// Endpoints lists every endpoint named by a link, sorted.
func (n *Network) Endpoints() []string {
	seen := map[string]bool{}
	for _, l := range n.Links() {
		seen[l.From], seen[l.To] = true, true
	}
	out := make([]string, 0, len(seen))
	for e := range seen {
		out = append(out, e)
	}
	sort.Strings(out)
	return out
}

// Cut applies cuts (each one reference).
func (n *Network) Cut(cuts []Cut) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, c := range cuts {
		n.cuts[c]++
	}
	n.applyAllLocked()
}

// Uncut removes one reference to each of cuts; a cut no longer referenced
// heals.
func (n *Network) Uncut(cuts []Cut) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, c := range cuts {
		switch n.cuts[c] {
		case 0:
		case 1:
			delete(n.cuts, c)
		default:
			n.cuts[c]--
		}
	}
	n.applyAllLocked()
}

// IsCut reports whether messages from one endpoint to another are dropped.
func (n *Network) IsCut(from, to string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cuts[Cut{From: from, To: to}] > 0
}

// AddDelay delays links by d (one reference each; the largest delay in force
// on a link applies).
func (n *Network) AddDelay(links []Link, d time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, l := range links {
		n.delays[l] = append(n.delays[l], d)
	}
	n.applyAllLocked()
}

// RemoveDelay removes one reference to delay d from each of links.
func (n *Network) RemoveDelay(links []Link, d time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, l := range links {
		ds := n.delays[l]
		for i, x := range ds {
			if x == d {
				ds = append(ds[:i], ds[i+1:]...)
				break
			}
		}
		if len(ds) == 0 {
			delete(n.delays, l)
		} else {
			n.delays[l] = ds
		}
	}
	n.applyAllLocked()
}

// HealAll drops every cut and delay.
func (n *Network) HealAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cuts = map[Cut]int{}
	n.delays = map[Link][]time.Duration{}
	n.applyAllLocked()
}

// Close closes every proxy and waits for their goroutines.
func (n *Network) Close() error {
	n.mu.Lock()
	n.closed = true
	ps := make([]*Proxy, 0, len(n.proxies))
	for _, p := range n.proxies {
		ps = append(ps, p)
	}
	n.mu.Unlock()
	var errs []error
	for _, p := range ps {
		if err := p.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (n *Network) applyAllLocked() {
	for l, p := range n.proxies {
		n.applyLocked(l, p)
	}
	if n.enforcer != nil {
		cuts := make([]Cut, 0, len(n.cuts))
		for c, refs := range n.cuts {
			if refs > 0 {
				cuts = append(cuts, c)
			}
		}
		sort.Slice(cuts, func(i, j int) bool {
			if cuts[i].From != cuts[j].From {
				return cuts[i].From < cuts[j].From
			}
			return cuts[i].To < cuts[j].To
		})
		delays := map[Link]time.Duration{}
		for l, ds := range n.delays {
			for _, d := range ds {
				delays[l] = max(delays[l], d)
			}
		}
		// The enforcer keeps its own record of a failure (a host that did
		// not take a rule): the cluster reports it as unplanned.
		_ = n.enforcer.Enforce(cuts, delays)
	}
}

func (n *Network) applyLocked(l Link, p *Proxy) {
	var holes Direction
	if n.cuts[Cut{From: l.From, To: l.To}] > 0 {
		holes |= Up
	}
	if n.cuts[Cut{From: l.To, To: l.From}] > 0 {
		holes |= Down
	}
	if p.Blackholed() != holes {
		p.SetBlackhole(holes)
	}
	var d time.Duration
	for _, x := range n.delays[l] {
		d = max(d, x)
	}
	if p.Delay() != d {
		p.SetDelay(d)
	}
}

// Partition shapes, after Jepsen's.
const (
	ShapeIsolate        = "isolate"         // the target nodes (one random node by default) vs the rest
	ShapeHalves         = "halves"          // the first ⌊n/2⌋ nodes vs the rest
	ShapeRandomHalves   = "random-halves"   // halves of a seeded shuffle
	ShapeMajoritiesRing = "majorities-ring" // every node sees a majority, no two the same
	ShapeBridge         = "bridge"          // two halves joined by one node that sees both
)

// Shapes lists the partition shapes.
var Shapes = []string{ShapeIsolate, ShapeHalves, ShapeRandomHalves, ShapeMajoritiesRing, ShapeBridge}

// ErrBadShape is returned for an unknown partition shape or one the node set
// is too small for.
var ErrBadShape = errors.New("nemesis: bad partition shape")

// Grudge is a computed partition: for each node, the nodes whose messages it
// drops. Components lists the groups for display when the shape has them.
type Grudge struct {
	Drops      map[int][]int `json:"drops"`
	Components [][]int       `json:"components,omitempty"`
}

// Cuts turns the grudge into endpoint cuts between store nodes.
func (g Grudge) Cuts() []Cut {
	var cuts []Cut
	tos := make([]int, 0, len(g.Drops))
	for to := range g.Drops {
		tos = append(tos, to)
	}
	sort.Ints(tos)
	for _, to := range tos {
		for _, from := range g.Drops[to] {
			cuts = append(cuts, Cut{From: NodeEndpoint(from), To: NodeEndpoint(to)})
		}
	}
	return cuts
}

// PartitionGrudge computes shape over nodes. isolate names the nodes of an
// isolate partition (empty: one node chosen by rng); rng drives every random
// choice, so the same seed gives the same grudge.
func PartitionGrudge(shape string, nodes, isolate []int, rng *rand.Rand) (Grudge, error) {
	ns := append([]int(nil), nodes...)
	sort.Ints(ns)
	if len(ns) < 2 {
		return Grudge{}, fmt.Errorf("%w: %s needs at least 2 nodes, have %d", ErrBadShape, shape, len(ns))
	}
	switch shape {
	case ShapeIsolate:
		in := map[int]bool{}
		for _, x := range isolate {
			in[x] = true
		}
		if len(in) == 0 {
			in[ns[rng.Intn(len(ns))]] = true
		}
		var a, b []int
		for _, x := range ns {
			if in[x] {
				a = append(a, x)
			} else {
				b = append(b, x)
			}
		}
		if len(a) == 0 || len(b) == 0 {
			return Grudge{}, fmt.Errorf("%w: isolating %v from %v leaves one side empty", ErrBadShape, isolate, ns)
		}
		return complete(a, b), nil
	case ShapeHalves:
		h := len(ns) / 2
		return complete(ns[:h], ns[h:]), nil
	case ShapeRandomHalves:
		rng.Shuffle(len(ns), func(i, j int) { ns[i], ns[j] = ns[j], ns[i] })
		h := len(ns) / 2
		return complete(sorted(ns[:h]), sorted(ns[h:])), nil
	case ShapeBridge:
		if len(ns) < 3 {
			return Grudge{}, fmt.Errorf("%w: bridge needs at least 3 nodes", ErrBadShape)
		}
		rng.Shuffle(len(ns), func(i, j int) { ns[i], ns[j] = ns[j], ns[i] })
		h := len(ns) / 2
		a, b := sorted(ns[:h]), sorted(ns[h+1:])
		bridge := ns[h]
		g := complete(a, b)
		g.Components = [][]int{sorted(append(append([]int(nil), a...), bridge)), sorted(append(append([]int(nil), b...), bridge))}
		return g, nil
	case ShapeMajoritiesRing:
		return majoritiesRing(ns, rng), nil
	}
	return Grudge{}, fmt.Errorf("%w: %q (known: %v)", ErrBadShape, shape, Shapes)
}

// majoritiesRing lays the nodes on a shuffled ring; node i sees the window of
// a majority of nodes centred on it and drops everything from outside. With
// five nodes each node sees its two neighbours, every node sees a majority,
// and no two nodes see the same one. The grudge is directional where the
// windows are not symmetric (three or four nodes), as in Jepsen.
func majoritiesRing(ns []int, rng *rand.Rand) Grudge {
	rng.Shuffle(len(ns), func(i, j int) { ns[i], ns[j] = ns[j], ns[i] })
	n := len(ns)
	m := n/2 + 1
	g := Grudge{Drops: map[int][]int{}}
	for i := 0; i < n; i++ {
		window := map[int]bool{}
		for k := 0; k < m; k++ {
			window[ns[(i+k)%n]] = true
		}
		centre := ns[(i+m/2)%n]
		var drops []int
		for _, x := range ns {
			if !window[x] {
				drops = append(drops, x)
			}
		}
		if len(drops) > 0 {
			g.Drops[centre] = sorted(drops)
		}
	}
	return g
}

// complete cuts every node of a from every node of b, both ways.
func complete(a, b []int) Grudge {
	g := Grudge{Drops: map[int][]int{}, Components: [][]int{append([]int(nil), a...), append([]int(nil), b...)}}
	for _, x := range a {
		g.Drops[x] = append([]int(nil), b...)
	}
	for _, y := range b {
		g.Drops[y] = append([]int(nil), a...)
	}
	return g
}

func sorted(xs []int) []int {
	out := append([]int(nil), xs...)
	sort.Ints(out)
	return out
}
