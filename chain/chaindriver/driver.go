package chaindriver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/chainraft/chainraft/chain"
	"github.com/chainraft/chainraft/harness"
	"github.com/chainraft/chainraft/harness/proccluster"
	"github.com/chainraft/chainraft/internal/zkserver"
	"github.com/chainraft/chainraft/nemesis"
	"github.com/chainraft/chainraft/zkrecipes"
)

// Name is the store's name: `--store chain`, `chainraft node chain`.
const Name = "chain"

// SessionTimeout is the nodes' ZooKeeper session timeout in clusters the
// harness starts. It is the chain's failure-detection time (a dead node is
// spliced out once its session expires), so it is short; and it is what
// the harness's seeded-bug schedules are timed by (stale-tail's fault
// outlasts it).
const SessionTimeout = 2 * time.Second

// Defaults of the driver's settings, the flags' defaults.
const (
	DefaultChains    = 3
	DefaultReplicas  = 3
	DefaultZKServers = 1
)

// Bounds of the cluster's start: ZooKeeper's own start is bounded by
// zkserver; the nodes must then register and every chain serve.
const (
	startWait  = 60 * time.Second
	routerWait = 10 * time.Second // the client connections' ZooKeeper session timeout
	// closeGrace bounds a node's exit after SIGTERM before it is SIGKILLed.
	// A node exits in milliseconds (it closes its session, which takes its
	// ephemerals, the master's election znode among them); the grace is
	// for a node that is stuck, and a stuck node loses nothing to a kill.
	closeGrace = 2 * time.Second
)

func init() {
	harness.RegisterDriver(&Driver{Chains: DefaultChains, Replicas: DefaultReplicas, ZKServers: DefaultZKServers})
}

// Driver starts chain clusters: a ZooKeeper ensemble (started under the run
// directory unless ZK names one) and one `chainraft node chain` process per
// node. The registered value's fields are set by its flags; a Driver made
// in Go takes, for a zero field, the defaults StartChainCluster had: as
// many chains as nodes, min(3, nodes) replicas, one ZooKeeper server.
type Driver struct {
	// Chains is the number of chains; keys are spread over them.
	Chains int
	// Replicas is the number of nodes in each chain.
	Replicas int
	// ZK is an existing ensemble, host:port,...; empty: start one.
	ZK string
	// ZKServers is the size of the ensemble started (1 or 3).
	ZKServers int
	// SessionTimeout is the nodes' session timeout (0: SessionTimeout).
	SessionTimeout time.Duration
}

var (
	_ harness.Driver      = (*Driver)(nil)
	_ harness.FlagDriver  = (*Driver)(nil)
	_ harness.Validator   = (*Driver)(nil)
	_ harness.NodeDriver  = (*Driver)(nil)
	_ harness.FaultDriver = (*Driver)(nil)
	_ harness.BugDriver   = (*Driver)(nil)

	_ harness.ReadModeDriver = (*Driver)(nil)
)

// Name implements harness.Driver.
func (d *Driver) Name() string { return Name }

// ReadModes implements harness.ReadModeDriver: reads at the tail (the
// default) or CRAQ's reads at any member (chain.ReadModeCRAQ). The mode is
// the clients' choice; every node serves both.
func (d *Driver) ReadModes() []string { return chain.ReadModes() }

// Flags implements harness.FlagDriver. The values are checked as they are
// parsed, not only by Validate: the flags are registered on every run,
// whatever --store says, and `--zk-servers 2` is bad usage even when the
// run is of another store (the lock workload reads --zk and --zk-servers
// too, by these names).
func (d *Driver) Flags(fs *pflag.FlagSet) {
	fs.StringVar(&d.ZK, "zk", d.ZK, "chain: existing ZooKeeper ensemble host:port,... (empty: start one)")
	fs.Var(&checkedInt{p: &d.ZKServers, check: checkZKServers}, "zk-servers", "chain: ZooKeeper servers to start (1 or 3)")
	fs.Var(&checkedInt{p: &d.Chains, check: checkPositive}, "chains", "chain: number of chains")
	fs.Var(&checkedInt{p: &d.Replicas, check: checkPositive}, "replicas", "chain: nodes per chain")
}

// checkedInt is an int flag whose value is checked when parsed, so a bad
// one is a flag error (usage, exit 2) naming the flag.
type checkedInt struct {
	p     *int
	check func(int) error
}

func (v *checkedInt) String() string {
	if v.p == nil {
		return "0"
	}
	return strconv.Itoa(*v.p)
}

func (v *checkedInt) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		return errors.New("not an integer")
	}
	if err := v.check(n); err != nil {
		return err
	}
	*v.p = n
	return nil
}

func (v *checkedInt) Type() string { return "int" }

func checkPositive(n int) error {
	if n <= 0 {
		return fmt.Errorf("must be positive, got %d", n)
	}
	return nil
}

func checkZKServers(n int) error {
	if n != 1 && n != 3 {
		return fmt.Errorf("must be 1 or 3, got %d", n)
	}
	return nil
}

// settings is the driver's settings for env, zero fields defaulted.
type settings struct {
	nodes     int
	placement chain.Placement
	zk        []string // empty: start an ensemble
	zkServers int
	session   time.Duration
}

func (d *Driver) settings(env harness.Env) (settings, error) {
	s := settings{nodes: env.Nodes, zkServers: d.ZKServers, session: d.SessionTimeout}
	if s.nodes == 0 {
		s.nodes = 3
	}
	chains, replicas := d.Chains, d.Replicas
	if chains == 0 {
		chains = s.nodes
	}
	if replicas == 0 {
		replicas = min(3, s.nodes)
	}
	if s.zkServers == 0 {
		s.zkServers = DefaultZKServers
	}
	if s.session == 0 {
		s.session = SessionTimeout
	}
	switch {
	case s.nodes < 0:
		return s, fmt.Errorf("--nodes must be positive, got %d", s.nodes)
	case chains < 0:
		return s, fmt.Errorf("--chains must be positive, got %d", chains)
	case replicas < 0:
		return s, fmt.Errorf("--replicas must be positive, got %d", replicas)
	case replicas > s.nodes:
		return s, fmt.Errorf("--nodes %d is below --replicas %d: every chain needs that many distinct nodes", s.nodes, replicas)
	case d.ZK == "":
		if err := checkZKServers(s.zkServers); err != nil {
			return s, fmt.Errorf("--zk-servers %v", err)
		}
	}
	if d.ZK != "" {
		s.zk = zkrecipes.SplitAddrs(d.ZK)
		if len(s.zk) == 0 {
			return s, fmt.Errorf("--zk %q names no server", d.ZK)
		}
	}
	if err := chain.CheckSessionTimeout(s.session); err != nil {
		return s, err
	}
	if err := checkBug(env.Bug); err != nil {
		return s, fmt.Errorf("--bug: %w", err)
	}
	if err := chain.CheckReadMode(env.ReadMode); err != nil {
		return s, fmt.Errorf("--read-mode: %w", err)
	}
	// The cluster serves reads at every member when its clients read so:
	// in CRAQ mode, or carrying craq-dirty-read (whose clients read in CRAQ
	// mode whatever the run's mode).
	readAny := env.ReadMode == chain.ReadModeCRAQ || env.Bug == chain.BugCraqDirtyRead
	s.placement = chain.Placement{Chains: chains, Replicas: replicas, Nodes: s.nodes, ReadAny: readAny}
	if err := s.placement.Validate(); err != nil {
		return s, err
	}
	return s, nil
}

// Validate implements harness.Validator: the chain settings and the
// placement they make with env's nodes, before anything starts.
func (d *Driver) Validate(env harness.Env) error {
	_, err := d.settings(env)
	return err
}

// Roles implements harness.FaultDriver. Head, middle and tail are indexed
// by chain ("tail:1"); unindexed, one chain's is picked with the fault's
// seed. The tail answers reads and is the write's last replica, whose
// apply acknowledges it.
func (d *Driver) Roles() []harness.Role {
	return []harness.Role{
		{Name: nemesis.RoleHead, Jobs: []string{harness.JobOrderWrites}, Indexed: true},
		{Name: nemesis.RoleMiddle, Jobs: []string{harness.JobReplicate}, Indexed: true},
		{Name: nemesis.RoleTail, Jobs: []string{harness.JobAnswerReads, harness.JobAcknowledge}, Indexed: true},
		{Name: nemesis.RoleMaster, Jobs: []string{harness.JobCoordinate}},
	}
}

// FaultKinds implements harness.FaultDriver: every kind. zk-kill needs the
// ensemble the harness started (with --zk there is none to kill, and the
// nemesis skips it); member is a planned departure (Target.RemoveMember);
// power cuts the nodes, not ZooKeeper (power.go).
func (d *Driver) FaultKinds() []string {
	return []string{nemesis.KindKill, nemesis.KindPause, nemesis.KindPartition, nemesis.KindZKPartition,
		nemesis.KindZKKill, nemesis.KindMember, nemesis.KindDelay, nemesis.KindPower, nemesis.KindClock}
}

// Start implements harness.Driver: ZooKeeper (unless d.ZK), the nodes, the
// client connections, and a wait until every chain serves. On error nothing is left
// running.
func (d *Driver) Start(ctx context.Context, env harness.Env) (_ harness.Cluster, err error) {
	return d.StartCluster(ctx, env)
}

// StartCluster is Start with the concrete cluster, for tests and tools
// that use its accessors.
func (d *Driver) StartCluster(ctx context.Context, env harness.Env) (_ *Cluster, err error) {
	s, err := d.settings(env)
	if err != nil {
		return nil, fmt.Errorf("chain cluster: %w", err)
	}
	if env.Binary == "" {
		return nil, errors.New("chain cluster: Env.Binary (the chainraft executable) is required")
	}
	if env.Dir == "" {
		return nil, errors.New("chain cluster: Env.Dir is required")
	}
	if env.Log == nil {
		env.Log = io.Discard
	}
	c := &Cluster{env: env, placement: s.placement, root: runRoot(env.Dir), zkKilled: map[int]bool{}, deadSeen: map[string]time.Time{}}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	c.zkAddrs = s.zk
	if len(c.zkAddrs) == 0 && env.Hosts != nil {
		fmt.Fprintf(env.Log, "chain: starting ZooKeeper on a host of its own\n")
		if c.hostZK, err = startHostZK(ctx, env.Hosts, s.nodes); err != nil {
			return nil, fmt.Errorf("chain cluster: %w", err)
		}
		c.zkAddrs = []string{c.hostZK.addr}
	} else if len(c.zkAddrs) == 0 {
		fmt.Fprintf(env.Log, "chain: starting ZooKeeper (%d server(s)) under %s\n", s.zkServers, filepath.Join(env.Dir, "zk"))
		c.zk, err = zkserver.Start(ctx, zkserver.Config{Dir: env.Dir, Servers: s.zkServers})
		if err != nil {
			return nil, fmt.Errorf("chain cluster: %w", err)
		}
		c.zkAddrs = c.zk.Addrs()
	} else if err := c.clearRoot(ctx); err != nil {
		return nil, fmt.Errorf("chain cluster: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(env.Dir, "nodes"), 0o755); err != nil {
		return nil, fmt.Errorf("chain cluster: %w", err)
	}
	// With the nemesis's network every node→node, node→ZooKeeper and
	// client→node link goes through a proxy of its own (proccluster wires
	// them). The harness's own ZooKeeper session (chain.Conns, Master)
	// stays direct: it is the observer, not a party. A chain member fault
	// brings the same node back, so no spare ids are wired.
	c.pc, err = proccluster.New(proccluster.Config{Store: Name, Dir: env.Dir, Nodes: s.nodes,
		CPUs: env.NodeCPUs, Network: env.Network, ZK: c.zkAddrs, Log: env.Log, PowerFS: env.PowerFS,
		Hosts: env.Hosts, Binary: env.Binary})
	if err != nil {
		return nil, err
	}
	for id := 1; id <= s.nodes; id++ {
		if err := c.pc.Start(id, env.Binary, c.nodeArgs(s, id), nil); err != nil {
			return nil, err
		}
	}
	opts := chain.ClientOptions{ZK: c.zkAddrs, Root: c.root, Chains: s.placement.Chains, SessionTimeout: routerWait,
		RequestTimeout: env.RequestTimeout}
	c.conns, err = chain.Dial(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("chain cluster: %w", err)
	}
	c.clients = c.conns
	var clientAddrs map[uint64]string
	if c.pc.Proxied() {
		clientAddrs = map[uint64]string{}
		for id := 1; id <= s.nodes; id++ {
			clientAddrs[uint64(id)] = c.pc.ClientAddr(id)
		}
		c.conns.SetAddrs(clientAddrs)
	}
	if err := c.pc.WaitReady(ctx, startWait, c.serving); err != nil {
		return nil, err
	}
	// The workload's clients read as the run asks (--read-mode), and carry
	// the client half of a seeded bug: with head-read every other read of
	// a client goes to the head; craq-dirty-read lives in the nodes' CRAQ
	// reads, so its clients read in CRAQ mode whatever the run's mode.
	// They have their own connections, so that the readiness probe above
	// and the end-of-run checks read at the tails.
	opts.ReadMode = env.ReadMode
	switch env.Bug {
	case chain.BugHeadRead:
		opts.Bug = env.Bug
	case chain.BugCraqDirtyRead:
		opts.ReadMode = chain.ReadModeCRAQ
	}
	if opts.Bug != "" || opts.ReadMode == chain.ReadModeCRAQ {
		if c.clients, err = chain.Dial(ctx, opts); err != nil {
			return nil, fmt.Errorf("chain cluster: %w", err)
		}
		if clientAddrs != nil {
			c.clients.SetAddrs(clientAddrs)
		}
	}
	fmt.Fprintf(env.Log, "chain: %d nodes serving %d chains of %d (ZooKeeper %s, under %s)\n",
		s.nodes, s.placement.Chains, s.placement.Replicas, strings.Join(c.zkAddrs, ","), c.root)
	return c, nil
}

// nodeArgs is node id's command line: `chainraft node chain ...`, with its
// own ZooKeeper and peer proxies when the network is wired.
func (c *Cluster) nodeArgs(s settings, id int) []string {
	args := []string{"node", Name,
		"--id", strconv.Itoa(id), "--listen", c.pc.PeerListen(id), "--data-dir", c.pc.DataDir(id),
		"--zk", c.pc.ZKConnect(id),
		"--chains", strconv.Itoa(s.placement.Chains), "--replicas", strconv.Itoa(s.placement.Replicas),
		"--nodes", strconv.Itoa(s.nodes), "--session-timeout", s.session.String(), "--zk-root", c.root}
	if s.placement.ReadAny {
		args = append(args, "--read-any")
	}
	bug, noFsync := nodeBug(c.env)
	if noFsync {
		args = append(args, "--no-fsync")
	}
	if bug != "" {
		args = append(args, "--bug", bug)
	}
	if c.pc.Proxied() {
		// --peers only overrides where the node dials its peers; the
		// chains themselves come from ZooKeeper.
		var peers []string
		for b := 1; b <= s.nodes; b++ {
			if b != id {
				peers = append(peers, fmt.Sprintf("%d=%s", b, c.pc.Dial(id, b)))
			}
		}
		if len(peers) > 0 {
			args = append(args, "--peers", strings.Join(peers, ","))
		}
	}
	return args
}
