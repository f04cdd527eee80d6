package etcd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"

	"github.com/chainraft/chainraft/harness"
	"github.com/chainraft/chainraft/nemesis"
)

// Name is the store's name: --store etcd.
const Name = "etcd"

// Read modes (--read-mode). A linearizable Get goes through the leader's
// ReadIndex; a serializable one is answered from the receiving member's
// own state, which a partitioned or lagging member serves stale: the
// harness must catch it. The default comes first.
const (
	ReadModeLinearizable = "linearizable"
	ReadModeSerializable = "serializable"
)

// ErrNotInstalled: no etcd binary. The tests skip on it, and only on it.
var ErrNotInstalled = errors.New("etcd: no etcd binary (install Debian's etcd-server with `make deps`, or set ETCD to an etcd executable)")

func init() { harness.RegisterDriver(New()) }

// Driver starts clusters of real etcd server processes. It has no settings
// of its own: everything comes from the run's Env.
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

// Roles implements harness.FaultDriver: etcd is raft, so its roles and
// jobs are raftkv's. The leader orders writes, answers linearizable reads
// (every ReadIndex goes through it) and alone changes the membership;
// followers replicate.
func (*Driver) Roles() []harness.Role {
	return []harness.Role{
		{Name: nemesis.RoleLeader, Jobs: []string{harness.JobOrderWrites, harness.JobAnswerReads, harness.JobCoordinate}},
		{Name: nemesis.RoleFollower, Jobs: []string{harness.JobReplicate}},
	}
}

// FaultKinds implements harness.FaultDriver. There is no ZooKeeper, so
// none of its faults.
func (*Driver) FaultKinds() []string {
	return []string{nemesis.KindKill, nemesis.KindPause, nemesis.KindPartition, nemesis.KindMember, nemesis.KindDelay, nemesis.KindClock}
}

// ReadModes implements harness.ReadModeDriver.
func (*Driver) ReadModes() []string { return []string{ReadModeLinearizable, ReadModeSerializable} }

// Validate implements harness.Validator.
func (*Driver) Validate(env harness.Env) error {
	switch env.ReadMode {
	case "", ReadModeLinearizable, ReadModeSerializable:
	default:
		return fmt.Errorf("etcd: --read-mode %q (want %s or %s)", env.ReadMode, ReadModeLinearizable, ReadModeSerializable)
	}
	if env.Bug != "" {
		return fmt.Errorf("etcd: --bug %q: etcd has no seeded bugs (its read mode serializable is the stale-read case)", env.Bug)
	}
	if env.NoFsync {
		// etcd 3.4 (Debian bookworm) has no --unsafe-no-fsync: a run that
		// asked for no fsync would measure something else than it says.
		return errors.New("etcd: --no-fsync: etcd 3.4 cannot turn fsync off")
	}
	if env.Nodes < 0 {
		return fmt.Errorf("etcd: %d nodes", env.Nodes)
	}
	return nil
}

// Binary finds the etcd executable: $ETCD, else etcd in PATH, else
// /usr/bin/etcd (Debian's etcd-server). The error wraps ErrNotInstalled.
func Binary() (string, error) {
	if p := os.Getenv("ETCD"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%w: ETCD=%s: %v", ErrNotInstalled, p, err)
		}
		return p, nil
	}
	if p, err := exec.LookPath("etcd"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/bin/etcd"); err == nil {
		return "/usr/bin/etcd", nil
	}
	return "", ErrNotInstalled
}

// Start implements harness.Driver: env.Nodes (default 3) etcd processes,
// returning once the cluster answers a linearizable read. On error nothing
// is left running.
func (d *Driver) Start(ctx context.Context, env harness.Env) (harness.Cluster, error) {
	c, err := d.StartCluster(ctx, env)
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return c, nil
}

// StartCluster is Start with the concrete type, for tests that reach past
// the harness's interfaces (the leader, the membership).
func (d *Driver) StartCluster(ctx context.Context, env harness.Env) (*Cluster, error) {
	if err := d.Validate(env); err != nil {
		return nil, err
	}
	var bin string
	if env.Hosts != nil {
		// On hosts etcd is the hosts' own ($ETCD names its path there);
		// each node's start checks it is installed and says where not.
		bin = "etcd"
		if p := os.Getenv("ETCD"); p != "" {
			bin = p
		}
	} else {
		var err error
		if bin, err = Binary(); err != nil {
			return nil, err
		}
	}
	if env.Nodes == 0 {
		env.Nodes = 3
	}
	if env.Log == nil {
		env.Log = io.Discard
	}
	if env.ReadMode == "" {
		env.ReadMode = ReadModeLinearizable
	}
	if env.RequestTimeout <= 0 {
		env.RequestTimeout = harness.DefaultRequestTimeout
	}
	return startCluster(ctx, env, bin)
}
