package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestLockbenchShowsHerdEffect(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ZooKeeper")
	}
	csvPath := filepath.Join(t.TempDir(), "lb.csv")
	svgPath := filepath.Join(t.TempDir(), "lb.svg")
	var out bytes.Buffer
	err := runLockbench(context.Background(), &out, lockbenchFlags{
		recipes: "naive,recipe", contenders: "2,8", rounds: 4, hold: 2 * time.Millisecond,
		zkServers: 1, csv: csvPath, svg: svgPath,
	})
	require.NoError(t, err, out.String())
	svg, err := os.ReadFile(svgPath)
	require.NoError(t, err)
	require.Equal(t, 6, strings.Count(string(svg), "<polyline"), "three panels, two recipes each")
	require.Contains(t, out.String(), "watches/acq")
	b, err := os.ReadFile(csvPath)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	require.Len(t, lines, 5, string(b))
	watches := map[string]float64{}
	for _, l := range lines[1:] {
		f := strings.Split(l, ",")
		require.Len(t, f, 9)
		require.Equal(t, "0", f[8], "overlaps")
		acq, err := strconv.Atoi(f[2])
		require.NoError(t, err)
		n, err := strconv.Atoi(f[1])
		require.NoError(t, err)
		require.Equal(t, 4*n, acq)
		w, err := strconv.ParseFloat(f[3], 64)
		require.NoError(t, err)
		watches[f[0]+f[1]] = w
	}
	require.LessOrEqual(t, watches["recipe8"], 1.0)
	require.Greater(t, watches["naive8"], 2*watches["naive2"])
	require.Greater(t, watches["naive8"], 2*watches["recipe8"])
}

func TestLockbenchUsage(t *testing.T) {
	for _, f := range []lockbenchFlags{
		{recipes: "fancy", contenders: "2", rounds: 1},
		{recipes: "naive", contenders: "0", rounds: 1},
		{recipes: "naive", contenders: "2", rounds: 0},
	} {
		err := runLockbench(context.Background(), &bytes.Buffer{}, f)
		var ee *exitError
		require.True(t, errors.As(err, &ee), "%v", err)
		require.Equal(t, exitUsage, ee.code)
	}
}
