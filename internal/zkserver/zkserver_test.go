package zkserver

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/internal/proc"
)

func TestMain(m *testing.M) { os.Exit(proc.RunTests(m)) }

type quiet struct{}

func (quiet) Printf(string, ...any) {}

// roundTrip proves the ensemble serves a real client: a session, a write and
// a read of it, through the given servers.
func roundTrip(t *testing.T, addrs []string, path string) {
	t.Helper()
	conn, events, err := zk.Connect(addrs, 4*time.Second, zk.WithLogger(quiet{}))
	require.NoError(t, err)
	defer conn.Close()
	deadline := time.After(20 * time.Second)
	for ok := false; !ok; {
		select {
		case ev := <-events:
			ok = ev.State == zk.StateHasSession
		case <-deadline:
			t.Fatalf("no session with %v", addrs)
		}
	}
	_, err = conn.Create(path, []byte("v-"+path), 0, zk.WorldACL(zk.PermAll))
	require.NoError(t, err)
	conn.Sync(path)
	b, st, err := conn.Get(path)
	require.NoError(t, err)
	require.Equal(t, "v-"+path, string(b))
	require.NotZero(t, st.Czxid)
}

func TestStandalone(t *testing.T) {
	dir := t.TempDir()
	e, err := Start(context.Background(), Config{Dir: dir})
	require.NoError(t, err)
	defer e.Close()
	require.Equal(t, 1, e.Size())
	m, err := e.Mode(0)
	require.NoError(t, err)
	require.Equal(t, "standalone", m)
	l, err := e.Leader()
	require.NoError(t, err)
	require.Equal(t, 0, l)
	roundTrip(t, e.Addrs(), "/a")

	ruok, err := FourLetter(e.Addrs()[0], "ruok", time.Second)
	require.NoError(t, err)
	require.Equal(t, "imok", ruok)

	// A crash and a restart keep the data (same dataDir, same port).
	require.NoError(t, e.Kill(0))
	_, err = e.Mode(0)
	require.Error(t, err)
	require.NoError(t, e.Restart(context.Background(), 0))
	conn, _, err := zk.Connect(e.Addrs(), 4*time.Second, zk.WithLogger(quiet{}))
	require.NoError(t, err)
	b, _, err := conn.Get("/a")
	conn.Close()
	require.NoError(t, err)
	require.Equal(t, "v-/a", string(b))

	log, err := os.ReadFile(e.LogPath(0))
	require.NoError(t, err)
	require.Contains(t, string(log), "binding to port", "server log goes to %s", e.LogPath(0))

	pid := e.Process(0).Pid()
	require.NoError(t, e.Close())
	require.NoError(t, e.Close(), "Close is idempotent")
	_, err = proc.State(pid)
	require.Error(t, err, "server process gone after Close")
	require.ErrorIs(t, e.Kill(0), ErrClosed)
}

func TestEnsembleSurvivesLeaderKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three JVMs")
	}
	dir := t.TempDir()
	e, err := Start(context.Background(), Config{Dir: dir, Servers: 3})
	require.NoError(t, err)
	defer e.Close()
	require.Len(t, strings.Split(e.ConnectString(), ","), 3)
	leader, err := e.Leader()
	require.NoError(t, err)
	modes := map[string]int{}
	for i := 0; i < 3; i++ {
		m, err := e.Mode(i)
		require.NoError(t, err)
		modes[m]++
	}
	require.Equal(t, map[string]int{"leader": 1, "follower": 2}, modes)
	roundTrip(t, e.Addrs(), "/before")

	require.NoError(t, e.Kill(leader))
	// The two survivors elect a new leader and keep serving.
	var newLeader int
	require.Eventually(t, func() bool {
		newLeader, err = e.Leader()
		return err == nil
	}, 30*time.Second, 100*time.Millisecond)
	require.NotEqual(t, leader, newLeader)
	var alive []string
	for i, a := range e.Addrs() {
		if i != leader {
			alive = append(alive, a)
		}
	}
	roundTrip(t, alive, "/after")

	// The old leader rejoins as a follower and has both writes.
	require.NoError(t, e.Restart(context.Background(), leader))
	m, err := e.Mode(leader)
	require.NoError(t, err)
	require.Equal(t, "follower", m)
	conn, _, err := zk.Connect([]string{e.Addrs()[leader]}, 4*time.Second, zk.WithLogger(quiet{}))
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.Sync("/after")
	require.NoError(t, err)
	for _, p := range []string{"/before", "/after"} {
		ok, _, err := conn.Exists(p)
		require.NoError(t, err)
		require.True(t, ok, p)
	}
}

func TestMissingInstallationNamesMakeDeps(t *testing.T) {
	t.Setenv("JAVA", "")
	t.Setenv("JAVA_HOME", "")
	t.Setenv("PATH", t.TempDir())
	_, err := Start(context.Background(), Config{Dir: t.TempDir()})
	require.ErrorIs(t, err, ErrNotInstalled)
	require.Contains(t, err.Error(), "make deps")
}
