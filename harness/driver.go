package harness

// Store drivers. A store is a folder with its driver beside it; the harness
// names none of them. A driver is registered like a database/sql driver
// (RegisterDriver from the driver package's init, one blank import line in
// cmd/chainraft/stores.go), and everything the harness does to a store goes
// through the Driver interface and the optional capabilities below, found
// by type assertion, so a store that has no leader, no node processes or no
// seeded bugs simply does not implement them. The shape follows Jepsen's
// per-system db/client protocol: start a cluster, hand out clients, and,
// when it can, name the nodes holding each role and fault them.

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"

	"github.com/chainraft/chainraft/internal/hosts"
	"github.com/chainraft/chainraft/kv"
	"github.com/chainraft/chainraft/nemesis"
)

// Driver is one kind of store the harness can run.
type Driver interface {
	// Name is the store's name on the command line (--store NAME) and in
	// run directories.
	Name() string
	// Start starts a cluster in env and returns once it serves. It must not
	// leave anything running when it returns an error.
	Start(ctx context.Context, env Env) (Cluster, error)
}

// Cluster is a running store under test. The harness owns it: Close must
// stop every process and goroutine the cluster started and must be safe to
// call more than once.
type Cluster interface {
	// NewClient returns a KV for one workload client. Each has its own
	// request-id space; the harness uses it from one goroutine at a time.
	NewClient() (kv.KV, error)
	// Close stops the cluster and releases everything it holds.
	Close() error
}

// Env is what a driver gets to start a cluster from: where, how big, and
// the run-wide settings every store shares. A store's own settings (the
// chain's chains and replicas, its ZooKeeper) are its driver's flags.
type Env struct {
	// Dir is the run directory: node data directories and logs go below
	// <Dir>/nodes/, a driver's other files in a folder named for it.
	Dir string
	// Nodes is the number of nodes (default 3).
	Nodes int
	// NoFsync turns fsync off in the nodes, for measurements only.
	NoFsync bool
	// NodeCPUs, when positive, gives every node process a CPU quota of
	// that many cores in a cgroup of its own (proc.Spec.CPUs).
	NodeCPUs float64
	// ReadMode is one of the driver's ReadModes (empty: its default).
	ReadMode string
	// Bug plants a seeded bug (one of the driver's SeededBugs; empty: none).
	Bug string
	// Binary is the chainraft executable, for drivers that start
	// `chainraft node <store>` processes.
	Binary string
	// RequestTimeout bounds one client request, retries included.
	RequestTimeout time.Duration
	// Seed is the run's seed, for a driver that makes random choices.
	Seed int64
	// Log receives the harness's progress lines about the cluster.
	Log io.Writer
	// Network, when set, is the nemesis's proxied network: the cluster
	// wires every link between its parties through it
	// (nemesis.Network.Wire). Nil means direct connections, so that a run
	// without network faults measures the store, not the proxy.
	Network *nemesis.Network
	// SpareNodes is how many nodes a run may add beyond Nodes (member
	// faults that add fresh ids): their ports and proxies are wired at start.
	SpareNodes int
	// PowerFS, set when the schedule has power faults, puts every node's
	// data directory on a filesystem that can lose what was not synced
	// (internal/powerfs, through proccluster.Config.PowerFS), so that a
	// power fault drops it. Off otherwise, so that other runs measure the
	// store on the bare disk.
	PowerFS bool
	// Hosts, when set (--hosts), runs the nodes on these hosts over SSH
	// instead of on this machine (proccluster.Config.Hosts), and network
	// faults become firewall rules on them instead of proxies.
	Hosts *hosts.Pool
}

// Optional capabilities of a Driver.
type (
	// FlagDriver has settings of its own, registered on run's and
	// compare's flag sets (every driver's, so `--help` lists them all).
	// The flags set fields of the registered driver value; names must not
	// collide with another driver's.
	FlagDriver interface {
		Flags(fs *pflag.FlagSet)
	}
	// Validator checks env against the driver's own settings before
	// anything starts (a run refused here exits 2).
	Validator interface {
		Validate(env Env) error
	}
	// NodeDriver runs one node of the store in this process:
	// `chainraft node <store> ARGS...`, for drivers whose nodes are
	// chainraft processes. It parses args itself and returns when ctx is
	// done (SIGTERM, SIGINT) or the node fails.
	NodeDriver interface {
		NodeMain(ctx context.Context, args []string) error
	}
	// FaultDriver is a store the nemesis can fault: its roles, with the
	// job each does (compare maps faults between stores by job), and the
	// fault kinds its clusters support. Its clusters implement
	// TargetCluster.
	FaultDriver interface {
		Roles() []Role
		FaultKinds() []string
	}
	// ReadModeDriver lists the read modes a store offers, its default
	// first.
	ReadModeDriver interface {
		ReadModes() []string
	}
	// BugDriver lists the bugs the store can plant (`--bug NAME`), each
	// with the faults that expose it.
	BugDriver interface {
		SeededBugs() []SeededBug
	}
)

// Optional capabilities of a Cluster.
type (
	// TargetCluster is a cluster the nemesis acts on. net is the network
	// the cluster was wired through, or nil when it was not (network faults
	// are then unsupported).
	TargetCluster interface {
		Target(net *nemesis.Network) nemesis.Target
	}
	// ReplicaComparer is a cluster whose replicas can be compared at the
	// end of a run: every replica must hold the same data once quiescent.
	ReplicaComparer interface {
		// CompareReplicas waits (bounded by ctx) until the replicas are
		// quiescent and agree. It returns what it compared, and an error
		// saying how they differ when they do not agree by the deadline; an
		// error wrapping ErrNoDigest skips the check.
		CompareReplicas(ctx context.Context) (detail string, err error)
	}
	// WholeWaiter is a cluster that can wait until every replica it was
	// started with is back in its group, before the replicas are compared.
	WholeWaiter interface {
		WaitServing(ctx context.Context) error
	}
	// CPUMeter is a cluster of node processes whose CPU time the harness
	// can read: every incarnation of a node counted.
	CPUMeter interface {
		NodeCPU() map[uint64]time.Duration
	}
	// MessageCounter is a cluster whose nodes count the peer messages they
	// send; a node that is down, paused or does not answer is left out.
	MessageCounter interface {
		PeerMessagesSent(ctx context.Context) map[uint64]uint64
	}
	// HealthWatcher is a cluster that knows when something it started
	// died unplanned: a node process the nemesis did not kill, a
	// ZooKeeper server, a proxy, a full disk. The harness asks every
	// second; an error ends the run with exit 4 (the infrastructure
	// failed, not the store), naming what died and when, and the history
	// recorded so far is kept and checked.
	HealthWatcher interface {
		Unplanned() error
	}
)

// Jobs a role can do, for mapping faults between stores: a fault aimed at
// a role of one store hits, in another, the role whose first job is the
// same (or, failing that, the first role that does that job at all).
const (
	JobOrderWrites  = "orders writes"      // raft leader, chain head
	JobAnswerReads  = "answers reads"      // raft leader, chain tail
	JobCoordinate   = "coordinates"        // chain master
	JobReplicate    = "replicates"         // raft follower, chain middle
	JobAcknowledge  = "acknowledges"       // chain tail: the write's last replica
	JobServeClients = "serves its clients" // a ZooKeeper server answering its sessions
)

// Role is one role of a store's nodes, resolved at injection time.
type Role struct {
	Name string `json:"name"`
	// Jobs, most important first.
	Jobs []string `json:"jobs"`
	// Indexed roles take ":K" (one of several groups: "head:1").
	Indexed bool `json:"indexed,omitempty"`
}

// ErrNoDigest: the store cannot report a digest of its replicas' data.
var ErrNoDigest = fmt.Errorf("the store reports no replica digest")

var (
	driversMu sync.Mutex
	drivers   = map[string]Driver{}
)

// RegisterDriver makes d available as --store d.Name(). Driver packages
// call it from init; registering a name twice panics.
func RegisterDriver(d Driver) {
	driversMu.Lock()
	defer driversMu.Unlock()
	if _, dup := drivers[d.Name()]; dup {
		panic(fmt.Sprintf("harness: store %q registered twice", d.Name()))
	}
	drivers[d.Name()] = d
}

// Stores lists the registered store names, sorted.
func Stores() []string {
	driversMu.Lock()
	defer driversMu.Unlock()
	names := make([]string, 0, len(drivers))
	for n := range drivers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Drivers lists the registered drivers, by name.
func Drivers() []Driver {
	var out []Driver
	for _, n := range Stores() {
		d, _ := LookupDriver(n)
		out = append(out, d)
	}
	return out
}

// LookupDriver finds a registered driver; the error lists the known names.
func LookupDriver(name string) (Driver, error) {
	driversMu.Lock()
	d, ok := drivers[name]
	driversMu.Unlock()
	if !ok {
		return nil, fmt.Errorf("unknown store %q (known: %s)", name, strings.Join(Stores(), ", "))
	}
	return d, nil
}

// RegisterDriverFlags registers every driver's own flags on fs.
func RegisterDriverFlags(fs *pflag.FlagSet) {
	for _, d := range Drivers() {
		if fd, ok := d.(FlagDriver); ok {
			fd.Flags(fs)
		}
	}
}

// RolesOf is a driver's roles (none if it cannot be faulted).
func RolesOf(d Driver) []Role {
	if fd, ok := d.(FaultDriver); ok {
		return fd.Roles()
	}
	return nil
}

// roleNames is the roles' names, for schedules and messages.
func roleNames(rs []Role) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Name
	}
	return out
}

// findRole finds role name (its ":K" suffix allowed on indexed roles).
func findRole(rs []Role, spec string) (Role, bool) {
	name, suffix, hasSuffix := strings.Cut(spec, ":")
	for _, r := range rs {
		if r.Name == name && (!hasSuffix || r.Indexed) {
			_ = suffix
			return r, true
		}
	}
	return Role{}, false
}

// MapRoleByJob translates role spec of one store into the role of another
// that does the same job: the target role whose first job is the source
// role's first job, else the first target role doing that job at all, else
// the same for the source's later jobs. Roles the nemesis resolves itself
// ("any", "minority", "all", "node:N", ZooKeeper roles) pass unchanged; an
// indexed role keeps its index only when the target role is indexed too.
// ok is false when the source role is not one of from's, or no role of to
// does any of its jobs.
func MapRoleByJob(spec string, from, to []Role) (string, bool) {
	if nemesisRole(spec) {
		return spec, true
	}
	src, ok := findRole(from, spec)
	if !ok {
		return "", false
	}
	_, suffix, hasSuffix := strings.Cut(spec, ":")
	pick := func(r Role) string {
		if hasSuffix && r.Indexed {
			return r.Name + ":" + suffix
		}
		return r.Name
	}
	for _, job := range src.Jobs {
		for _, r := range to {
			if len(r.Jobs) > 0 && r.Jobs[0] == job {
				return pick(r), true
			}
		}
		for _, r := range to {
			if slices.Contains(r.Jobs, job) {
				return pick(r), true
			}
		}
	}
	return "", false
}

// nemesisRole reports whether the nemesis resolves spec itself, whatever
// the store.
func nemesisRole(spec string) bool {
	switch spec {
	case "", nemesis.RoleAny, nemesis.RoleMinority, nemesis.RoleAll:
		return true
	}
	return strings.HasPrefix(spec, "node:") || strings.HasPrefix(spec, "zk")
}

// checkRole refuses a fault role the store does not define, naming it and
// the roles it has.
func checkRole(store string, rs []Role, spec string) error {
	if nemesisRole(spec) {
		return nil
	}
	if _, ok := findRole(rs, spec); ok {
		return nil
	}
	known := append(roleNames(rs), nemesis.RoleAny, nemesis.RoleMinority, nemesis.RoleAll, "node:N")
	return fmt.Errorf("the %s store has no role %q (known: %s)", store, spec, strings.Join(known, ", "))
}
