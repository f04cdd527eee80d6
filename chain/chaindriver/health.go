package chaindriver

import (
	"context"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/chainraft/chainraft/chain"
	"github.com/chainraft/chainraft/internal/zkserver"
	"github.com/chainraft/chainraft/nemesis"
	"github.com/chainraft/chainraft/zkrecipes"
)

// minFreeDisk is the free space under the run directory below which the
// cluster reports its disk full: a node's log grows in 4 MB segments and a
// snapshot of a chain's state is written whole, so below this a node is
// about to stop on a failed write, which would look like the store's fault.
const minFreeDisk = 32 << 20

// zkOpWait bounds the harness's own ZooKeeper work around a run (clearing
// and removing the run's root): an ensemble that does not answer must not
// hold up a start or a close.
const zkOpWait = 5 * time.Second

// runRoot is a run's znode root: /chainraft/<run id>, the run id being the
// run directory's name, so that runs against one external ZooKeeper never
// see each other's nodes and chains.
func runRoot(dir string) string {
	id := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, filepath.Base(dir))
	if strings.Trim(id, ".") == "" {
		id = "run"
	}
	return path.Join(chain.RootPath, id)
}

// clearRoot removes a leftover of the same run directory's name from an
// external ensemble (a harness killed before its close), so the run starts
// from nothing.
func (c *Cluster) clearRoot(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, zkOpWait)
	defer cancel()
	conn, _, err := zkrecipes.ConnectContext(ctx, c.zkAddrs, routerWait)
	if err != nil {
		return fmt.Errorf("ZooKeeper %s: %w", strings.Join(c.zkAddrs, ","), err)
	}
	defer conn.Close()
	return deleteTree(ctx, conn, c.root)
}

// removeRoot deletes the run's root from an external ensemble at the end
// of the run, bounded by zkOpWait.
func (c *Cluster) removeRoot() error {
	ctx, cancel := context.WithTimeout(context.Background(), zkOpWait)
	defer cancel()
	conn, _, err := zkrecipes.ConnectContext(ctx, c.zkAddrs, routerWait)
	if err != nil {
		return fmt.Errorf("chain cluster: removing %s: %w", c.root, err)
	}
	defer conn.Close()
	if err := deleteTree(ctx, conn, c.root); err != nil {
		return fmt.Errorf("chain cluster: removing %s: %w", c.root, err)
	}
	return nil
}

// deleteTree deletes p and everything below it, children first. An
// ephemeral znode of a node whose session has not expired yet (a node that
// was SIGKILLed) may be deleted by anyone. ZooKeeper calls have no
// deadline of their own: each runs while ctx allows (a call left behind
// ends when the connection closes).
func deleteTree(ctx context.Context, conn *zk.Conn, p string) error {
	for attempt := 0; ; attempt++ {
		kids, err := zkCall(ctx, func() ([]string, error) { kids, _, err := conn.Children(p); return kids, err })
		if errors.Is(err, zk.ErrNoNode) {
			return nil
		}
		if err != nil {
			return err
		}
		sort.Strings(kids)
		for _, k := range kids {
			if err := deleteTree(ctx, conn, p+"/"+k); err != nil {
				return err
			}
		}
		_, err = zkCall(ctx, func() (struct{}, error) { return struct{}{}, conn.Delete(p, -1) })
		switch {
		case err == nil, errors.Is(err, zk.ErrNoNode):
			return nil
		case errors.Is(err, zk.ErrNotEmpty) && attempt < 5:
			continue // a child appeared meanwhile (a node still stopping)
		default:
			return fmt.Errorf("delete %s: %w", p, err)
		}
	}
}

// zkCall runs one ZooKeeper request, returning early when ctx ends.
func zkCall[T any](ctx context.Context, f func() (T, error)) (T, error) {
	type res struct {
		v   T
		err error
	}
	done := make(chan res, 1)
	go func() { v, err := f(); done <- res{v, err} }() // ends with the request or the connection
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

// Unplanned implements harness.HealthWatcher: the first thing the cluster
// started that is gone without the nemesis having done it — a ZooKeeper
// server that died without a zk-kill fault, a node process that exited
// without the harness killing or stopping it (proccluster tracks that), or
// a disk under the run directory with less than minFreeDisk free. The
// error names it and when it was first seen dead (the harness asks every
// second, so within a second of the death).
func (c *Cluster) Unplanned() error {
	if c.closed.Load() {
		return nil
	}
	var errs []error
	if c.zk != nil {
		for i := 0; i < c.zk.Size(); i++ {
			p := c.zk.Process(i)
			c.zkMu.Lock()
			planned := c.zkKilled[i]
			c.zkMu.Unlock()
			if p.Running() || planned {
				continue
			}
			errs = append(errs, fmt.Errorf("ZooKeeper server %d (pid %d) died %s without a zk-kill fault: %v (see %s)",
				i+1, p.Pid(), c.seenDead(fmt.Sprintf("zk-%d", i)), p.ExitErr(), c.zk.LogPath(i)))
		}
	}
	if c.hostZK != nil {
		if err := c.hostZK.unplanned(); err != nil {
			errs = append(errs, err)
		}
	}
	if u, ok := any(c.pc).(interface{ Unplanned() error }); ok && c.pc != nil {
		if err := u.Unplanned(); err != nil {
			errs = append(errs, err)
		}
	}
	var fs syscall.Statfs_t
	if err := syscall.Statfs(c.env.Dir, &fs); err == nil {
		if free := fs.Bavail * uint64(fs.Bsize); free < minFreeDisk {
			errs = append(errs, fmt.Errorf("the disk under %s is full: %d KiB free (seen %s)", c.env.Dir, free>>10, c.seenDead("disk")))
		}
	}
	return errors.Join(errs...)
}

// seenDead is when Unplanned first saw what (a server, the disk) fail, as
// a clock time for the message.
func (c *Cluster) seenDead(what string) string {
	c.zkMu.Lock()
	defer c.zkMu.Unlock()
	t, ok := c.deadSeen[what]
	if !ok {
		t = time.Now()
		c.deadSeen[what] = t
	}
	return "at " + t.Format("15:04:05.000")
}

// zkTarget is the ensemble as the nemesis faults it, with the kills
// recorded as planned until the heal restarts the server: Unplanned must
// tell a zk-kill fault from a server that died on its own.
type zkTarget struct {
	*zkserver.Target
	c *Cluster
}

var _ nemesis.ZKTarget = (*zkTarget)(nil)

// Kill implements nemesis.ZKTarget: planned before the signal, so that no
// health check in between sees an unplanned death.
func (z *zkTarget) Kill(ctx context.Context, server int) error {
	z.c.zkMu.Lock()
	z.c.zkKilled[server-1] = true
	z.c.zkMu.Unlock()
	return z.Target.Kill(ctx, server)
}

// Restart implements nemesis.ZKTarget: once the server runs again, its
// next death is unplanned unless the nemesis kills it again.
func (z *zkTarget) Restart(ctx context.Context, server int) error {
	if err := z.Target.Restart(ctx, server); err != nil {
		return err
	}
	z.c.zkMu.Lock()
	delete(z.c.zkKilled, server-1)
	delete(z.c.deadSeen, fmt.Sprintf("zk-%d", server-1))
	z.c.zkMu.Unlock()
	return nil
}
