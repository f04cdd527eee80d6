package zkrecipes

import (
	"errors"
	"fmt"
	"strings"

	"github.com/go-zookeeper/zk"
)

// Candidacy is the election recipe (the same znodes as Election) for a
// caller that must not block: a state machine with no goroutine, timer or
// clock of its own. Step issues the requests the recipe needs now and
// returns; while the candidate waits for its predecessor, or leads, Watch
// is the channel whose event calls for the next Step. The chain store's
// coordinator drives one from its event loop, and the deterministic
// simulator drives the same code on its simulated clock.
//
// A Candidacy is owned by one goroutine. Once it reports ErrSessionLost it
// is spent: the caller resigns it (removing a znode that may linger) and
// starts a new one.
type Candidacy struct {
	conn Conn
	dir  string
	data []byte
	guid string

	dirReady bool
	// path is the own znode once created; maybeMade says a create failed
	// in a way that may have created it (a lost connection), so the next
	// Step looks for it by guid before making another (ZOOKEEPER-1262).
	path      string
	maybeMade bool
	// pred is the watch on the predecessor while waiting; guard the watch
	// on the own znode while leading.
	pred, guard <-chan zk.Event
	leading     bool
	spent       bool
}

// NewCandidacy is a candidate under dir announcing data. Nothing is sent
// before the first Step.
func NewCandidacy(conn Conn, dir string, data []byte) *Candidacy {
	return &Candidacy{conn: conn, dir: strings.TrimRight(dir, "/"), data: data, guid: newGUID()}
}

// Path is the candidate's znode ("" before it exists): a leader guards its
// writes with a CheckVersionRequest on it, which fails once it is gone.
func (c *Candidacy) Path() string { return c.path }

// Watch is the channel to wait on before the next Step: the predecessor's
// watch while waiting, the own znode's while leading; nil when the next
// Step is due at once or after a retry delay of the caller's choosing.
func (c *Candidacy) Watch() <-chan zk.Event {
	if c.leading {
		return c.guard
	}
	return c.pred
}

// Step advances the candidacy as far as it can without waiting. It reports
// whether the candidate leads now; an error wrapping ErrSessionLost means
// the znode or the session that owned it is gone (leadership, if held, is
// lost), and the Candidacy is spent. Other errors (a lost connection) leave
// it intact: Step again later.
func (c *Candidacy) Step() (leading bool, err error) {
	if c.spent {
		return false, fmt.Errorf("%w: candidacy under %s ended", ErrSessionLost, c.dir)
	}
	if c.leading {
		select {
		case ev := <-c.guard:
			// Anything but our own delete is a loss: someone deleted the
			// znode, or the session ended (EventNotWatching).
			c.leading, c.spent = false, true
			return false, fmt.Errorf("%w: %s: %v", ErrSessionLost, c.path, ev.Type)
		default:
			return true, nil
		}
	}
	if c.pred != nil {
		select {
		case ev := <-c.pred:
			c.pred = nil
			if ev.Type == zk.EventNotWatching {
				c.spent = true
				return false, lostErr("waiting under "+c.dir, ev.Err)
			}
		default:
			return false, nil
		}
	}
	if !c.dirReady {
		if err := c.makeDir(); err != nil {
			return false, err
		}
		c.dirReady = true
	}
	if c.path == "" {
		if err := c.create(); err != nil {
			return false, err
		}
	}
	return c.checkFirst()
}

func (c *Candidacy) fail(what string, err error) error {
	if errors.Is(err, zk.ErrSessionExpired) || errors.Is(err, zk.ErrClosing) || errors.Is(err, zk.ErrSessionMoved) {
		c.spent = true
	}
	return lostErr(what, err)
}

func (c *Candidacy) makeDir() error {
	p := ""
	for _, part := range strings.Split(strings.Trim(c.dir, "/"), "/") {
		p += "/" + part
		if _, err := c.conn.Create(p, nil, zk.FlagPersistent, zk.WorldACL(zk.PermAll)); err != nil && !errors.Is(err, zk.ErrNodeExists) {
			return c.fail("create "+p, err)
		}
	}
	return nil
}

func (c *Candidacy) prefix() string { return "_c_" + c.guid + "-" }

// create makes the candidate's ephemeral-sequential znode, or finds the one
// an earlier create may have made before its connection was lost.
func (c *Candidacy) create() error {
	if c.maybeMade {
		kids, _, err := c.conn.Children(c.dir)
		if err != nil {
			return c.fail("list "+c.dir, err)
		}
		c.maybeMade = false
		for _, k := range kids {
			if strings.HasPrefix(k, c.prefix()) {
				c.path = c.dir + "/" + k
				return nil
			}
		}
	}
	p, err := c.conn.Create(c.dir+"/"+c.prefix()+"n_", c.data, zk.FlagEphemeralSequential, zk.WorldACL(zk.PermAll))
	if err != nil {
		if retriable(err) {
			c.maybeMade = true
		}
		if errors.Is(err, zk.ErrNoNode) {
			c.dirReady = false
		}
		return c.fail("create under "+c.dir, err)
	}
	if seqOf(p) < 0 {
		return fmt.Errorf("zkrecipes: sequential znode %q without a sequence suffix", p)
	}
	c.path = p
	return nil
}

// checkFirst is steps 2-5 of the recipe: list without a watch; lead if
// first, else watch only the next lower znode. A predecessor that vanished
// between the list and the watch means listing again, a few times at most
// before handing the turn back to the caller.
func (c *Candidacy) checkFirst() (bool, error) {
	own := c.path[strings.LastIndexByte(c.path, '/')+1:]
	for range 4 {
		kids, _, err := c.conn.Children(c.dir)
		if err != nil {
			return false, c.fail("list "+c.dir, err)
		}
		cands := kids[:0]
		for _, k := range kids {
			if seqOf(k) >= 0 {
				cands = append(cands, k)
			}
		}
		sortBySeq(cands)
		idx := -1
		for i, k := range cands {
			if k == own {
				idx = i
				break
			}
		}
		if idx < 0 {
			c.spent = true
			return false, fmt.Errorf("%w: %s no longer exists", ErrSessionLost, c.path)
		}
		if idx == 0 {
			_, _, ch, err := c.conn.GetW(c.path)
			if errors.Is(err, zk.ErrNoNode) {
				c.spent = true
				return false, fmt.Errorf("%w: %s vanished as it was acquired", ErrSessionLost, c.path)
			}
			if err != nil {
				return false, c.fail("watch "+c.path, err)
			}
			c.guard, c.leading = ch, true
			return true, nil
		}
		pred := c.dir + "/" + cands[idx-1]
		// A get with a watch, not exists: on a vanished predecessor exists
		// would leave a creation watch behind that never fires.
		_, _, ch, err := c.conn.GetW(pred)
		if errors.Is(err, zk.ErrNoNode) {
			continue
		}
		if err != nil {
			return false, c.fail("watch "+pred, err)
		}
		c.pred = ch
		return false, nil
	}
	return false, nil
}

// Resign deletes the candidate's znode, if it has one, and spends the
// candidacy; a znode already gone is not an error.
func (c *Candidacy) Resign() error {
	c.spent, c.leading, c.pred = true, false, nil
	if c.path == "" {
		return nil
	}
	p := c.path
	c.path = ""
	if err := c.conn.Delete(p, -1); err != nil && !errors.Is(err, zk.ErrNoNode) {
		return lostErr("delete "+p, err)
	}
	return nil
}
