package sim

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/chainraft/chainraft/chain"
)

// zkServer is a simulated ZooKeeper: one linearizable tree of znodes with
// ZooKeeper's semantics for what the chain's coordination uses — sessions
// that expire when their client has not been heard from for the session
// timeout (deleting their ephemeral znodes and firing the watches on
// them), ephemeral and sequential znodes, one-shot data, existence and
// child watches delivered as go-zookeeper delivers them (one event on a
// channel that is then closed), versioned Set and Delete, and Multi that
// applies all of its operations or none. Each session is a chain.ZKConn, the
// interface *zk.Conn satisfies, so coordination code written against it
// runs here unchanged.
//
// Requests are answered at once on the simulated clock (the simulator's
// network delays the traffic around them); a session cut from the server
// (the nemesis's zk-partition) gets zk.ErrConnectionClosed and is not
// heard, so it expires after its timeout, as a real one would.
type zkServer struct {
	w        *world
	zxid     int64
	nodes    map[string]*znode
	sessions []*zkSession
	nextID   int64
	// pendingExist are existence watches on znodes that do not exist yet.
	pendingExist map[string][]zkWatch
}

// zkWatch is one armed one-shot watch and the session that set it: the
// event wakes that session's owner (zkSession.notify), and the session's
// end fires it with EventNotWatching, as go-zookeeper does.
type zkWatch struct {
	ch    chan zk.Event
	owner *zkSession
}

type znode struct {
	data     []byte
	stat     zk.Stat
	children []string // names, sorted
	seq      int32    // the next sequential child's number
	// One-shot watches, each a channel that gets one event and is closed.
	dataW, childW []zkWatch
}

func newZKServer(w *world) *zkServer {
	s := &zkServer{w: w, nodes: map[string]*znode{"/": {}}, nextID: 0x100, pendingExist: map[string][]zkWatch{}}
	s.scheduleExpiry()
	return s
}

// zkSession is one client's connection, a chain.ZKConn, with its session.
// Like a go-zookeeper Conn it outlives an expired session: once it reaches
// the server again it gets a new session (a new id, no ephemerals, no
// watches) and says so with StateHasSession.
type zkSession struct {
	s         *zkServer
	id        int64
	timeout   time.Duration
	lastHeard int64
	cut       bool // the client cannot reach the server
	silent    bool // the client's process is stopped: the server hears nothing, the client notices nothing
	expired   bool
	closed    bool
	// Events receives the session's state changes (StateDisconnected,
	// StateHasSession, StateExpired), as zk.Connect's channel does.
	Events chan zk.Event
	// notify, if set, is called when a session event is queued or a watch
	// this session set fires: the owner's cue to look (the simulator
	// schedules its coordinator's step).
	notify func()
}

var _ chain.ZKConn = (*zkSession)(nil)

// connect opens a session with the given timeout.
func (s *zkServer) connect(timeout time.Duration) *zkSession {
	s.nextID++
	ss := &zkSession{s: s, id: s.nextID, timeout: timeout, lastHeard: s.w.now, Events: make(chan zk.Event, 64)}
	s.sessions = append(s.sessions, ss)
	ss.event(zk.StateHasSession)
	return ss
}

func (ss *zkSession) event(st zk.State) {
	select {
	case ss.Events <- zk.Event{Type: zk.EventSession, State: st}:
	default:
	}
	if ss.notify != nil {
		ss.notify()
	}
}

// setCut cuts the session from the server or heals the cut.
func (ss *zkSession) setCut(cut bool) {
	if ss.cut == cut || ss.closed {
		return
	}
	ss.cut = cut
	if ss.expired {
		return // the next expiry check renews it
	}
	if cut {
		ss.event(zk.StateDisconnected)
		return
	}
	ss.lastHeard = ss.s.w.now
	ss.event(zk.StateHasSession)
}

// setSilent stops or restarts the client's process: a stopped one sends no
// pings, so the server stops hearing it, and it notices nothing until it
// runs again.
func (ss *zkSession) setSilent(silent bool) {
	ss.silent = silent
	if !silent && !ss.cut && !ss.expired {
		ss.lastHeard = ss.s.w.now
	}
}

// scheduleExpiry checks the sessions every 50 ms of simulated time: a
// connected client pings, so it is heard; one that was not heard for its
// timeout expires.
func (s *zkServer) scheduleExpiry() {
	s.w.after(50*time.Millisecond, func() {
		for _, ss := range s.sessions {
			switch {
			case ss.expired && !ss.closed && !ss.cut && !ss.silent:
				// Back in touch after an expiry: a new session.
				s.nextID++
				ss.id, ss.expired, ss.lastHeard = s.nextID, false, s.w.now
				ss.event(zk.StateHasSession)
			case ss.expired:
			case !ss.cut && !ss.silent && !ss.closed:
				ss.lastHeard = s.w.now
			case ss.closed && !ss.cut:
				// Closed while connected: its znodes went at Close.
			case s.w.now-ss.lastHeard >= int64(ss.timeout):
				// Not heard for its timeout (cut off, or closed while
				// cut off, so the close never arrived).
				ss.expired = true
				s.dropEphemerals(ss.id)
				s.dropWatches(ss)
				ss.event(zk.StateExpired)
			}
		}
		s.scheduleExpiry()
	})
}

// dropEphemerals deletes a session's ephemeral znodes, in path order.
func (s *zkServer) dropEphemerals(owner int64) {
	var paths []string
	for p, n := range s.nodes {
		if n.stat.EphemeralOwner == owner {
			paths = append(paths, p)
		}
	}
	slices.Sort(paths)
	for _, p := range paths {
		_ = s.remove(p, -1, true)
	}
}

func (ss *zkSession) check() error {
	switch {
	case ss.closed:
		return zk.ErrClosing
	case ss.expired:
		return zk.ErrSessionExpired
	case ss.cut:
		return zk.ErrConnectionClosed
	}
	ss.lastHeard = ss.s.w.now
	return nil
}

func parentOf(path string) (string, string) {
	i := strings.LastIndexByte(path, '/')
	if i <= 0 {
		return "/", path[i+1:]
	}
	return path[:i], path[i+1:]
}

func fire(ws *[]zkWatch, typ zk.EventType, path string) {
	fireAll(*ws, zk.Event{Type: typ, Path: path, State: zk.StateHasSession})
	*ws = nil
}

func fireAll(ws []zkWatch, ev zk.Event) {
	for _, wt := range ws {
		wt.ch <- ev
		close(wt.ch)
		if wt.owner.notify != nil {
			wt.owner.notify()
		}
	}
}

func (ss *zkSession) watchChan(ws *[]zkWatch) <-chan zk.Event {
	ch := make(chan zk.Event, 1)
	*ws = append(*ws, zkWatch{ch: ch, owner: ss})
	return ch
}

// dropWatches ends a session's watches, in path order, each with
// EventNotWatching (go-zookeeper's invalidateWatches at an expiry or
// close).
func (s *zkServer) dropWatches(ss *zkSession) {
	var paths []string
	for p := range s.nodes {
		paths = append(paths, p)
	}
	for p := range s.pendingExist {
		if s.nodes[p] == nil {
			paths = append(paths, p)
		}
	}
	slices.Sort(paths)
	take := func(ws *[]zkWatch) []zkWatch {
		var mine []zkWatch
		*ws = slices.DeleteFunc(*ws, func(wt zkWatch) bool {
			if wt.owner == ss {
				mine = append(mine, wt)
				return true
			}
			return false
		})
		return mine
	}
	for _, p := range paths {
		var mine []zkWatch
		if n := s.nodes[p]; n != nil {
			mine = append(take(&n.dataW), take(&n.childW)...)
		}
		if ws, ok := s.pendingExist[p]; ok {
			mine = append(mine, take(&ws)...)
			if len(ws) == 0 {
				delete(s.pendingExist, p)
			} else {
				s.pendingExist[p] = ws
			}
		}
		fireAll(mine, zk.Event{Type: zk.EventNotWatching, Path: p, State: zk.StateDisconnected, Err: zk.ErrSessionExpired})
	}
}

// create adds a znode; fire false is a dry run's, on a copy of the tree.
func (s *zkServer) create(path string, data []byte, flags int32, owner int64, fire_ bool) (string, error) {
	if path == "" || path[0] != '/' || (len(path) > 1 && strings.HasSuffix(path, "/")) {
		return "", zk.ErrInvalidPath
	}
	dir, _ := parentOf(path)
	parent := s.nodes[dir]
	if parent == nil {
		return "", zk.ErrNoNode
	}
	if parent.stat.EphemeralOwner != 0 {
		return "", zk.ErrNoChildrenForEphemerals
	}
	if flags&zk.FlagSequence != 0 {
		path = fmt.Sprintf("%s%010d", path, parent.seq)
		parent.seq++
	}
	if _, ok := s.nodes[path]; ok {
		return "", zk.ErrNodeExists
	}
	s.zxid++
	n := &znode{data: slices.Clone(data), stat: zk.Stat{Czxid: s.zxid, Mzxid: s.zxid, Pzxid: s.zxid, DataLength: int32(len(data))}}
	if flags&zk.FlagEphemeral != 0 {
		n.stat.EphemeralOwner = owner
	}
	s.nodes[path] = n
	_, name := parentOf(path)
	i, _ := slices.BinarySearch(parent.children, name)
	parent.children = slices.Insert(parent.children, i, name)
	parent.stat.Cversion++
	parent.stat.NumChildren++
	parent.stat.Pzxid = s.zxid
	if fire_ {
		if w, ok := s.pendingExist[path]; ok {
			fire(&w, zk.EventNodeCreated, path)
			delete(s.pendingExist, path)
		}
		fire(&parent.childW, zk.EventNodeChildrenChanged, dir)
	}
	return path, nil
}

func (s *zkServer) remove(path string, version int32, fire_ bool) error {
	n := s.nodes[path]
	switch {
	case n == nil || path == "/":
		return zk.ErrNoNode
	case version != -1 && version != n.stat.Version:
		return zk.ErrBadVersion
	case len(n.children) > 0:
		return zk.ErrNotEmpty
	}
	s.zxid++
	delete(s.nodes, path)
	dir, name := parentOf(path)
	parent := s.nodes[dir]
	if i, ok := slices.BinarySearch(parent.children, name); ok {
		parent.children = slices.Delete(parent.children, i, i+1)
	}
	parent.stat.Cversion++
	parent.stat.NumChildren--
	parent.stat.Pzxid = s.zxid
	if fire_ {
		fire(&n.dataW, zk.EventNodeDeleted, path)
		fire(&n.childW, zk.EventNodeDeleted, path)
		fire(&parent.childW, zk.EventNodeChildrenChanged, dir)
	}
	return nil
}

func (s *zkServer) set(path string, data []byte, version int32, fire_ bool) (*zk.Stat, error) {
	n := s.nodes[path]
	switch {
	case n == nil:
		return nil, zk.ErrNoNode
	case version != -1 && version != n.stat.Version:
		return nil, zk.ErrBadVersion
	}
	s.zxid++
	n.data = slices.Clone(data)
	n.stat.Version++
	n.stat.Mzxid = s.zxid
	n.stat.DataLength = int32(len(data))
	if fire_ {
		fire(&n.dataW, zk.EventNodeDataChanged, path)
	}
	st := n.stat
	return &st, nil
}

// Create implements chain.ZKConn.
func (ss *zkSession) Create(path string, data []byte, flags int32, _ []zk.ACL) (string, error) {
	if err := ss.check(); err != nil {
		return "", err
	}
	return ss.s.create(path, data, flags, ss.id, true)
}

// Delete implements chain.ZKConn.
func (ss *zkSession) Delete(path string, version int32) error {
	if err := ss.check(); err != nil {
		return err
	}
	return ss.s.remove(path, version, true)
}

// Exists implements chain.ZKConn.
func (ss *zkSession) Exists(path string) (bool, *zk.Stat, error) {
	if err := ss.check(); err != nil {
		return false, nil, err
	}
	n := ss.s.nodes[path]
	if n == nil {
		return false, &zk.Stat{}, nil
	}
	st := n.stat
	return true, &st, nil
}

// ExistsW implements chain.ZKConn: a data watch on an existing znode, an
// existence watch (fired by its creation) on a missing one.
func (ss *zkSession) ExistsW(path string) (bool, *zk.Stat, <-chan zk.Event, error) {
	ok, st, err := ss.Exists(path)
	if err != nil {
		return false, nil, nil, err
	}
	if ok {
		return true, st, ss.watchChan(&ss.s.nodes[path].dataW), nil
	}
	ws := ss.s.pendingExist[path]
	ch := ss.watchChan(&ws)
	ss.s.pendingExist[path] = ws
	return false, st, ch, nil
}

// Get implements chain.ZKConn.
func (ss *zkSession) Get(path string) ([]byte, *zk.Stat, error) {
	if err := ss.check(); err != nil {
		return nil, nil, err
	}
	n := ss.s.nodes[path]
	if n == nil {
		return nil, nil, zk.ErrNoNode
	}
	st := n.stat
	return slices.Clone(n.data), &st, nil
}

// GetW implements chain.ZKConn.
func (ss *zkSession) GetW(path string) ([]byte, *zk.Stat, <-chan zk.Event, error) {
	b, st, err := ss.Get(path)
	if err != nil {
		return nil, nil, nil, err
	}
	return b, st, ss.watchChan(&ss.s.nodes[path].dataW), nil
}

// Set implements chain.ZKConn.
func (ss *zkSession) Set(path string, data []byte, version int32) (*zk.Stat, error) {
	if err := ss.check(); err != nil {
		return nil, err
	}
	return ss.s.set(path, data, version, true)
}

// Children implements chain.ZKConn.
func (ss *zkSession) Children(path string) ([]string, *zk.Stat, error) {
	if err := ss.check(); err != nil {
		return nil, nil, err
	}
	n := ss.s.nodes[path]
	if n == nil {
		return nil, nil, zk.ErrNoNode
	}
	st := n.stat
	return slices.Clone(n.children), &st, nil
}

// ChildrenW implements chain.ZKConn.
func (ss *zkSession) ChildrenW(path string) ([]string, *zk.Stat, <-chan zk.Event, error) {
	kids, st, err := ss.Children(path)
	if err != nil {
		return nil, nil, nil, err
	}
	return kids, st, ss.watchChan(&ss.s.nodes[path].childW), nil
}

// Multi implements chain.ZKConn: every operation applies, or none does. The
// operations are first tried on a copy of the tree; only if all succeed are
// they applied to the tree itself, firing watches.
func (ss *zkSession) Multi(ops ...any) ([]zk.MultiResponse, error) {
	if err := ss.check(); err != nil {
		return nil, err
	}
	dry := ss.s.clone()
	res := make([]zk.MultiResponse, len(ops))
	var firstErr error
	for i, op := range ops {
		r, err := dry.apply(op, ss.id, false)
		res[i] = r
		if err != nil {
			res[i].Error = err
			firstErr = err
			for j := i + 1; j < len(ops); j++ {
				res[j].Error = zk.ErrAPIError
			}
			return res, err
		}
	}
	for i, op := range ops {
		res[i], _ = ss.s.apply(op, ss.id, true)
	}
	return res, firstErr
}

func (s *zkServer) apply(op any, owner int64, fire_ bool) (zk.MultiResponse, error) {
	switch o := op.(type) {
	case *zk.CreateRequest:
		p, err := s.create(o.Path, o.Data, o.Flags, owner, fire_)
		return zk.MultiResponse{String: p}, err
	case *zk.SetDataRequest:
		st, err := s.set(o.Path, o.Data, o.Version, fire_)
		return zk.MultiResponse{Stat: st}, err
	case *zk.DeleteRequest:
		return zk.MultiResponse{}, s.remove(o.Path, o.Version, fire_)
	case *zk.CheckVersionRequest:
		n := s.nodes[o.Path]
		switch {
		case n == nil:
			return zk.MultiResponse{}, zk.ErrNoNode
		case o.Version != -1 && o.Version != n.stat.Version:
			return zk.MultiResponse{}, zk.ErrBadVersion
		}
		return zk.MultiResponse{}, nil
	}
	return zk.MultiResponse{}, zk.ErrBadArguments
}

// clone copies the tree, without watches, for a dry run.
func (s *zkServer) clone() *zkServer {
	c := &zkServer{w: s.w, zxid: s.zxid, nodes: make(map[string]*znode, len(s.nodes)), pendingExist: map[string][]zkWatch{}}
	for p, n := range s.nodes {
		c.nodes[p] = &znode{data: n.data, stat: n.stat, children: slices.Clone(n.children), seq: n.seq}
	}
	return c
}

// Sync implements chain.ZKConn: every read here is already up to date.
func (ss *zkSession) Sync(path string) (string, error) {
	if err := ss.check(); err != nil {
		return "", err
	}
	return path, nil
}

// SessionID implements chain.ZKConn.
func (ss *zkSession) SessionID() int64 { return ss.id }

// Close implements chain.ZKConn: the session ends at once and its
// ephemeral znodes go.
func (ss *zkSession) Close() {
	if ss.closed {
		return
	}
	ss.closed = true
	if !ss.expired && !ss.cut {
		ss.expired = true
		ss.s.dropEphemerals(ss.id)
	}
	ss.s.dropWatches(ss)
}
