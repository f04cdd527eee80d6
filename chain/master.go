package chain

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/chainraft/chainraft/zkrecipes"
)

// masterPoll is the master's fallback re-read period; watches make it react
// sooner.
const masterPoll = time.Second

// master is the elected node's configuration loop. It reads the registered
// nodes and every chain's configuration, runs Reconcile, and writes each
// changed configuration with a Multi that also checks the master's own
// election znode: once this master is deposed (its session expired, its
// znode gone) no write of its can land.
type master struct {
	c  *coordinator
	el *zkrecipes.Election

	armed  map[string]bool
	firedc chan string
	stopc  chan struct{}
	wg     sync.WaitGroup

	// det is the data-path failure policy's memory (detect.go); lastCover
	// and lastLinks are what was last logged.
	det       *detector
	lastCover []uint64
	lastLinks []Link
	// wake is when the policy's decision may change by time alone (a
	// reported link settling, a hold running out); zero: never.
	wake time.Time
}

func newMaster(c *coordinator, el *zkrecipes.Election) *master {
	return &master{c: c, el: el, armed: map[string]bool{}, firedc: make(chan string, 64), stopc: make(chan struct{}),
		det: newDetector()}
}

// close stops the watch forwarders.
func (m *master) close() {
	close(m.stopc)
	m.wg.Wait()
}

func (m *master) run(ctx context.Context) {
	defer m.close()
	t := time.NewTicker(masterPoll)
	defer t.Stop()
	wakeT := time.NewTimer(time.Hour)
	defer wakeT.Stop()
	for {
		m.reconcile()
		wakeT.Stop()
		var wakec <-chan time.Time
		if !m.wake.IsZero() {
			wakeT.Reset(max(time.Until(m.wake), time.Millisecond))
			wakec = wakeT.C
		}
		select {
		case <-wakec:
		case p := <-m.firedc:
			m.armed[p] = false
		drain:
			for {
				select {
				case p := <-m.firedc:
					m.armed[p] = false
				default:
					break drain
				}
			}
		case <-t.C:
		case <-m.el.Lost():
			return
		case <-ctx.Done():
			return
		}
	}
}

// watch remembers a one-shot watch so the next read of path does not arm
// another until it fired.
func (m *master) watch(path string, ch <-chan zk.Event) {
	m.armed[path] = true
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		select {
		case <-ch:
		case <-m.stopc:
			return
		}
		select {
		case m.firedc <- path:
		case <-m.stopc:
		}
	}()
}

func (m *master) get(path string) ([]byte, *zk.Stat, error) {
	if m.armed[path] {
		return m.c.conn.Get(path)
	}
	b, st, ch, err := m.c.conn.GetW(path)
	if err == nil {
		m.watch(path, ch)
	}
	return b, st, err
}

func (m *master) reconcile() {
	conn, logf := m.c.conn, m.c.cfg.Logf
	var kids []string
	var err error
	if m.armed[m.c.paths.Nodes()] {
		kids, _, err = conn.Children(m.c.paths.Nodes())
	} else {
		var ch <-chan zk.Event
		kids, _, ch, err = conn.ChildrenW(m.c.paths.Nodes())
		if err == nil {
			m.watch(m.c.paths.Nodes(), ch)
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
		b, _, err := m.get(m.c.paths.Node(id))
		if err != nil {
			continue // gone meanwhile
		}
		var ln LiveNode
		if json.Unmarshal(b, &ln) == nil {
			live[id] = ln
		}
	}
	dec := m.det.decide(time.Now(), live, m.c.cfg.ID)
	m.wake = dec.wake
	if !slices.Equal(dec.cover, m.lastCover) || !slices.Equal(dec.links, m.lastLinks) {
		logf("master: data path: links reported broken %v, taken out %v, out (with holds) %v", dec.links, dec.cover, dec.out)
		m.lastCover, m.lastLinks = dec.cover, dec.links
	}
	p := m.c.cfg.Placement
	for i := 0; i < p.Chains; i++ {
		path := m.c.paths.Chain(i)
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
		next, changed := ReconcileExcluding(cur, p.Members(i), live, dec.out)
		if !changed {
			continue
		}
		guard := &zk.CheckVersionRequest{Path: m.el.Path(), Version: 0}
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
