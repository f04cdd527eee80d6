package zookeeper

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/chainraft/chainraft/harness"
	"github.com/chainraft/chainraft/internal/zkserver"
	"github.com/chainraft/chainraft/nemesis"
)

// Name is the store's name: --store zookeeper.
const Name = "zookeeper"

// Read modes (--read-mode). sync: `sync` then getData, both on the
// session's server — sync makes that server catch up with the leader
// first. local: a plain getData, answered from the server's own state
// (ZooKeeper's default, sequentially consistent, not linearizable). The
// default comes first.
const (
	ReadModeSync  = "sync"
	ReadModeLocal = "local"
)

// ErrNotInstalled is zkserver's: java or the ZooKeeper jars are missing.
// The tests skip on it, and only on it.
var ErrNotInstalled = zkserver.ErrNotInstalled

func init() { harness.RegisterDriver(New()) }

// Driver starts ZooKeeper ensembles as the store under test. No settings
// of its own: the ensemble has Env.Nodes servers (default 3).
type Driver struct{}

// New returns a driver, for tests that want their own value.
func New() *Driver { return &Driver{} }

var (
	_ harness.Driver         = (*Driver)(nil)
	_ harness.Validator      = (*Driver)(nil)
	_ harness.FaultDriver    = (*Driver)(nil)
	_ harness.ReadModeDriver = (*Driver)(nil)
)

// Name implements harness.Driver.
func (*Driver) Name() string { return Name }

// Roles implements harness.FaultDriver. The leader orders every write
// (followers forward theirs to it) and coordinates the ensemble; followers
// replicate and answer the reads of their sessions — two of three servers'
// sessions, so most reads — which is why "answers reads" maps the chain's
// tail onto a follower. Every server serves its own clients.
func (*Driver) Roles() []harness.Role {
	return []harness.Role{
		{Name: nemesis.RoleLeader, Jobs: []string{harness.JobOrderWrites, harness.JobCoordinate, harness.JobServeClients}},
		{Name: nemesis.RoleFollower, Jobs: []string{harness.JobReplicate, harness.JobAnswerReads, harness.JobServeClients}},
	}
}

// FaultKinds implements harness.FaultDriver. The store's nodes are the
// ZooKeeper servers themselves, so zk-kill and zk-partition would be kill
// and partition again; membership is static (no dynamic reconfiguration).
func (*Driver) FaultKinds() []string {
	return []string{nemesis.KindKill, nemesis.KindPause, nemesis.KindPartition, nemesis.KindDelay, nemesis.KindClock}
}

// ReadModes implements harness.ReadModeDriver.
func (*Driver) ReadModes() []string { return []string{ReadModeSync, ReadModeLocal} }

// Validate implements harness.Validator.
func (*Driver) Validate(env harness.Env) error {
	switch env.ReadMode {
	case "", ReadModeSync, ReadModeLocal:
	default:
		return fmt.Errorf("zookeeper: --read-mode %q (want %s or %s)", env.ReadMode, ReadModeSync, ReadModeLocal)
	}
	if env.Bug != "" {
		return fmt.Errorf("zookeeper: --bug %q: ZooKeeper has no seeded bugs (its read mode local is the stale-read case)", env.Bug)
	}
	if env.Nodes < 0 || (env.Nodes > 1 && env.Nodes%2 == 0) {
		return fmt.Errorf("zookeeper: --nodes %d: an ensemble has an odd number of servers", env.Nodes)
	}
	return nil
}

// Start implements harness.Driver: an ensemble of env.Nodes servers
// (default 3), returning once every server serves and the store's root
// znode exists. On error nothing is left running.
func (d *Driver) Start(ctx context.Context, env harness.Env) (harness.Cluster, error) {
	c, err := d.StartCluster(ctx, env)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// StartCluster is Start with the concrete type, for tests.
func (d *Driver) StartCluster(ctx context.Context, env harness.Env) (*Cluster, error) {
	if err := d.Validate(env); err != nil {
		return nil, err
	}
	if env.Dir == "" {
		return nil, errors.New("zookeeper cluster: Env.Dir is required")
	}
	if env.Nodes == 0 {
		env.Nodes = 3
	}
	if env.Log == nil {
		env.Log = io.Discard
	}
	if env.ReadMode == "" {
		env.ReadMode = ReadModeSync
	}
	return startCluster(ctx, env)
}
