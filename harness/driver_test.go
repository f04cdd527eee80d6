package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/histories"
	"github.com/chainraft/chainraft/kv"
	"github.com/chainraft/chainraft/nemesis"
)

// The harness's own tests run stores defined here, in test files, through
// the same driver interface real stores use: the harness names none of
// them, and a driver is all a new store needs.

// funcDriver is a driver made of a name and a start function.
type funcDriver struct {
	name  string
	start func(context.Context, Env) (Cluster, error)
}

func (d funcDriver) Name() string { return d.name }
func (d funcDriver) Start(ctx context.Context, env Env) (Cluster, error) {
	return d.start(ctx, env)
}

// memCluster is a kv.Memory.
type memCluster struct{ m *kv.Memory }

func (c *memCluster) NewClient() (kv.KV, error) { return paced(c.m.Session()), nil }
func (c *memCluster) Close() error              { return nil }

// faultDriver is a memory store of three pretend nodes the nemesis can
// fault: while any node is killed or paused, every operation fails
// definitely (so the history stays linearizable), and every call the
// nemesis makes is counted. Its roles are given per test, so a test can
// declare raft-like or chain-like ones.
type faultDriver struct {
	name  string
	roles []Role
	kinds []string
	bugs  []SeededBug

	mu       sync.Mutex
	clusters []*faultCluster
}

func (d *faultDriver) Name() string            { return d.name }
func (d *faultDriver) Roles() []Role           { return d.roles }
func (d *faultDriver) FaultKinds() []string    { return d.kinds }
func (d *faultDriver) SeededBugs() []SeededBug { return append([]SeededBug(nil), d.bugs...) }
func (d *faultDriver) Start(_ context.Context, env Env) (Cluster, error) {
	c := &faultCluster{m: kv.NewMemory(), down: map[int]bool{}, calls: map[string]int{}, nodes: env.Nodes, net: env.Network}
	d.mu.Lock()
	d.clusters = append(d.clusters, c)
	d.mu.Unlock()
	return c, nil
}

func (d *faultDriver) last(t *testing.T) *faultCluster {
	d.mu.Lock()
	defer d.mu.Unlock()
	require.NotEmpty(t, d.clusters)
	return d.clusters[len(d.clusters)-1]
}

type faultCluster struct {
	m     *kv.Memory
	nodes int
	net   *nemesis.Network

	mu    sync.Mutex
	down  map[int]bool
	calls map[string]int
	roles []string // roles resolved, in order
}

func (c *faultCluster) NewClient() (kv.KV, error) { return paced(faultClient{c, c.m.Session()}), nil }
func (c *faultCluster) Close() error              { return nil }

func (c *faultCluster) Target(*nemesis.Network) nemesis.Target { return faultTarget{c} }

func (c *faultCluster) anyDown() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, d := range c.down {
		if d {
			return true
		}
	}
	return false
}

func (c *faultCluster) count(what string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[what]
}

var errDown = fmt.Errorf("%w: a node is down", kv.ErrDefinite)

type faultClient struct {
	c *faultCluster
	s kv.KV
}

func (f faultClient) Get(ctx context.Context, k string) (string, bool, error) {
	if f.c.anyDown() {
		return "", false, errDown
	}
	return f.s.Get(ctx, k)
}
func (f faultClient) Put(ctx context.Context, k, v string) error {
	if f.c.anyDown() {
		return errDown
	}
	return f.s.Put(ctx, k, v)
}
func (f faultClient) Append(ctx context.Context, k, v string) error {
	if f.c.anyDown() {
		return errDown
	}
	return f.s.Append(ctx, k, v)
}
func (f faultClient) CAS(ctx context.Context, k, e, v string) (bool, error) {
	if f.c.anyDown() {
		return false, errDown
	}
	return f.s.CAS(ctx, k, e, v)
}

// faultTarget resolves every role to node 1: the store is pretend.
type faultTarget struct{ c *faultCluster }

func (t faultTarget) Nodes() []int {
	out := make([]int, t.c.nodes)
	for i := range out {
		out[i] = i + 1
	}
	return out
}
func (t faultTarget) Resolve(_ context.Context, role string) ([]int, error) {
	t.c.mu.Lock()
	t.c.roles = append(t.c.roles, role)
	t.c.mu.Unlock()
	return []int{1}, nil
}
func (t faultTarget) set(what string, node int, down bool) error {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	t.c.calls[what]++
	t.c.down[node] = down
	return nil
}
func (t faultTarget) Kill(_ context.Context, n int) error    { return t.set("kill", n, true) }
func (t faultTarget) Restart(_ context.Context, n int) error { return t.set("restart", n, false) }
func (t faultTarget) Pause(_ context.Context, n int) error   { return t.set("pause", n, true) }
func (t faultTarget) Resume(_ context.Context, n int) error  { return t.set("resume", n, false) }
func (t faultTarget) RemoveMember(context.Context, int) error {
	return fmt.Errorf("%w: no membership", nemesis.ErrUnsupported)
}
func (t faultTarget) AddMember(context.Context, int) error {
	return fmt.Errorf("%w: no membership", nemesis.ErrUnsupported)
}
func (t faultTarget) Network() *nemesis.Network { return nil }
func (t faultTarget) ZK() nemesis.ZKTarget      { return nil }

// Roles like a raft store's and a chain store's, for the mapping tests.
var (
	leaderRoles = []Role{
		{Name: "leader", Jobs: []string{JobOrderWrites, JobAnswerReads, JobCoordinate}},
		{Name: "follower", Jobs: []string{JobReplicate}},
	}
	chainRoles = []Role{
		{Name: "head", Jobs: []string{JobOrderWrites}, Indexed: true},
		{Name: "middle", Jobs: []string{JobReplicate}, Indexed: true},
		{Name: "tail", Jobs: []string{JobAnswerReads, JobAcknowledge}, Indexed: true},
		{Name: "master", Jobs: []string{JobCoordinate}},
	}
	// leaderDriver and chainDriver are registered fault drivers with those
	// roles; leaderDriver has a seeded bug.
	leaderDriver = &faultDriver{name: "test-leader", roles: leaderRoles,
		kinds: []string{nemesis.KindKill, nemesis.KindPause},
		bugs: []SeededBug{
			{Name: "lost-ack", Mistake: "a test bug", Faults: []nemesis.Fault{{Kind: nemesis.KindKill, Role: "leader"}}, Keys: 5, AppendFraction: 0.3},
			{Name: "quiet", Mistake: "a bug without faults", Keys: 4},
		}}
	chainDriver = &faultDriver{name: "test-chain", roles: chainRoles, kinds: []string{nemesis.KindKill, nemesis.KindPause}}
)

// Test-only stores, registered once for the test binary. Each but the
// memory store is a wrapper over kv.Memory that breaks one thing on purpose.
func init() {
	RegisterDriver(funcDriver{"memory", func(context.Context, Env) (Cluster, error) {
		return &memCluster{m: kv.NewMemory()}, nil
	}})
	RegisterDriver(funcDriver{"test-stale", func(context.Context, Env) (Cluster, error) {
		return &staleCluster{m: kv.NewMemory(), old: map[string]string{}}, nil
	}})
	RegisterDriver(funcDriver{"test-lost", func(context.Context, Env) (Cluster, error) {
		return &lostCluster{m: kv.NewMemory()}, nil
	}})
	RegisterDriver(funcDriver{"test-tracked", func(context.Context, Env) (Cluster, error) {
		c := &trackedCluster{m: kv.NewMemory()}
		trackedMu.Lock()
		tracked = append(tracked, c)
		trackedMu.Unlock()
		return c, nil
	}})
	RegisterDriver(funcDriver{"test-fail-start", func(context.Context, Env) (Cluster, error) {
		return nil, errors.New("node 2 would not start")
	}})
	RegisterDriver(leaderDriver)
	RegisterDriver(chainDriver)
}

func TestUnknownStoreListsTheRegistered(t *testing.T) {
	_, err := LookupDriver("nosuch")
	require.ErrorContains(t, err, `unknown store "nosuch"`)
	require.ErrorContains(t, err, "memory, test-chain")
	cfg := baseConfig(t, "nosuch")
	_, err = Run(context.Background(), cfg)
	require.ErrorIs(t, err, ErrInvalidConfig)
	require.ErrorContains(t, err, "known: ")
}

// TestDriverDefinedInATestRunsUnderFaults runs a driver this file defines
// through Run under a generated schedule, and through Compare against a
// driver with other roles, the faults mapped by job.
func TestDriverDefinedInATestRunsUnderFaults(t *testing.T) {
	d := &faultDriver{name: "test-own", roles: leaderRoles, kinds: []string{nemesis.KindKill, nemesis.KindPause}}
	cfg := baseConfig(t, "")
	cfg.Driver = d
	cfg.TimeLimit = 1500 * time.Millisecond
	cfg.Nemesis = NemesisConfig{Kinds: []string{"kill", "pause"}, Interval: 200 * time.Millisecond}
	res, err := Run(context.Background(), cfg)
	require.NoError(t, err)
	require.Equal(t, "test-own", res.Summary.Store)
	require.Equal(t, string(histories.VerdictOK), res.Summary.Verdict)
	c := d.last(t)
	require.Positive(t, c.count("kill")+c.count("pause"), "the nemesis faulted the driver's cluster")
	require.Equal(t, c.count("kill"), c.count("restart"), "every kill healed")
	require.Equal(t, c.count("pause"), c.count("resume"), "every pause healed")
	require.Empty(t, FailedChecks(res.Summary))

	// The same schedule through compare, on a chain-like store: the
	// leader's faults land on the head, the followers' on a middle node.
	cc := compareConfig(t, "")
	cc.Stores = nil
	cc.Drivers = []Driver{d, chainDriver}
	cc.Run.Driver = nil
	cc.Run.TimeLimit = 1500 * time.Millisecond
	cc.Run.Nemesis = NemesisConfig{Kinds: []string{"kill", "pause"}, Interval: 200 * time.Millisecond}
	cres, err := Compare(context.Background(), cc)
	require.NoError(t, err)
	require.Equal(t, "ok", cres.Verdict())
	first := d.last(t)
	second := chainDriver.last(t)
	require.NotEmpty(t, first.roles)
	want := map[string]string{"leader": "head", "follower": "middle", "any": "any"}
	var got []string
	for _, r := range first.roles {
		got = append(got, want[r])
	}
	require.Equal(t, got, second.roles, "each fault aimed at the role doing the same job")
}

// TestFaultOnAnUndefinedRoleIsRefused: a replayed schedule naming a role
// the store does not define is bad usage, refused before anything starts.
func TestFaultOnAnUndefinedRoleIsRefused(t *testing.T) {
	sched := filepath.Join(t.TempDir(), "nemesis.jsonl")
	require.NoError(t, WriteSchedule(sched, []nemesis.Step{
		{ID: 1, At: 100 * time.Millisecond, Duration: 100 * time.Millisecond, Fault: nemesis.Fault{Kind: nemesis.KindKill, Role: "tail"}},
	}))
	cfg := baseConfig(t, "test-leader")
	cfg.Nemesis = NemesisConfig{Replay: sched}
	res, err := Run(context.Background(), cfg)
	require.Nil(t, res)
	require.ErrorIs(t, err, ErrInvalidConfig)
	require.ErrorContains(t, err, `no role "tail"`)
	require.ErrorContains(t, err, "leader, follower")
	entries, _ := os.ReadDir(cfg.Out)
	require.Empty(t, entries, "nothing started, nothing written")

	// A kind the store cannot take, and a store with nothing to fault.
	cfg = baseConfig(t, "test-leader")
	cfg.Nemesis = NemesisConfig{Kinds: []string{"partition"}}
	_, err = Run(context.Background(), cfg)
	require.ErrorIs(t, err, ErrInvalidConfig)
	require.ErrorContains(t, err, "cannot take partition faults")
	cfg = baseConfig(t, "memory")
	cfg.Nemesis = NemesisConfig{Kinds: []string{"kill"}}
	_, err = Run(context.Background(), cfg)
	require.ErrorIs(t, err, ErrInvalidConfig)

	// Compare refuses a schedule whose role has no counterpart by job.
	cc := compareConfig(t, "test-chain", "test-leader")
	cc.Run.Nemesis = NemesisConfig{Replay: writeRoleSchedule(t, "middle"), Interval: time.Second}
	_, err = Compare(context.Background(), cc)
	require.NoError(t, err, "middle replicates, as a follower does")
	noJob := &faultDriver{name: "test-nojob", roles: []Role{{Name: "solo", Jobs: []string{JobServeClients}}}, kinds: []string{nemesis.KindKill}}
	cc = compareConfig(t, "")
	cc.Stores = nil
	cc.Drivers = []Driver{chainDriver, noJob}
	cc.Run.Nemesis = NemesisConfig{Replay: writeRoleSchedule(t, "master"), Interval: time.Second}
	_, err = Compare(context.Background(), cc)
	require.ErrorIs(t, err, ErrInvalidConfig)
	require.ErrorContains(t, err, `does the job of "master"`)
}

func writeRoleSchedule(t *testing.T, role string) string {
	sched := filepath.Join(t.TempDir(), "nemesis.jsonl")
	require.NoError(t, WriteSchedule(sched, []nemesis.Step{
		{ID: 1, At: 100 * time.Millisecond, Duration: 100 * time.Millisecond, Fault: nemesis.Fault{Kind: nemesis.KindKill, Role: role}},
	}))
	return sched
}

func TestMapRoleByJob(t *testing.T) {
	for _, c := range []struct {
		role     string
		from, to []Role
		want     string
	}{
		{"leader", leaderRoles, chainRoles, "head"},
		{"follower", leaderRoles, chainRoles, "middle"},
		{"head", chainRoles, leaderRoles, "leader"},
		{"head:1", chainRoles, leaderRoles, "leader"},
		{"tail:2", chainRoles, leaderRoles, "leader"},
		{"middle", chainRoles, leaderRoles, "follower"},
		{"master", chainRoles, leaderRoles, "leader"},
		{"head:1", chainRoles, chainRoles, "head:1"},
		{"any", leaderRoles, chainRoles, "any"},
		{"minority", chainRoles, leaderRoles, "minority"},
		{"node:2", leaderRoles, chainRoles, "node:2"},
		{"zk-leader", chainRoles, leaderRoles, "zk-leader"},
	} {
		got, ok := MapRoleByJob(c.role, c.from, c.to)
		require.True(t, ok, c.role)
		require.Equal(t, c.want, got, c.role)
	}
	_, ok := MapRoleByJob("leader", leaderRoles, nil)
	require.False(t, ok, "a store without roles has no counterpart")
	_, ok = MapRoleByJob("boss", leaderRoles, chainRoles)
	require.False(t, ok, "not a role of the source store")
}

func TestRegisterTwicePanics(t *testing.T) {
	require.Panics(t, func() { RegisterDriver(funcDriver{name: "memory"}) })
	names := Stores()
	require.True(t, sort.StringsAreSorted(names))
	require.Contains(t, strings.Join(names, ","), "test-leader")
}

// sickCluster is a memory store whose pretend ZooKeeper dies after a while.
type sickCluster struct {
	memCluster
	dies time.Time
}

func (c *sickCluster) Unplanned() error {
	if time.Now().After(c.dies) {
		return errors.New("zk server 1 (pid 42) exited on its own")
	}
	return nil
}

// TestUnplannedDeathEndsTheRun: an unplanned death ends the run as an
// infrastructure failure naming what died; what was recorded is kept and
// checked.
func TestUnplannedDeathEndsTheRun(t *testing.T) {
	cfg := baseConfig(t, "")
	cfg.Driver = funcDriver{"test-sick", func(context.Context, Env) (Cluster, error) {
		return &sickCluster{memCluster: memCluster{m: kv.NewMemory()}, dies: time.Now().Add(1500 * time.Millisecond)}, nil
	}}
	cfg.TimeLimit = 20 * time.Second
	res, err := Run(context.Background(), cfg)
	require.ErrorIs(t, err, ErrInfrastructure)
	require.ErrorContains(t, err, "zk server 1")
	require.NotNil(t, res)
	require.Less(t, res.Summary.DurationS, 10.0, "the workload ended at the death, not at its time limit")
	require.Equal(t, string(histories.VerdictOK), res.Summary.Verdict, "the history up to the death was checked")
	require.Positive(t, res.Summary.OpsOK)
	require.Contains(t, res.Summary.Error, "zk server 1")
	_, err = os.Stat(filepath.Join(res.Dir, "history.jsonl"))
	require.NoError(t, err)
}
