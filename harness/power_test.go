package harness

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/nemesis"
)

// pretendPower makes power faults available or not for one test.
func pretendPower(t *testing.T, err error) {
	old := powerAvailable
	powerAvailable = func() error { return err }
	t.Cleanup(func() { powerAvailable = old })
}

func powerConfig(kinds ...string) RunConfig {
	d := &faultDriver{name: "test-power", roles: leaderRoles,
		kinds: []string{nemesis.KindKill, nemesis.KindPause, nemesis.KindPower}}
	return RunConfig{Driver: d, Store: d.Name(), TimeLimit: 40 * time.Second,
		Nemesis: NemesisConfig{Kinds: kinds}}
}

// A run that names power faults where FUSE is missing is refused before
// anything starts, saying why; "all" leaves them out there, and takes them
// where they are available.
func TestPowerNeedsFUSE(t *testing.T) {
	pretendPower(t, errors.New("FUSE is unavailable: open /dev/fuse: no such file or directory"))
	cfg := powerConfig(nemesis.KindPower)
	_, err := cfg.Nemesis.steps(cfg, 1)
	require.ErrorIs(t, err, ErrInvalidConfig)
	require.ErrorContains(t, err, "/dev/fuse")

	cfg = powerConfig("all")
	steps, err := cfg.Nemesis.steps(cfg, 1)
	require.NoError(t, err)
	for _, s := range steps {
		require.NotEqual(t, nemesis.KindPower, s.Fault.Kind)
	}
}

func TestPowerInAllAndEnvPowerFS(t *testing.T) {
	pretendPower(t, nil)
	cfg := powerConfig("all")
	steps, err := cfg.Nemesis.steps(cfg, 1)
	require.NoError(t, err)
	var kinds []string
	for _, s := range steps {
		kinds = append(kinds, s.Fault.Kind)
	}
	require.Contains(t, kinds, nemesis.KindPower)

	// The schedule's power faults put the data directories on powerfs;
	// a schedule without them leaves the bare disk.
	cfg = powerConfig(nemesis.KindPower)
	_, err = newNemesis(context.Background(), &cfg, 1)
	require.NoError(t, err)
	require.True(t, cfg.Cluster.PowerFS)
	cfg = powerConfig(nemesis.KindKill)
	_, err = newNemesis(context.Background(), &cfg, 1)
	require.NoError(t, err)
	require.False(t, cfg.Cluster.PowerFS)
}
