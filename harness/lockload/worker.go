package lockload

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/chainraft/chainraft/zkrecipes"
)

// WorkerConfig is one lock client process (`chainraft lockworker`).
type WorkerConfig struct {
	ID       int
	ZK       []string
	Recipe   string // RecipeLock or RecipeNaive
	LockPath string // the lock's directory (recipe) or znode (naive)
	Resource string // host:port of the Resource
	Fencing  bool
	// SessionTimeout is the ZooKeeper session timeout: a pause longer than
	// it loses the lock.
	SessionTimeout time.Duration
	// Hold is how long the worker keeps the lock between its read and its
	// write: the window the nemesis pauses it in.
	Hold time.Duration
	// Events is the JSON Lines file of what the worker did.
	Events string
	// Start is the run's start (wall clock): event times count from it.
	Start time.Time
	Seed  int64
}

// Recipes.
const (
	RecipeLock  = "recipe"
	RecipeNaive = "naive"
)

// Event is one line of a worker's events file. Times are the worker's wall
// clock less the run's start: close to the resource's, not the same clock;
// the check uses the resource's history only.
type Event struct {
	Time   int64  `json:"time"`
	Worker int    `json:"worker"`
	Ev     string `json:"ev"` // acquire, read, write, release, lost, error
	Token  int64  `json:"token,omitempty"`
	Value  int64  `json:"value,omitempty"`
	OK     bool   `json:"ok"`
	Err    string `json:"err,omitempty"`
}

// Worker events.
const (
	EvAcquire = "acquire"
	EvRead    = "read"
	EvWrite   = "write"
	EvRelease = "release"
	EvLost    = "lost"
	EvError   = "error"
)

type locker interface {
	Lock(ctx context.Context) (int64, error)
	Unlock() error
	Lost() <-chan struct{}
}

// RunWorker loops until ctx ends: Lock, read the counter, check the lock was
// not reported lost, hold (the work), write the counter plus one (a cas
// carrying the token when fenced), Unlock. The check is what a careful
// client does; a pause between it and the write defeats it (see doc.go). A lost lock
// or a failed ZooKeeper call ends the session: the worker reconnects with a
// new one.
func RunWorker(ctx context.Context, cfg WorkerConfig) error {
	if cfg.Recipe != RecipeLock && cfg.Recipe != RecipeNaive {
		return fmt.Errorf("lockload: worker %d: unknown recipe %q", cfg.ID, cfg.Recipe)
	}
	f, err := os.OpenFile(cfg.Events, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("lockload: worker %d: %w", cfg.ID, err)
	}
	defer f.Close()
	w := &worker{cfg: cfg, events: f, rng: rand.New(rand.NewPCG(uint64(cfg.Seed), uint64(cfg.ID)))}
	w.res = NewResourceClient(cfg.Resource, cfg.ID, 2*time.Second)
	defer w.disconnect()
	for ctx.Err() == nil {
		if err := w.round(ctx); err != nil {
			if ctx.Err() != nil {
				break
			}
			if w.writeErr != nil {
				return w.writeErr
			}
			w.log(Event{Ev: EvError, Err: err.Error()})
			w.disconnect()
			if sleep(ctx, 50*time.Millisecond) != nil {
				break
			}
		}
	}
	return w.writeErr
}

type worker struct {
	cfg      WorkerConfig
	events   *os.File
	writeErr error
	rng      *rand.Rand
	res      *ResourceClient
	conn     *zk.Conn
	lock     locker
}

func (w *worker) log(e Event) {
	e.Time = time.Now().UnixNano() - w.cfg.Start.UnixNano()
	e.Worker = w.cfg.ID
	b, _ := json.Marshal(e)
	if _, err := w.events.Write(append(b, '\n')); err != nil && w.writeErr == nil {
		w.writeErr = fmt.Errorf("lockload: worker %d: events: %w", w.cfg.ID, err)
	}
}

func (w *worker) disconnect() {
	if w.conn != nil {
		w.conn.Close()
		w.conn, w.lock = nil, nil
	}
}

func (w *worker) connect(ctx context.Context) error {
	if w.conn != nil {
		return nil
	}
	conn, _, err := zkrecipes.ConnectContext(ctx, w.cfg.ZK, w.cfg.SessionTimeout)
	if err != nil {
		return err
	}
	w.conn = conn
	if w.cfg.Recipe == RecipeNaive {
		w.lock = zkrecipes.NewNaiveLock(conn, w.cfg.LockPath)
	} else {
		w.lock = zkrecipes.NewLock(conn, w.cfg.LockPath)
	}
	return nil
}

// round is one acquisition. An error ends the session.
func (w *worker) round(ctx context.Context) error {
	if err := w.connect(ctx); err != nil {
		return err
	}
	token, err := w.lock.Lock(ctx)
	if err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	w.log(Event{Ev: EvAcquire, Token: token, OK: true})
	lost := w.lock.Lost()
	healthy := w.critical(ctx, token, lost)
	uerr := w.lock.Unlock()
	switch {
	case uerr == nil:
		w.log(Event{Ev: EvRelease, Token: token, OK: true})
	case errors.Is(uerr, zkrecipes.ErrLost):
		w.log(Event{Ev: EvLost, Token: token, Err: uerr.Error()})
		healthy = false
	default:
		w.log(Event{Ev: EvRelease, Token: token, Err: uerr.Error()})
		healthy = false
	}
	if !healthy {
		w.disconnect() // a fresh session for the next round
	}
	// A short, random think time so one worker does not starve the others
	// of the naive lock, which has no queue.
	return sleep(ctx, time.Duration(w.rng.Int64N(int64(5*time.Millisecond))))
}

// critical is the protected work. It reports false when the lock was found
// lost (the session must be replaced).
func (w *worker) critical(ctx context.Context, token int64, lost <-chan struct{}) bool {
	v, err := w.res.Read(ctx, token)
	w.log(Event{Ev: EvRead, Token: token, Value: v, OK: err == nil, Err: errString(err)})
	if err != nil {
		return true
	}
	// The careful check: skip the work if ZooKeeper already said the lock
	// is gone. It cannot be the last thing before the write reaches the
	// resource, and a pause in between defeats it (see doc.go).
	select {
	case <-lost:
		w.log(Event{Ev: EvLost, Token: token, Err: "lost before the write: write skipped"})
		return false
	default:
	}
	// Holding the lock: a real client would compute here. This is where a
	// GC pause, a page fault storm or a SIGSTOP hits.
	if sleep(ctx, w.cfg.Hold) != nil {
		return true
	}
	if w.cfg.Fencing {
		err = w.res.CAS(ctx, token, v, v+1)
	} else {
		err = w.res.Write(ctx, token, v+1)
	}
	w.log(Event{Ev: EvWrite, Token: token, Value: v + 1, OK: err == nil, Err: errString(err)})
	return true
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
