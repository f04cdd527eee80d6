package raftdriver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/chainraft/chainraft/harness"
	"github.com/chainraft/chainraft/harness/proccluster"
	"github.com/chainraft/chainraft/nemesis"
	"github.com/chainraft/chainraft/raftkv"
)

// Name is the store's name: --store raft, `chainraft node raft`.
const Name = "raft"

// Read modes (--read-mode): ReadIndex through the leader, or the leader's
// lease. The default comes first, as harness.ReadModeDriver wants.
const (
	ReadModeIndex = "index"
	ReadModeLease = "lease"
)

// startTimeout bounds how long Start waits for a leader to serve a
// linearizable read: an election takes a second or two, the rest is slack
// for a loaded machine and cgroup CPU quotas.
const startTimeout = 30 * time.Second

func init() { harness.RegisterDriver(New()) }

// Driver starts raft clusters of `chainraft node raft` processes. The zero
// value is usable; New returns it, for tests that want a driver of their
// own rather than the registered one.
type Driver struct {
	// SnapshotEvery, when positive, is passed to every node as
	// --snapshot-every (the log length between snapshots); zero keeps the
	// node's default. A small value makes a run exercise snapshots, which a
	// node added by a member fault otherwise rarely needs.
	SnapshotEvery uint64
	// Groups is the number of raft groups the keys are split over
	// (--groups; 0 or 1: one group of every node, the plain store).
	// GroupSize is the members of each when there are several
	// (--group-size; 0: 3, or every node if fewer), placed as the chains'
	// replicas are (raftkv.GroupMembers).
	Groups, GroupSize int
}

// New returns a driver with the defaults.
func New() *Driver { return &Driver{} }

var (
	_ harness.Driver         = (*Driver)(nil)
	_ harness.Validator      = (*Driver)(nil)
	_ harness.NodeDriver     = (*Driver)(nil)
	_ harness.FaultDriver    = (*Driver)(nil)
	_ harness.ReadModeDriver = (*Driver)(nil)
	_ harness.BugDriver      = (*Driver)(nil)
	_ harness.FlagDriver     = (*Driver)(nil)
)

// Flags implements harness.FlagDriver.
func (d *Driver) Flags(fs *pflag.FlagSet) {
	fs.IntVar(&d.Groups, "groups", d.Groups, "raft: raft groups the keys are split over, leaders spread over the nodes (1: one group of every node)")
	fs.IntVar(&d.GroupSize, "group-size", d.GroupSize, "raft: members of each group when --groups > 1 (0: 3, or every node if fewer)")
}

// shape is the number of groups and their size for n nodes.
func (d *Driver) shape(nodes int) (groups, size int) {
	if d.Groups <= 1 {
		return 1, nodes
	}
	size = d.GroupSize
	if size <= 0 {
		size = 3
	}
	return d.Groups, min(size, nodes)
}

// Name implements harness.Driver.
func (*Driver) Name() string { return Name }

// Roles implements harness.FaultDriver. The leader orders writes and
// answers reads (ReadIndex and lease reads both go through it), and
// coordinates: it alone changes the membership, the job the chain gives its
// master. Followers only replicate.
func (*Driver) Roles() []harness.Role {
	return []harness.Role{
		{Name: nemesis.RoleLeader, Jobs: []string{harness.JobOrderWrites, harness.JobAnswerReads, harness.JobCoordinate}},
		{Name: nemesis.RoleFollower, Jobs: []string{harness.JobReplicate}},
	}
}

// FaultKinds implements harness.FaultDriver: no ZooKeeper, so none of its
// faults; power through proccluster's powerfs data directories. With
// several groups there are no member faults: a node is in several groups,
// and removing it from each and adding a fresh one to each is a
// reconfiguration of its own the store does not do.
func (d *Driver) FaultKinds() []string {
	if d.Groups > 1 {
		return []string{nemesis.KindKill, nemesis.KindPause, nemesis.KindPartition, nemesis.KindDelay, nemesis.KindPower, nemesis.KindClock}
	}
	return []string{nemesis.KindKill, nemesis.KindPause, nemesis.KindPartition, nemesis.KindMember, nemesis.KindDelay, nemesis.KindPower, nemesis.KindClock}
}

// BugNoFsync acknowledges writes without fsync: the node runs with
// --no-fsync (its log, vote and snapshot, and their directory entries,
// stay in the page cache). It is the driver's bug, not raftkv's: raftkv's
// --no-fsync is the mechanism, kept for measurements; the nodes are not
// passed --bug.
const BugNoFsync = "no-fsync"

// ReadModes implements harness.ReadModeDriver.
func (*Driver) ReadModes() []string { return []string{ReadModeIndex, ReadModeLease} }

// SeededBugs implements harness.BugDriver: the bugs raftkv can plant
// (raftkv/bugs.go), each with the faults that expose it.
func (*Driver) SeededBugs() []harness.SeededBug {
	return []harness.SeededBug{
		{
			Name: raftkv.BugLocalRead, Store: Name,
			Mistake: "reads served from the receiving node's local state, without ReadIndex",
			// Cut the leader off, then, once a new leader took over, pause
			// that one: clients that give up on it rotate to the cut-off
			// node, which answers from before the partition.
			Faults: []nemesis.Fault{
				{Kind: nemesis.KindPartition, Shape: nemesis.ShapeIsolate, Role: nemesis.RoleLeader},
				{Kind: nemesis.KindPause, Role: nemesis.RoleLeader},
			},
			Stagger:  2 * time.Second,
			Duration: 4 * time.Second,
			Exposes:  "partition isolating the leader, then pause the new leader",
			Keys:     5,
		},
		{
			Name: raftkv.BugEarlyAck, Store: Name,
			Mistake: "a write acknowledged when the leader proposes it, before it commits",
			Faults:  []nemesis.Fault{{Kind: nemesis.KindKill, Role: nemesis.RoleLeader}},
			Exposes: "kill the leader (reads after the ack show it without faults too)",
			Keys:    5,
		},
		{
			Name: raftkv.BugNoDedup, Store: Name,
			Mistake:        "the dedup table skipped: a retried write applies twice",
			Faults:         []nemesis.Fault{{Kind: nemesis.KindKill, Role: nemesis.RoleLeader}},
			Exposes:        "kill the leader (clients retry writes it had replicated; the request timeout must outlast the election)",
			Keys:           5,
			AppendFraction: 0.3,
		},
		{
			Name: raftkv.BugWallLease, Store: Name,
			Mistake: "a leader lease timed on the wall clock: reads answered locally while it lasts",
			// Step the leader's clock back and cut the leader off: its
			// lease, stretched by the step, outlives the election of the
			// next leader. Then pause that one, as for local-read, so
			// that clients rotate to the cut-off node, which answers
			// from the past.
			Faults: []nemesis.Fault{
				{Kind: nemesis.KindClock, Role: nemesis.RoleLeader, Step: -8 * time.Second},
				{Kind: nemesis.KindPartition, Shape: nemesis.ShapeIsolate, Role: nemesis.RoleLeader},
				{Kind: nemesis.KindPause, Role: nemesis.RoleLeader},
			},
			Stagger:  2 * time.Second,
			Duration: 4 * time.Second,
			Exposes:  "the leader's wall clock stepped back 8 s, a partition isolating it, then pause the new leader",
			Keys:     5,
			RunTime:  14 * time.Second,
			Hosts:    "netns:3",
		},
		{
			Name: BugNoFsync, Store: Name,
			Mistake: "writes acknowledged without fsync: the log, the vote and their directory entries stay in the page cache",
			// A kill does not show it (the page cache survives a
			// process); a power cut of one node rarely does (a majority
			// still holds every acknowledged write). Every node at once
			// forgets them all.
			Faults:  []nemesis.Fault{{Kind: nemesis.KindPower, Role: nemesis.RoleAll}},
			Exposes: "power cut of every node at once (a rack losing power)",
			Keys:    5,
		},
	}
}

// Validate implements harness.Validator: a read mode or bug the nodes
// would refuse is refused before any node starts, so that it is bad usage
// rather than a cluster that never serves.
func (d *Driver) Validate(env harness.Env) error {
	if d.Groups < 0 || d.GroupSize < 0 {
		return fmt.Errorf("raft: --groups %d, --group-size %d: negative", d.Groups, d.GroupSize)
	}
	if _, err := leaseMode(env.ReadMode); err != nil {
		return err
	}
	if env.Bug != BugNoFsync {
		if _, err := raftkv.ParseBug(env.Bug); err != nil {
			return fmt.Errorf("raft: --bug: %w", err)
		}
	}
	if env.Nodes < 0 {
		return fmt.Errorf("raft: %d nodes", env.Nodes)
	}
	return nil
}

// leaseMode maps a read mode to the node's Lease setting.
func leaseMode(mode string) (bool, error) {
	switch mode {
	case "", ReadModeIndex:
		return false, nil
	case ReadModeLease:
		return true, nil
	}
	return false, fmt.Errorf("raft: --read-mode %q (want %s or %s)", mode, ReadModeIndex, ReadModeLease)
}

// Start implements harness.Driver: env.Nodes (default 3) node processes on
// loopback ports, wired through env.Network when it is set (with
// env.SpareNodes more ids wired for nodes a member fault adds), returning
// once a leader serves a linearizable read. On error nothing is left
// running.
func (d *Driver) Start(ctx context.Context, env harness.Env) (harness.Cluster, error) {
	c, err := d.start(ctx, env)
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return c, nil
}

// StartCluster is Start with the concrete type, for tests and tools that
// reach past the harness's interfaces (the leader, node status, membership
// by hand).
func (d *Driver) StartCluster(ctx context.Context, env harness.Env) (*Cluster, error) {
	return d.start(ctx, env)
}

func (d *Driver) start(ctx context.Context, env harness.Env) (*Cluster, error) {
	if env.Binary == "" {
		return nil, errors.New("raft cluster: no chainraft binary given")
	}
	if err := d.Validate(env); err != nil {
		return nil, err
	}
	if env.Nodes == 0 {
		env.Nodes = 3
	}
	if env.Log == nil {
		env.Log = io.Discard
	}
	spares := 0
	if env.Network != nil || env.Hosts != nil {
		// Without the proxies an added node takes any free port (AddNode);
		// through them, or on hosts, only an id placed at start can be
		// reached.
		spares = max(env.SpareNodes, 0)
	}
	pc, err := proccluster.New(proccluster.Config{
		Store: Name, Dir: env.Dir, Nodes: env.Nodes, Spares: spares,
		CPUs: env.NodeCPUs, Network: env.Network, Log: env.Log, PowerFS: env.PowerFS,
		Hosts: env.Hosts, Binary: env.Binary,
	})
	if err != nil {
		return nil, err
	}
	var members []raftkv.Member
	for id := 1; id <= env.Nodes; id++ {
		members = append(members, raftkv.Member{ID: uint64(id), Addr: pc.ClientAddr(id)})
	}
	groups, _ := d.shape(env.Nodes)
	conns, err := raftkv.Dial(ctx, raftkv.ClientOptions{Members: members, RequestTimeout: env.RequestTimeout, Groups: groups})
	if err != nil {
		pc.Close(0)
		return nil, fmt.Errorf("raft cluster: %w", err)
	}
	c := &Cluster{
		env: env, snapshotEvery: d.SnapshotEvery, pc: pc, conns: conns, members: members,
		nextID: uint64(env.Nodes) + 1, added: map[uint64]string{},
	}
	c.groups, c.groupSize = d.shape(env.Nodes)
	initial := make([]uint64, 0, env.Nodes)
	for id := 1; id <= env.Nodes; id++ {
		initial = append(initial, uint64(id))
	}
	for _, id := range initial {
		if err := c.startNode(id, c.peerArgs(id, initial), false); err != nil {
			c.Close()
			return nil, err
		}
	}
	if err := c.waitServing(ctx, startTimeout); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// nodeArgs is node id's command line.
func (c *Cluster) nodeArgs(id uint64, listen string, peers []string, join bool) []string {
	args := []string{"node", Name,
		"--id", strconv.FormatUint(id, 10),
		"--listen", listen,
		"--peers", strings.Join(peers, ","),
		"--data-dir", c.pc.DataDir(int(id)),
	}
	if c.env.NoFsync || c.env.Bug == BugNoFsync {
		args = append(args, "--no-fsync")
	}
	if c.env.ReadMode != "" {
		args = append(args, "--read-mode", c.env.ReadMode)
	}
	if join {
		args = append(args, "--join")
	}
	if c.env.Bug != "" && c.env.Bug != BugNoFsync {
		args = append(args, "--bug", c.env.Bug)
	}
	if c.snapshotEvery > 0 {
		args = append(args, "--snapshot-every", strconv.FormatUint(c.snapshotEvery, 10))
	}
	if c.groups > 1 {
		args = append(args, "--groups", strconv.Itoa(c.groups), "--group-size", strconv.Itoa(c.groupSize))
	}
	return args
}

var _ harness.ShardedDriver = (*Driver)(nil)

// WithShards implements harness.ShardedDriver: a copy with n raft groups
// (1: one group of every node, the plain store).
func (d *Driver) WithShards(n int) harness.Driver {
	c := *d
	c.Groups = n
	return &c
}
