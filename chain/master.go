package chain

import (
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"time"

	"github.com/go-zookeeper/zk"
)

// masterPoll is the master's fallback re-read period; watches make it react
// sooner.
const masterPoll = time.Second

// master is the elected node's configuration logic. A round reads the
// registered nodes and every chain's configuration, runs Reconcile, and
// writes each changed configuration with a Multi that also checks the
// master's own election znode (guard): once this master is deposed (its
// session expired, its znode gone) no write of its can land.
//
// It is a state machine stepped by its coordinator (step), never blocked
// waiting: the same code runs in a node process and in the deterministic
// simulator, which is why it reads no clock (the caller passes now) and
// keeps no goroutine (a fired watch is noticed by a non-blocking receive
// on its channel; the caller steps the master again when one fires, by the
// onWatch hook).
type master struct {
	conn  ZKConn
	paths Paths
	id    uint64
	place Placement
	logf  func(format string, args ...any)
	guard string
	// onWatch is told of every watch armed, so the caller can step the
	// master when it fires; nil when the caller needs no telling.
	onWatch func(<-chan zk.Event)

	// armed are the one-shot watches set and not yet seen to fire, by
	// path: a read of an armed path does not arm another.
	armed map[string]<-chan zk.Event

	// det is the data-path failure policy's memory (detect.go); lastCover
	// and lastLinks are what was last logged.
	det       *detector
	lastCover []uint64
	lastLinks []Link
	// wake is when the policy's decision may change by time alone (a
	// reported link settling, a hold running out); zero: never. nextPoll
	// is the next fallback round.
	wake, nextPoll time.Time
}

func newMaster(conn ZKConn, paths Paths, id uint64, place Placement, guard string, logf func(string, ...any)) *master {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	return &master{conn: conn, paths: paths, id: id, place: place, guard: guard, logf: logf,
		armed: map[string]<-chan zk.Event{}, det: newDetector()}
}

// step runs a round if one is due — a watch fired, the poll period passed,
// or the detector's wake came — and returns when the master next needs a
// step if no watch fires first.
func (m *master) step(now time.Time) time.Time {
	fired := false
	for p, ch := range m.armed {
		select {
		case <-ch:
			delete(m.armed, p)
			fired = true
		default:
		}
	}
	if fired || m.nextPoll.IsZero() || !now.Before(m.nextPoll) || (!m.wake.IsZero() && !now.Before(m.wake)) {
		m.reconcile(now)
		m.nextPoll = now.Add(masterPoll)
	}
	if !m.wake.IsZero() && m.wake.Before(m.nextPoll) {
		return m.wake
	}
	return m.nextPoll
}

// watch remembers a one-shot watch so the next read of path does not arm
// another until it fired.
func (m *master) watch(path string, ch <-chan zk.Event) {
	m.armed[path] = ch
	if m.onWatch != nil {
		m.onWatch(ch)
	}
}

func (m *master) get(path string) ([]byte, *zk.Stat, error) {
	if _, ok := m.armed[path]; ok {
		return m.conn.Get(path)
	}
	b, st, ch, err := m.conn.GetW(path)
	if err == nil {
		m.watch(path, ch)
	}
	return b, st, err
}

// reconcile is one round at now.
func (m *master) reconcile(now time.Time) {
	conn, logf := m.conn, m.logf
	var kids []string
	var err error
	if _, ok := m.armed[m.paths.Nodes()]; ok {
		kids, _, err = conn.Children(m.paths.Nodes())
	} else {
		var ch <-chan zk.Event
		kids, _, ch, err = conn.ChildrenW(m.paths.Nodes())
		if err == nil {
			m.watch(m.paths.Nodes(), ch)
		}
	}
	if err != nil {
		logf("master: list nodes: %v", err)
		return
	}
	live := map[uint64]LiveNode{}
	for _, k := range kids {
		id, err := strconv.ParseUint(k, 10, 64)
		if err != nil {
			continue
		}
		b, _, err := m.get(m.paths.Node(id))
		if err != nil {
			continue // gone meanwhile
		}
		var ln LiveNode
		if json.Unmarshal(b, &ln) == nil {
			live[id] = ln
		}
	}
	dec := m.det.decide(now, live, m.id)
	m.wake = dec.wake
	if !slices.Equal(dec.cover, m.lastCover) || !slices.Equal(dec.links, m.lastLinks) {
		logf("master: data path: links reported broken %v, taken out %v, out (with holds) %v", dec.links, dec.cover, dec.out)
		m.lastCover, m.lastLinks = dec.cover, dec.links
	}
	p := m.place
	for i := 0; i < p.Chains; i++ {
		path := m.paths.Chain(i)
		cur := Config{Chain: i}
		b, st, err := m.get(path)
		exists := true
		switch {
		case errors.Is(err, zk.ErrNoNode):
			exists = false
		case err != nil:
			logf("master: read %s: %v", path, err)
			continue
		default:
			if cur, err = DecodeConfig(b); err != nil {
				logf("master: %s: %v", path, err)
				continue
			}
		}
		next, changed := reconcile(cur, p.Members(i), live, dec.out, p.ReadAny)
		if !changed {
			continue
		}
		guard := &zk.CheckVersionRequest{Path: m.guard, Version: 0}
		var op any
		if exists {
			op = &zk.SetDataRequest{Path: path, Data: next.Encode(), Version: st.Version}
		} else {
			op = &zk.CreateRequest{Path: path, Data: next.Encode(), Acl: zk.WorldACL(zk.PermAll), Flags: zk.FlagPersistent}
		}
		if _, err := conn.Multi(guard, op); err != nil {
			logf("master: write %s epoch %d: %v", path, next.Epoch, err)
			continue
		}
		logf("master: chain %d epoch %d members %v joining %v deposed %v", i, next.Epoch, next.Members, next.Joining, next.Deposed)
	}
}
