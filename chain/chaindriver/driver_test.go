package chaindriver

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/chain"
	"github.com/chainraft/chainraft/harness"
	"github.com/chainraft/chainraft/internal/proc"
	"github.com/chainraft/chainraft/nemesis"
)

// TestMain kills whatever a test leaves running (node and ZooKeeper
// processes), also on ^C.
func TestMain(m *testing.M) { os.Exit(proc.RunTests(m)) }

func TestRegisteredWithFlagDefaults(t *testing.T) {
	d, err := harness.LookupDriver(Name)
	require.NoError(t, err)
	cd, ok := d.(*Driver)
	require.True(t, ok, "registered %T", d)

	// Flags on a copy: the registered value is shared by the package's tests.
	reg := *cd
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	reg.Flags(fs)
	require.NoError(t, fs.Parse(nil))
	require.Equal(t, Driver{Chains: 3, Replicas: 3, ZKServers: 1}, reg)
	for _, name := range []string{"zk", "zk-servers", "chains", "replicas"} {
		require.NotNil(t, fs.Lookup(name), "flag --%s", name)
	}
	require.Equal(t, "1", fs.Lookup("zk-servers").DefValue)
	require.Equal(t, "3", fs.Lookup("chains").DefValue)
	require.Equal(t, "int", fs.Lookup("replicas").Value.Type())

	require.NoError(t, fs.Parse([]string{"--zk", "127.0.0.1:2181", "--zk-servers", "3", "--chains", "5", "--replicas", "2"}))
	require.Equal(t, Driver{Chains: 5, Replicas: 2, ZK: "127.0.0.1:2181", ZKServers: 3}, reg)
}

// TestFlagsRefuseBadValues: a bad chain flag is a parse error naming it,
// whatever the store of the run (the flags are registered on every run).
func TestFlagsRefuseBadValues(t *testing.T) {
	for _, args := range [][]string{
		{"--zk-servers", "2"}, {"--zk-servers", "0"}, {"--chains", "0"}, {"--chains", "-1"},
		{"--replicas", "0"}, {"--replicas", "x"},
	} {
		d := Driver{Chains: 3, Replicas: 3, ZKServers: 1}
		fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
		fs.SetOutput(discard{})
		d.Flags(fs)
		err := fs.Parse(args)
		require.Error(t, err, "%v", args)
		require.Contains(t, err.Error(), args[0], "%v", args)
		require.Equal(t, Driver{Chains: 3, Replicas: 3, ZKServers: 1}, d, "%v left the settings alone", args)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func TestValidate(t *testing.T) {
	ok := []struct {
		d   Driver
		env harness.Env
	}{
		{Driver{Chains: 3, Replicas: 3, ZKServers: 1}, harness.Env{Nodes: 3}},
		{Driver{}, harness.Env{}},         // defaults throughout
		{Driver{}, harness.Env{Nodes: 1}}, // one chain of one
		{Driver{Chains: 7, Replicas: 2, ZKServers: 3}, harness.Env{Nodes: 5}},
		{Driver{ZK: "127.0.0.1:2181", ZKServers: 2}, harness.Env{Nodes: 3}}, // --zk-servers unused
		{Driver{}, harness.Env{Bug: chain.BugHeadRead}},
		{Driver{}, harness.Env{ReadMode: chain.ReadModeCRAQ, Bug: chain.BugCraqDirtyRead}},
		{Driver{}, harness.Env{ReadMode: chain.ReadModeTail}},
	}
	for _, tc := range ok {
		require.NoError(t, tc.d.Validate(tc.env), "%+v %+v", tc.d, tc.env)
	}
	bad := []struct {
		d    Driver
		env  harness.Env
		want string
	}{
		{Driver{Chains: 3, Replicas: 3}, harness.Env{Nodes: 2}, "--nodes 2 is below --replicas 3"},
		{Driver{Replicas: 4}, harness.Env{Nodes: 3}, "--replicas"},
		{Driver{Chains: -1}, harness.Env{}, "--chains"},
		{Driver{Replicas: -2}, harness.Env{}, "--replicas"},
		{Driver{ZKServers: 2}, harness.Env{}, "--zk-servers"},
		{Driver{ZK: " , "}, harness.Env{}, "--zk"},
		{Driver{}, harness.Env{Bug: "no-such-bug"}, "--bug"},
		{Driver{}, harness.Env{Nodes: -1}, "--nodes"},
		{Driver{}, harness.Env{ReadMode: "index"}, "--read-mode"},
	}
	for _, tc := range bad {
		err := tc.d.Validate(tc.env)
		require.Error(t, err, "%+v %+v", tc.d, tc.env)
		require.Contains(t, err.Error(), tc.want)
	}
}

// TestStartRefusesBeforeStarting: Start checks what Validate checks, and
// what it needs, before it starts anything.
func TestStartRefusesBeforeStarting(t *testing.T) {
	dir := t.TempDir()
	_, err := (&Driver{Replicas: 3}).Start(context.Background(), harness.Env{Dir: dir, Nodes: 2, Binary: "/nonexistent"})
	require.ErrorContains(t, err, "--replicas")
	_, err = (&Driver{}).Start(context.Background(), harness.Env{Dir: dir})
	require.ErrorContains(t, err, "Binary")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, entries, "nothing started")
}

func TestRolesAndKinds(t *testing.T) {
	d := &Driver{}
	byName := map[string]harness.Role{}
	for _, r := range d.Roles() {
		byName[r.Name] = r
	}
	require.Equal(t, []string{harness.JobOrderWrites}, byName[nemesis.RoleHead].Jobs)
	require.Equal(t, []string{harness.JobReplicate}, byName[nemesis.RoleMiddle].Jobs)
	require.Equal(t, []string{harness.JobAnswerReads, harness.JobAcknowledge}, byName[nemesis.RoleTail].Jobs)
	require.Equal(t, []string{harness.JobCoordinate}, byName[nemesis.RoleMaster].Jobs)
	for _, r := range []string{nemesis.RoleHead, nemesis.RoleMiddle, nemesis.RoleTail} {
		require.True(t, byName[r].Indexed, r)
	}
	require.False(t, byName[nemesis.RoleMaster].Indexed)
	require.Len(t, byName, 4)
	require.ElementsMatch(t, nemesis.Kinds, d.FaultKinds(), "the chain store supports every fault kind")
}

func TestSeededBugs(t *testing.T) {
	var names []string
	for _, b := range (&Driver{}).SeededBugs() {
		require.Equal(t, Name, b.Store)
		require.NoError(t, checkBug(b.Name), "the nodes (or the driver) know bug %s", b.Name)
		names = append(names, b.Name)
	}
	require.Equal(t, []string{chain.BugHeadRead, chain.BugNoResend, chain.BugStaleTail, chain.BugCraqDirtyRead, BugNoFsync}, names)
	require.False(t, slices.Contains(names, chain.BugEarlyReply), "early-reply is the cluster tests' only")
}

func TestNodeMainUsage(t *testing.T) {
	d := &Driver{}
	ctx := context.Background()
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--data-dir", dir, "--zk", "127.0.0.1:1"}, "--id"},
		{[]string{"--id", "1", "--zk", "127.0.0.1:1"}, "--data-dir"},
		{[]string{"--id", "1", "--data-dir", dir}, "--zk"},
		{[]string{"--id", "1", "--data-dir", dir, "--zk", "127.0.0.1:1", "--peers", "2"}, "--peers"},
		{[]string{"--id", "1", "--data-dir", dir, "--zk", "127.0.0.1:1", "--peers", "0=127.0.0.1:2"}, "--peers"},
		{[]string{"--id", "1", "--data-dir", dir, "--zk", "127.0.0.1:1", "extra"}, "extra"},
		{[]string{"--store", "chain"}, "store"},
		{[]string{"--id", "4", "--data-dir", dir, "--zk", "127.0.0.1:1"}, "--id 4 is outside 1..--nodes 3"},
		{[]string{"--id", "1", "--data-dir", dir, "--zk", "127.0.0.1:1", "--replicas", "4"}, "--replicas"},
		{[]string{"--id", "1", "--data-dir", dir, "--zk", "127.0.0.1:1", "--bug", "nope"}, "--bug"},
		{[]string{"--id", "1", "--data-dir", dir, "--zk", "127.0.0.1:1", "--session-timeout", "1h"}, "--session-timeout"},
	} {
		err := d.NodeMain(ctx, tc.args)
		require.ErrorIs(t, err, harness.ErrInvalidConfig, "%v: bad usage, exit 2", tc.args)
		require.Contains(t, err.Error(), tc.want, "%v", tc.args)
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, entries, "bad usage starts nothing")
}

func TestParsePeers(t *testing.T) {
	got, err := parsePeers([]string{"2=127.0.0.1:7002", "3=127.0.0.1:7003"})
	require.NoError(t, err)
	require.Equal(t, map[uint64]string{2: "127.0.0.1:7002", 3: "127.0.0.1:7003"}, got)
	got, err = parsePeers(nil)
	require.NoError(t, err)
	require.Nil(t, got, "no --peers: dial the configured addresses")
	for _, bad := range []string{"x=127.0.0.1:1", "2=", "=a", "2"} {
		_, err := parsePeers([]string{bad})
		require.Error(t, err, bad)
	}
}

// TestFailedStartLeavesNothing: a start that fails half way (ZooKeeper up,
// the nodes' binary missing) closes what it started.
func TestFailedStartLeavesNothing(t *testing.T) {
	if _, err := os.Stat("/usr/share/zookeeper"); err != nil {
		t.Skip("ZooKeeper is not installed")
	}
	dir := t.TempDir()
	_, err := (&Driver{}).Start(context.Background(), harness.Env{Dir: dir, Nodes: 3, Binary: filepath.Join(dir, "no-such-chainraft")})
	require.ErrorContains(t, err, "start node 1")
	_, err = os.Stat(filepath.Join(dir, "zk"))
	require.NoError(t, err, "ZooKeeper was started")
	require.NoError(t, leftRunning(dir))
}
