package etcd

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/chainraft/chainraft/harness"
	"github.com/chainraft/chainraft/harness/proccluster"
	"github.com/chainraft/chainraft/kv"
	"github.com/chainraft/chainraft/nemesis"
)

// Bounds.
const (
	// startTimeout bounds the wait for a fresh cluster to elect a leader
	// and answer a linearizable read.
	startTimeout = 30 * time.Second
	// statusTimeout bounds one member's answer to the harness's own calls
	// (status, hash, membership): a member that cannot answer in that
	// time is paused, partitioned or overloaded.
	statusTimeout = 2 * time.Second
	// dialTimeout bounds a client's first connection.
	dialTimeout = 2 * time.Second
	// stopGrace is how long a member gets to stop cleanly (SIGTERM) when
	// it leaves the membership.
	stopGrace = 2 * time.Second
	// connsPerMember is how many gRPC connections the workload's clients
	// share per member: a few, as an application would have, so that 64
	// clients do not all queue behind one HTTP/2 connection.
	connsPerMember = 2
	// addWait bounds the retries of a member add the cluster refuses as
	// unhealthy (see AddMember).
	addWait = 15 * time.Second
)

// Cluster is a running etcd store: one etcd process per node through
// proccluster, the workload's client connections (through the proxies
// when the network is wired) and the harness's own direct connections to
// every member (observers: status, hashes, membership).
type Cluster struct {
	env    harness.Env
	bin    string
	pc     *proccluster.Cluster
	fronts map[int]*front // peer fronts by node id, when proxied

	mu sync.Mutex
	// members are the node ids in the membership, in the order clients
	// rotate over them; memberID maps node ids to etcd member ids.
	members  []int
	memberID map[int]uint64
	// conns[id] are the workload's connections to node id; observers[id]
	// is the harness's direct one.
	conns     map[int][]*clientv3.Client
	observers map[int]*clientv3.Client
	nextSpare int
	nextConn  int

	targetOnce sync.Once
	target     *Target

	closeOnce sync.Once
	closeErr  error
}

var (
	_ harness.Cluster         = (*Cluster)(nil)
	_ harness.TargetCluster   = (*Cluster)(nil)
	_ harness.ReplicaComparer = (*Cluster)(nil)
	_ harness.CPUMeter        = (*Cluster)(nil)
	_ harness.HealthWatcher   = (*Cluster)(nil)
)

func startCluster(ctx context.Context, env harness.Env, bin string) (_ *Cluster, err error) {
	// Ports (and proxies) for the spare ids a member fault adds are made
	// now, as for raft: the added member's peer URL must be known to the
	// fronts and proxies from the start.
	pc, err := proccluster.New(proccluster.Config{
		Store: Name, Dir: env.Dir, Nodes: env.Nodes, Spares: max(env.SpareNodes, 0), ClientPorts: true,
		CPUs: env.NodeCPUs, Network: env.Network, Log: env.Log, Hosts: env.Hosts,
	})
	if err != nil {
		return nil, err
	}
	c := &Cluster{
		env: env, bin: bin, pc: pc, fronts: map[int]*front{}, memberID: map[int]uint64{},
		conns: map[int][]*clientv3.Client{}, observers: map[int]*clientv3.Client{}, nextSpare: env.Nodes + 1,
	}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	if pc.Proxied() {
		for id := 1; id <= env.Nodes+max(env.SpareNodes, 0); id++ {
			to := id
			f, err := newFront(func(from int) string { return pc.Dial(from, to) }, c.ownerOf)
			if err != nil {
				return nil, fmt.Errorf("etcd cluster: %w", err)
			}
			c.fronts[id] = f
		}
	}
	var initial []string
	for id := 1; id <= env.Nodes; id++ {
		initial = append(initial, fmt.Sprintf("%s=http://%s", memberName(id), c.advertisedPeer(id)))
	}
	for id := 1; id <= env.Nodes; id++ {
		if err := c.startNode(id, initial, "new"); err != nil {
			return nil, err
		}
		c.members = append(c.members, id)
	}
	if err := pc.WaitReady(ctx, startTimeout, c.probe); err != nil {
		return nil, err
	}
	for _, id := range c.members {
		if err := c.connect(id); err != nil {
			return nil, err
		}
	}
	if err := c.learnMemberIDs(ctx); err != nil {
		return nil, err
	}
	fmt.Fprintf(env.Log, "etcd: %d members serving (%s reads, peer links proxied %v)\n", env.Nodes, env.ReadMode, pc.Proxied())
	return c, nil
}

func memberName(id int) string { return fmt.Sprintf("n%d", id) }

// advertisedPeer is the peer address node id advertises: its front when
// the network is wired (see front), else where it listens.
func (c *Cluster) advertisedPeer(id int) string {
	if f := c.fronts[id]; f != nil {
		return f.Addr()
	}
	return c.pc.PeerListen(id)
}

// ownerOf maps a pid to the node whose current process it is (0: none).
func (c *Cluster) ownerOf(pid int) int {
	for _, id := range c.pc.IDs() {
		if p := c.pc.Process(id); p != nil && p.Pid() == pid {
			return id
		}
	}
	return 0
}

// startNode starts node id's etcd. Restarts (proccluster) reuse the same
// command line: on a data directory that holds a WAL, etcd ignores the
// initial-cluster flags.
func (c *Cluster) startNode(id int, initial []string, state string) error {
	args := []string{
		"--name", memberName(id),
		"--data-dir", c.pc.DataDir(id),
		"--listen-peer-urls", "http://" + c.pc.PeerListen(id),
		"--initial-advertise-peer-urls", "http://" + c.advertisedPeer(id),
		"--listen-client-urls", "http://" + c.pc.ClientListen(id),
		"--advertise-client-urls", "http://" + c.pc.ClientListen(id),
		"--initial-cluster", strings.Join(initial, ","),
		"--initial-cluster-state", state,
		"--initial-cluster-token", "chainraft",
		// etcd 3.5's default; without it an isolated member's elections
		// inflate its term and depose the leader when the partition heals.
		"--pre-vote=true",
		"--logger", "zap", "--log-outputs", "stderr", "--log-level", "info",
	}
	return c.pc.Start(id, c.bin, args, nil)
}

// probe is the readiness test: a linearizable read answered by the
// cluster (any member, direct).
func (c *Cluster) probe(ctx context.Context) error {
	var eps []string
	for id := 1; id <= c.env.Nodes; id++ {
		eps = append(eps, c.pc.ClientListen(id))
	}
	cli, err := newClient(eps)
	if err != nil {
		return err
	}
	defer cli.Close()
	_, err = cli.Get(ctx, "chainraft-probe")
	return err
}

// newClient is a clientv3 client of endpoints with chainraft's settings:
// no logging, a short dial, and reconnection backoff capped at a second
// (gRPC's default cap is two minutes, longer than a whole run's faults).
func newClient(endpoints []string) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: dialTimeout,
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: time.Second,
		})},
		// A closed-loop client retries nothing on its own beyond what
		// clientv3 deems safe; the harness's deadline bounds the rest.
		DialKeepAliveTime:    time.Second,
		DialKeepAliveTimeout: time.Second,
	})
}

// connect makes node id's workload connections (through its client proxy
// when wired) and its observer (direct).
func (c *Cluster) connect(id int) error {
	var conns []*clientv3.Client
	for range connsPerMember {
		cli, err := newClient([]string{c.pc.ClientAddr(id)})
		if err != nil {
			for _, x := range conns {
				x.Close()
			}
			return fmt.Errorf("etcd cluster: client of node %d: %w", id, err)
		}
		conns = append(conns, cli)
	}
	obs, err := newClient([]string{c.pc.ClientListen(id)})
	if err != nil {
		for _, x := range conns {
			x.Close()
		}
		return fmt.Errorf("etcd cluster: observer of node %d: %w", id, err)
	}
	c.mu.Lock()
	c.conns[id] = conns
	c.observers[id] = obs
	c.mu.Unlock()
	return nil
}

// learnMemberIDs maps node ids to etcd member ids, from each member's own
// status.
func (c *Cluster) learnMemberIDs(ctx context.Context) error {
	for _, id := range c.Members() {
		deadline := time.Now().Add(startTimeout)
		for {
			st, err := c.status(ctx, id)
			if err == nil {
				c.mu.Lock()
				c.memberID[id] = st.Header.MemberId
				c.mu.Unlock()
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("etcd cluster: status of node %d: %w", id, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

// Members lists the node ids in the membership, in client rotation order.
func (c *Cluster) Members() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.members...)
}

func (c *Cluster) observer(id int) *clientv3.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.observers[id]
}

// status asks node id (direct) for its status.
func (c *Cluster) status(ctx context.Context, id int) (*clientv3.StatusResponse, error) {
	obs := c.observer(id)
	if obs == nil {
		return nil, fmt.Errorf("etcd cluster: no node %d", id)
	}
	sctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	return obs.Status(sctx, c.pc.ClientListen(id))
}

// Leader is the node that reports itself leader, the highest term winning
// when two briefly do; an error when none does right now.
func (c *Cluster) Leader(ctx context.Context) (int, error) {
	best, bestTerm := 0, uint64(0)
	for _, id := range c.Members() {
		if !c.pc.Up(id) {
			continue
		}
		st, err := c.status(ctx, id)
		if err != nil {
			continue
		}
		if st.Leader == st.Header.MemberId && st.RaftTerm >= bestTerm {
			best, bestTerm = id, st.RaftTerm
		}
	}
	if best == 0 {
		return 0, errors.New("etcd cluster: no leader right now")
	}
	return best, nil
}

// NewClient implements harness.Cluster: a client that starts at one member
// (clients are dealt over the members in turn) and moves to the next
// after an error.
func (c *Cluster) NewClient() (kv.KV, error) {
	c.mu.Lock()
	n := c.nextConn
	c.nextConn++
	c.mu.Unlock()
	return &client{c: c, serializable: c.env.ReadMode == ReadModeSerializable, pos: n, conn: n / max(len(c.Members()), 1)}, nil
}

// conn is the workload connection number k of the member at rotation
// position pos, and that member's node id.
func (c *Cluster) conn(pos, k int) (*clientv3.Client, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.members) == 0 {
		return nil, 0
	}
	id := c.members[pos%len(c.members)]
	cs := c.conns[id]
	if len(cs) == 0 {
		return nil, id
	}
	return cs[k%len(cs)], id
}

// Close implements harness.Cluster: it kills every etcd process (their
// state is on disk; a crash loses nothing a kill would not), closes the
// connections and the fronts, and releases every port. Idempotent.
func (c *Cluster) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		var all []*clientv3.Client
		for _, cs := range c.conns {
			all = append(all, cs...)
		}
		for _, o := range c.observers {
			all = append(all, o)
		}
		c.conns, c.observers = map[int][]*clientv3.Client{}, map[int]*clientv3.Client{}
		c.mu.Unlock()
		c.closeErr = c.pc.Close(0)
		for _, cli := range all {
			_ = cli.Close()
		}
		for _, f := range c.fronts {
			f.Close()
		}
	})
	return c.closeErr
}

// NodeCPU implements harness.CPUMeter.
func (c *Cluster) NodeCPU() map[uint64]time.Duration { return c.pc.NodeCPU() }

// Unplanned implements harness.HealthWatcher.
func (c *Cluster) Unplanned() error { return c.pc.Unplanned() }

// Target implements harness.TargetCluster (one target per cluster: it
// remembers removed and replacing members).
func (c *Cluster) Target(*nemesis.Network) nemesis.Target {
	c.targetOnce.Do(func() {
		c.target = &Target{Target: proccluster.Target{C: c.pc}, c: c, Replacements: proccluster.Replacements{Store: Name, IDs: c.pc.IDs}}
	})
	return c.target
}

// RemoveMember takes node id out of the membership: its process is
// stopped first (SIGTERM), then the member is removed by the cluster API
// through another member. Stopping first keeps the harness the one that
// ends the process (a removed etcd exits by itself, which would read as a
// death nobody planned), and removing a stopped member is what an
// operator replacing a dead machine does.
func (c *Cluster) RemoveMember(ctx context.Context, id int) error {
	c.mu.Lock()
	mid, ok := c.memberID[id]
	c.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: node %d is no member", nemesis.ErrNoTarget, id)
	}
	if err := c.pc.Stop(id, stopGrace); err != nil {
		return err
	}
	var last error
	for _, other := range c.Members() {
		if other == id || !c.pc.Up(other) {
			continue
		}
		mctx, cancel := context.WithTimeout(ctx, 2*statusTimeout)
		_, err := c.observer(other).MemberRemove(mctx, mid)
		cancel()
		if err == nil {
			c.dropMember(id)
			return nil
		}
		last = err
	}
	// Not removed: the node comes back as it was.
	_ = c.pc.Restart(id)
	return fmt.Errorf("etcd cluster: remove node %d: %v", id, last)
}

func (c *Cluster) dropMember(id int) {
	c.mu.Lock()
	for i, m := range c.members {
		if m == id {
			c.members = append(c.members[:i], c.members[i+1:]...)
			break
		}
	}
	delete(c.memberID, id)
	c.mu.Unlock()
}

// AddMember adds a fresh member on the next spare id (etcd, like raft,
// never takes a removed member back: a new one joins with an empty data
// directory and catches up from the leader) and returns its node id.
func (c *Cluster) AddMember(ctx context.Context) (int, error) {
	c.mu.Lock()
	id := c.nextSpare
	if c.pc.PeerListen(id) == "" {
		c.mu.Unlock()
		return 0, fmt.Errorf("etcd cluster: no spare node %d (SpareNodes %d)", id, c.env.SpareNodes)
	}
	c.nextSpare++
	c.mu.Unlock()
	url := "http://" + c.advertisedPeer(id)
	// etcd refuses an add ("unhealthy cluster") until the leader has heard
	// from enough members for its health interval (5 s), which a removal or
	// an election just before resets: the add is asked again for a while.
	var resp *clientv3.MemberAddResponse
	var last error
	deadline := time.Now().Add(addWait)
	for resp == nil && time.Now().Before(deadline) && ctx.Err() == nil {
		for _, other := range c.Members() {
			if !c.pc.Up(other) {
				continue
			}
			mctx, cancel := context.WithTimeout(ctx, 2*statusTimeout)
			r, err := c.observer(other).MemberAdd(mctx, []string{url})
			cancel()
			if err == nil {
				resp = r
				break
			}
			last = err
		}
		if resp == nil {
			time.Sleep(500 * time.Millisecond)
		}
	}
	if resp == nil {
		return 0, fmt.Errorf("etcd cluster: add node %d: %v", id, last)
	}
	// The new member's --initial-cluster is the membership as the add
	// returned it, named as the members were started.
	var initial []string
	c.mu.Lock()
	names := map[uint64]string{}
	for nid, mid := range c.memberID {
		names[mid] = memberName(nid)
	}
	c.mu.Unlock()
	for _, m := range resp.Members {
		name := names[m.ID]
		if m.ID == resp.Member.ID {
			name = memberName(id)
		}
		if name == "" || len(m.PeerURLs) == 0 {
			continue
		}
		initial = append(initial, name+"="+m.PeerURLs[0])
	}
	sort.Strings(initial)
	if err := c.startNode(id, initial, "existing"); err != nil {
		return 0, err
	}
	if err := c.connect(id); err != nil {
		return 0, err
	}
	c.mu.Lock()
	c.members = append(c.members, id)
	c.memberID[id] = resp.Member.ID
	c.mu.Unlock()
	return id, nil
}
