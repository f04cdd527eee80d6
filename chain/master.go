package chain

import (
	"context"
	"encoding/json"
	"errors"
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
}

func newMaster(c *coordinator, el *zkrecipes.Election) *master {
	return &master{c: c, el: el, armed: map[string]bool{}, firedc: make(chan string, 64), stopc: make(chan struct{})}
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
	for {
		m.reconcile()
		select {
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
	if m.armed[NodesPath] {
		kids, _, err = conn.Children(NodesPath)
	} else {
		var ch <-chan zk.Event
		kids, _, ch, err = conn.ChildrenW(NodesPath)
		if err == nil {
			m.watch(NodesPath, ch)
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
		b, _, err := m.get(NodePath(id))
		if err != nil {
			continue // gone meanwhile
		}
		var ln LiveNode
		if json.Unmarshal(b, &ln) == nil {
			live[id] = ln
		}
	}
	p := m.c.cfg.Placement
	for i := 0; i < p.Chains; i++ {
		path := ChainPath(i)
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
		next, changed := Reconcile(cur, p.Members(i), live)
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
		logf("master: chain %d epoch %d members %v joining %v", i, next.Epoch, next.Members, next.Joining)
	}
}
