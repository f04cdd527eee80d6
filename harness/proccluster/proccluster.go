// Package proccluster is what every driver of real node processes shares:
// nodes by id, their ports (held until each node starts), the nemesis's
// proxies between them, idempotent kill / pause / resume / restart, CPU
// accounting over every incarnation, and a readiness wait that fails early
// when a node exits. A driver then says only its command lines, its roles
// and how it knows the cluster serves; the binary it starts may be
// chainraft itself or a foreign server (etcd).
//
// Ids are 1..Nodes for the nodes started with the cluster and
// Nodes+1..Nodes+Spares for nodes a member fault may add later: every id's
// ports and proxies are made at New, because a running node learns a new
// peer's address from its log, one address for every dialer, which would
// bypass per-link proxies made later.
//
// Power. With Config.PowerFS every node's data directory is mounted on
// internal/powerfs before the node first starts, served from the harness
// process (a SIGKILLed node must not take its disk down), so that
// LoseUnsynced can drop what a killed node wrote and did not sync: the
// nemesis's power fault, which every driver of this package gets by adding
// "power" to its FaultKinds. Close unmounts every disk after the processes
// are gone and puts each node's files back in <Dir>/nodes/<id>/. New sweeps
// the mounts a harness killed with SIGKILL left behind (powerfs.Sweep),
// whether or not this run mounts any.
//
// Goroutines: none of its own; each process has the waiter goroutine
// internal/proc gives it, and each disk the FUSE server goroutines
// powerfs gives it, ended by Close. Close kills every process, unmounts
// every disk, releases every port and is idempotent.
package proccluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/chainraft/chainraft/internal/hosts"
	"github.com/chainraft/chainraft/internal/powerfs"
	"github.com/chainraft/chainraft/internal/proc"
	"github.com/chainraft/chainraft/nemesis"
)

// Config shapes a cluster of node processes.
type Config struct {
	// Store names the processes ("raft-2") and the driver in errors.
	Store string
	// Dir is the run directory; node i keeps its data in <Dir>/nodes/<i>/
	// and its output in <Dir>/nodes/<i>.log.
	Dir string
	// Nodes are started with the cluster; Spares may be added later.
	Nodes, Spares int
	// ClientPorts gives each node a client port apart from its peer port
	// (etcd); otherwise clients and peers share one address.
	ClientPorts bool
	// CPUs, when positive, is each node's CPU quota in cores.
	CPUs float64
	// Network, when set, carries every node→node, node→ZooKeeper and
	// client→node link through a proxy of its own.
	Network *nemesis.Network
	// ZK are the ZooKeeper servers the nodes dial (client port addresses),
	// wired through Network too.
	ZK []string
	// Log receives a line per node started.
	Log io.Writer
	// PowerFS mounts every node's data directory on powerfs before the
	// node first starts, for power faults (LoseUnsynced).
	PowerFS bool
	// Hosts, when set, runs every node on a host of the pool over SSH
	// (node id on Hosts.NodeHost(id)) instead of on this machine: see
	// remote.go.
	Hosts *hosts.Pool
	// Binary is the chainraft executable: on hosts, a node started with
	// it runs a copy made on its host; any other command must be
	// installed there.
	Binary string
}

// process is a node process, here (internal/proc) or on a host.
type process interface {
	Pid() int
	Running() bool
	Paused() bool
	Exited() <-chan struct{}
	ExitErr() error
	Kill() error
	Pause() error
	Resume() error
	Stop(timeout time.Duration) error
	Restart() error
	CPUTime() time.Duration
}

// Cluster is a set of node processes. Its methods are safe for concurrent
// use.
type Cluster struct {
	cfg    Config
	ports  *proc.Reservation
	peer   map[int]string // listen address for peers
	client map[int]string // listen address for clients
	wiring *nemesis.Wiring

	// fw carries the nemesis's cuts as firewall rules on hosts (nil here).
	fw *hosts.Firewall

	mu    sync.Mutex
	procs map[int]process
	// down holds the nodes the harness took down itself (Kill, Stop), so
	// that Unplanned can tell them from nodes that died on their own.
	down map[int]bool
	// disks are the nodes' powerfs mounts (PowerFS); diskMu serializes
	// mounting, power cuts and unmounting, which take milliseconds, apart
	// from mu.
	diskMu sync.Mutex
	disks  map[int]*powerfs.Disk

	closeOnce sync.Once
	closeErr  error
}

// New reserves every id's ports and wires the network; no process starts.
func New(cfg Config) (*Cluster, error) {
	if cfg.Nodes <= 0 {
		return nil, fmt.Errorf("%s cluster: %d nodes", cfg.Store, cfg.Nodes)
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	// What a harness killed by SIGKILL left mounted: its FUSE servers died
	// with it, and their mountpoints answer ENOTCONN until detached.
	if swept, err := powerfs.Sweep(); err != nil {
		fmt.Fprintf(cfg.Log, "warning: %v\n", err)
	} else if len(swept) > 0 {
		fmt.Fprintf(cfg.Log, "%s: detached %d powerfs mount(s) a killed harness left: %s\n", cfg.Store, len(swept), strings.Join(swept, ", "))
	}
	if cfg.Hosts != nil {
		return newRemote(cfg)
	}
	if cfg.PowerFS {
		if err := powerfs.Available(); err != nil {
			return nil, fmt.Errorf("%s cluster: power faults: %w", cfg.Store, err)
		}
	}
	ids := cfg.Nodes + max(cfg.Spares, 0)
	n := ids
	if cfg.ClientPorts {
		n *= 2
	}
	ports, addrs, err := proc.ReserveAddrs(n)
	if err != nil {
		return nil, fmt.Errorf("%s cluster: %w", cfg.Store, err)
	}
	c := &Cluster{cfg: cfg, ports: ports, peer: map[int]string{}, client: map[int]string{}, procs: map[int]process{}, down: map[int]bool{}, disks: map[int]*powerfs.Disk{}}
	for i := 0; i < ids; i++ {
		c.peer[i+1] = addrs[i]
		c.client[i+1] = addrs[i]
		if cfg.ClientPorts {
			c.client[i+1] = addrs[ids+i]
		}
	}
	if cfg.Network != nil {
		topo := nemesis.Topology{Nodes: c.peer, ZK: map[int]string{}}
		if cfg.ClientPorts {
			topo.ClientAddrs = c.client
		}
		for i, a := range cfg.ZK {
			topo.ZK[i+1] = a
		}
		w, err := cfg.Network.Wire(topo)
		if err != nil {
			ports.Close()
			return nil, fmt.Errorf("%s cluster: wiring proxies: %w", cfg.Store, err)
		}
		c.wiring = &w
	}
	return c, nil
}

// Proxied reports whether links go through the nemesis's proxies.
func (c *Cluster) Proxied() bool { return c.wiring != nil }

// Network is the network the cluster is wired through (proxies, or rules
// on hosts), or nil.
func (c *Cluster) Network() *nemesis.Network {
	if c.wiring == nil && c.fw == nil {
		return nil
	}
	return c.cfg.Network
}

// Size is the number of nodes started with the cluster.
func (c *Cluster) Size() int { return c.cfg.Nodes }

// Spares lists the ids reserved for nodes added later.
func (c *Cluster) Spares() []int {
	var out []int
	for id := c.cfg.Nodes + 1; id <= c.cfg.Nodes+c.cfg.Spares; id++ {
		out = append(out, id)
	}
	return out
}

// PeerListen is the address node id listens on for peers.
func (c *Cluster) PeerListen(id int) string { return c.peer[id] }

// ClientListen is the address node id listens on for clients.
func (c *Cluster) ClientListen(id int) string { return c.client[id] }

// Dial is the address node from dials to reach node to's peer port: its
// own proxy when the network is wired, else to's address.
func (c *Cluster) Dial(from, to int) string {
	if from == to || c.wiring == nil {
		return c.peer[to]
	}
	return c.wiring.Peers[from][to]
}

// ClientAddr is the address workload clients dial for node id.
func (c *Cluster) ClientAddr(id int) string {
	if c.wiring == nil {
		return c.client[id]
	}
	return c.wiring.Clients[id]
}

// ZKConnect is node id's ZooKeeper connect string: through its own proxies
// when wired.
func (c *Cluster) ZKConnect(id int) string {
	if c.wiring == nil {
		return strings.Join(c.cfg.ZK, ",")
	}
	return c.wiring.ZKConnect(id)
}

// DataDir is node id's data directory (on its host, on hosts).
func (c *Cluster) DataDir(id int) string {
	if c.cfg.Hosts != nil {
		return c.remoteDataDir(id)
	}
	return filepath.Join(c.cfg.Dir, "nodes", strconv.Itoa(id))
}

// LogPath is node id's output file.
func (c *Cluster) LogPath(id int) string {
	return filepath.Join(c.cfg.Dir, "nodes", strconv.Itoa(id)+".log")
}

// Start starts node id: path with args (and env entries added to the
// harness's environment), output to LogPath(id). The node's ports are
// released to it first.
func (c *Cluster) Start(id int, path string, args, env []string) error {
	c.mu.Lock()
	_, dup := c.procs[id]
	c.mu.Unlock()
	if dup {
		return fmt.Errorf("%s cluster: node %d started twice", c.cfg.Store, id)
	}
	if c.cfg.Hosts != nil {
		return c.startRemote(id, path, args, env)
	}
	if err := c.mountDisk(id); err != nil {
		return err
	}
	c.ports.Release(c.peer[id])
	c.ports.Release(c.client[id])
	p, err := proc.Start(proc.Spec{
		Name: fmt.Sprintf("%s-%d", c.cfg.Store, id), Path: path, Args: args, Env: env,
		LogPath: c.LogPath(id), CPUs: c.cfg.CPUs,
	})
	if err != nil {
		return fmt.Errorf("%s cluster: start node %d: %w", c.cfg.Store, id, err)
	}
	c.mu.Lock()
	c.procs[id] = p
	c.mu.Unlock()
	fmt.Fprintf(c.cfg.Log, "%s: node %d started at %s (pid %d)\n", c.cfg.Store, id, c.peer[id], p.Pid())
	return nil
}

// mountDisk mounts node id's data directory on powerfs (PowerFS), once.
func (c *Cluster) mountDisk(id int) error {
	if !c.cfg.PowerFS {
		return nil
	}
	c.diskMu.Lock()
	defer c.diskMu.Unlock()
	if c.disks == nil {
		return fmt.Errorf("%s cluster: closed", c.cfg.Store)
	}
	if c.disks[id] != nil {
		return nil
	}
	d, err := powerfs.Mount(c.DataDir(id))
	if err != nil {
		return fmt.Errorf("%s cluster: node %d: %w", c.cfg.Store, id, err)
	}
	c.disks[id] = d
	return nil
}

// LoseUnsynced cuts node id's power after a Kill: everything it wrote and
// did not sync is gone when it restarts. It needs PowerFS (else an error
// wrapping nemesis.ErrUnsupported) and a node that is not running.
func (c *Cluster) LoseUnsynced(id int) error {
	p, err := c.must(id)
	if err != nil {
		return err
	}
	if c.cfg.Hosts != nil {
		return fmt.Errorf("%w: power faults need powerfs, which runs on this machine only", nemesis.ErrUnsupported)
	}
	if p.Running() {
		return fmt.Errorf("%s cluster: node %d is running: kill it before cutting its power", c.cfg.Store, id)
	}
	c.diskMu.Lock()
	defer c.diskMu.Unlock()
	d := c.disks[id]
	if d == nil {
		return fmt.Errorf("%w: %s node %d's data directory is not on powerfs", nemesis.ErrUnsupported, c.cfg.Store, id)
	}
	began := time.Now()
	st := d.Stats()
	if err := d.LoseUnsynced(); err != nil {
		return fmt.Errorf("%s cluster: node %d: %w", c.cfg.Store, id, err)
	}
	fmt.Fprintf(c.cfg.Log, "%s: node %d lost its unsynced writes (%d files, %d bytes to restore, %d names kept) in %v\n",
		c.cfg.Store, id, st.DirtyFiles, st.UndoBytes, st.Graved, time.Since(began).Round(time.Millisecond))
	return nil
}

// closeDisks unmounts every disk, its processes gone, and puts its files
// back in the node's data directory.
func (c *Cluster) closeDisks() error {
	c.diskMu.Lock()
	defer c.diskMu.Unlock()
	var errs []error
	for id, d := range c.disks {
		if err := d.Close(); err != nil {
			errs = append(errs, fmt.Errorf("node %d: %w", id, err))
		}
	}
	c.disks = nil
	return errors.Join(errs...)
}

// IDs lists the nodes started so far, sorted.
func (c *Cluster) IDs() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]int, 0, len(c.procs))
	for id := range c.procs {
		out = append(out, id)
	}
	sort.Ints(out)
	return out
}

// Process is node id's process, or nil (on hosts too: see Pid).
func (c *Cluster) Process(id int) *proc.Process {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, _ := c.procs[id].(*proc.Process)
	return p
}

// Has reports whether node id was started.
func (c *Cluster) Has(id int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.procs[id] != nil
}

// Pid is node id's current process id (on its host, on hosts), 0 if none.
func (c *Cluster) Pid(id int) int {
	c.mu.Lock()
	p := c.procs[id]
	c.mu.Unlock()
	if p == nil {
		return 0
	}
	return p.Pid()
}

func (c *Cluster) proc(id int) process {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.procs[id]
}

func (c *Cluster) must(id int) (process, error) {
	if p := c.proc(id); p != nil {
		return p, nil
	}
	return nil, fmt.Errorf("%w: %s cluster has no node %d", nemesis.ErrNoTarget, c.cfg.Store, id)
}

// Up reports whether node id runs and is not paused.
func (c *Cluster) Up(id int) bool {
	p := c.proc(id)
	return p != nil && p.Running() && !p.Paused()
}

// Kill SIGKILLs node id; a node already down is left alone.
func (c *Cluster) Kill(id int) error {
	p, err := c.must(id)
	if err != nil {
		return err
	}
	c.setDown(id, true)
	if !p.Running() {
		return nil
	}
	return p.Kill()
}

func (c *Cluster) setDown(id int, down bool) {
	c.mu.Lock()
	c.down[id] = down
	c.mu.Unlock()
}

// Restart starts node id again on its data directory; a running node is
// left alone, so overlapping faults on one node heal in any order.
func (c *Cluster) Restart(id int) error {
	p, err := c.must(id)
	if err != nil {
		return err
	}
	if p.Running() {
		return nil
	}
	if err := p.Restart(); err != nil {
		return err
	}
	c.setDown(id, false)
	return nil
}

// Pause SIGSTOPs node id.
func (c *Cluster) Pause(id int) error {
	p, err := c.must(id)
	if err != nil {
		return err
	}
	return p.Pause()
}

// Resume SIGCONTs node id; one not paused is left alone.
func (c *Cluster) Resume(id int) error {
	p, err := c.must(id)
	if err != nil {
		return err
	}
	if !p.Paused() {
		return nil
	}
	return p.Resume()
}

// Stop stops node id cleanly (SIGTERM, then SIGKILL after timeout).
func (c *Cluster) Stop(id int, timeout time.Duration) error {
	p, err := c.must(id)
	if err != nil {
		return err
	}
	c.setDown(id, true)
	if err := p.Stop(timeout); err != nil && !errors.Is(err, proc.ErrNotRunning) {
		return err
	}
	return nil
}

// NodeCPU is each node's CPU time so far, every incarnation counted.
func (c *Cluster) NodeCPU() map[uint64]time.Duration {
	out := map[uint64]time.Duration{}
	for _, id := range c.IDs() {
		out[uint64(id)] = c.proc(id).CPUTime()
	}
	return out
}

// Exited returns an error naming a node that exited on its own (not
// killed by the harness), with its log, or nil.
func (c *Cluster) Exited() error {
	for _, id := range c.IDs() {
		p := c.proc(id)
		select {
		case <-p.Exited():
			if !p.Running() {
				return fmt.Errorf("%s cluster: node %d exited: %v (see %s)", c.cfg.Store, id, p.ExitErr(), c.LogPath(id))
			}
		default:
		}
	}
	return nil
}

// minFreeDisk is the free space below which the run directory's disk
// counts as full: a node that cannot write its log stops, which is the
// machine's failure, not the store's.
const minFreeDisk = 64 << 20

// Unplanned implements harness.HealthWatcher: a node process that exited
// although the harness did not kill or stop it, or a run directory on a
// disk that is (nearly) full.
func (c *Cluster) Unplanned() error {
	for _, id := range c.IDs() {
		p := c.proc(id)
		c.mu.Lock()
		planned := c.down[id]
		c.mu.Unlock()
		if planned || p.Running() {
			continue
		}
		select {
		case <-p.Exited():
			return fmt.Errorf("%s node %d exited on its own (noticed at %s): %v (see %s)",
				c.cfg.Store, id, time.Now().Format("15:04:05.000"), p.ExitErr(), c.LogPath(id))
		default:
		}
	}
	if c.fw != nil {
		if err := c.fw.Err(); err != nil {
			return fmt.Errorf("%s cluster: the hosts' firewall: %w", c.cfg.Store, err)
		}
	}
	return FreeDisk(c.cfg.Dir)
}

// FreeDisk reports a disk under dir with less than minFreeDisk free.
func FreeDisk(dir string) error {
	var st syscall.Statfs_t
	if dir == "" || syscall.Statfs(dir, &st) != nil {
		return nil
	}
	if free := st.Bavail * uint64(st.Bsize); free < minFreeDisk {
		return fmt.Errorf("the disk of %s is full: %d bytes free", dir, free)
	}
	return nil
}

// WaitReady calls probe until it returns nil, for at most timeout, and
// fails early when a node process exits (a bad flag, a port in use).
func (c *Cluster) WaitReady(ctx context.Context, timeout time.Duration, probe func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		if err := c.Exited(); err != nil {
			return err
		}
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		err := probe(pctx)
		pcancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s cluster: not serving within %v: %w", c.cfg.Store, timeout, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Close stops every node: SIGTERM, and SIGKILL for any still running after
// grace (0: SIGKILL at once; a node's durable state is on disk, and a crash
// loses nothing a kill would not). It releases every port and is
// idempotent.
func (c *Cluster) Close(grace time.Duration) error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		for id := range c.procs {
			c.down[id] = true // going down is planned from here on
		}
		c.mu.Unlock()
		var errs []error
		var emu sync.Mutex
		var wg sync.WaitGroup
		for _, id := range c.IDs() {
			p := c.proc(id)
			wg.Add(1)
			go func() {
				defer wg.Done()
				var err error
				if grace > 0 {
					err = p.Stop(grace)
				} else {
					err = p.Kill()
				}
				if err != nil && !errors.Is(err, proc.ErrNotRunning) {
					emu.Lock()
					errs = append(errs, fmt.Errorf("node %d: %w", id, err))
					emu.Unlock()
				}
			}()
		}
		wg.Wait()
		if c.cfg.Hosts != nil {
			errs = append(errs, c.closeRemote())
		}
		if err := c.closeDisks(); err != nil {
			errs = append(errs, err)
		}
		c.ports.Close()
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}

// ResolveWait bounds how long a role may go unheld (an election running, a
// chain rejoining a node) before a fault is skipped for want of a target.
const ResolveWait = 5 * time.Second

// ResolveRetry asks resolve until it names someone, returns an error that
// is not nemesis.ErrNoTarget, or ResolveWait passes: "kill the leader"
// right after another fault must wait for the election, not skip.
func ResolveRetry(ctx context.Context, resolve func(context.Context) ([]int, error)) ([]int, error) {
	ctx, cancel := context.WithTimeout(ctx, ResolveWait)
	defer cancel()
	for {
		ids, err := resolve(ctx)
		if err == nil && len(ids) == 0 {
			err = nemesis.ErrNoTarget
		}
		if err == nil || !errors.Is(err, nemesis.ErrNoTarget) {
			return ids, err
		}
		select {
		case <-ctx.Done():
			return ids, err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Target is the part of a nemesis.Target every process cluster shares:
// nodes, kill, pause and restart by id, the network. A driver embeds it and
// adds Resolve (its roles), and membership if it has any.
type Target struct {
	C *Cluster
	// ZKT is the ZooKeeper ensemble to fault, or nil.
	ZKT nemesis.ZKTarget
}

// Nodes implements nemesis.Target: the nodes started.
func (t *Target) Nodes() []int { return t.C.IDs() }

// Kill implements nemesis.Target.
func (t *Target) Kill(_ context.Context, id int) error { return t.C.Kill(id) }

// Restart implements nemesis.Target.
func (t *Target) Restart(_ context.Context, id int) error { return t.C.Restart(id) }

// LoseUnsynced implements nemesis.PowerCutter.
func (t *Target) LoseUnsynced(_ context.Context, id int) error { return t.C.LoseUnsynced(id) }

// StepClock implements nemesis.ClockStepper: the wall clocks of the hosts
// the nodes run on, once each (netns hosts share one). Without hosts the
// nodes share the harness's own clock, which a run never steps.
func (t *Target) StepClock(ctx context.Context, ids []int, d time.Duration) error {
	if !t.C.Remote() {
		return fmt.Errorf("%w: clock faults need the nodes on hosts (--hosts)", nemesis.ErrUnsupported)
	}
	hs := make([]*hosts.Host, 0, len(ids))
	for _, id := range ids {
		hs = append(hs, t.C.Host(id))
	}
	return t.C.cfg.Hosts.StepClocks(ctx, hs, d)
}

// Pause implements nemesis.Target.
func (t *Target) Pause(_ context.Context, id int) error { return t.C.Pause(id) }

// Resume implements nemesis.Target.
func (t *Target) Resume(_ context.Context, id int) error { return t.C.Resume(id) }

// RemoveMember implements nemesis.Target: unsupported unless the driver
// overrides it.
func (t *Target) RemoveMember(context.Context, int) error {
	return fmt.Errorf("%w: the %s store has no membership change", nemesis.ErrUnsupported, t.C.cfg.Store)
}

// AddMember implements nemesis.Target: unsupported unless overridden.
func (t *Target) AddMember(context.Context, int) error {
	return fmt.Errorf("%w: the %s store has no membership change", nemesis.ErrUnsupported, t.C.cfg.Store)
}

// Network implements nemesis.Target.
func (t *Target) Network() *nemesis.Network { return t.C.Network() }

// ZK implements nemesis.Target.
func (t *Target) ZK() nemesis.ZKTarget { return t.ZKT }
