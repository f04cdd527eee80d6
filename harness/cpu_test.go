package harness

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/histories"
)

func TestCPUBetweenCountsAddedNodesFromZero(t *testing.T) {
	base := map[uint64]time.Duration{1: time.Second, 2: 2 * time.Second}
	end := map[uint64]time.Duration{1: 3 * time.Second, 2: 2500 * time.Millisecond, 4: 700 * time.Millisecond}
	require.Equal(t, map[string]float64{"1": 2, "2": 0.5, "4": 0.7}, cpuBetween(base, end))
}

func TestCountOpsDividesNodeCPUByOKOps(t *testing.T) {
	ops := []histories.Operation{
		{Op: histories.Get, Key: "k", Outcome: histories.OK, Call: 0, Return: 10},
		{Op: histories.Put, Key: "k", Value: "v", Outcome: histories.OK, Call: 0, Return: 10},
		{Op: histories.Put, Key: "k", Value: "w", Outcome: histories.Info, Call: 0, Return: 10},
	}
	var s Summary
	s.countOps(ops, time.Second)
	require.Nil(t, s.NodeCPUPerOpUS, "a store without node processes has no CPU figures")
	require.Nil(t, s.BusiestNodeCPUPerOpUS)

	s.NodeCPUSeconds = map[string]float64{"1": 0.004, "2": 0.001, "3": 0.001}
	s.countOps(ops, time.Second)
	require.InDelta(t, 3000, *s.NodeCPUPerOpUS, 1e-6, "6 ms over 2 ok operations")
	require.InDelta(t, 2000, *s.BusiestNodeCPUPerOpUS, 1e-6, "node 1's 4 ms over 2 ok operations")
}
