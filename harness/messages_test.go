package harness

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chainraft/chainraft/histories"
)

func TestSumMessagesCountsRestartedAndAddedNodes(t *testing.T) {
	base := map[uint64]uint64{1: 100, 2: 50, 3: 70}
	end := map[uint64]uint64{
		1: 160, // ran throughout: 60 during the run
		2: 20,  // restarted (below its base): its 20 since the restart
		// 3 is down at the end: not counted
		4: 5, // added during the run: from zero
	}
	require.Equal(t, uint64(60+20+5), sumMessages(base, end))
	require.Zero(t, sumMessages(base, nil))
}

func TestCountOpsDividesMessagesByOKOps(t *testing.T) {
	ops := []histories.Operation{
		{Op: histories.Get, Key: "k", Outcome: histories.OK, Call: 0, Return: 10},
		{Op: histories.Put, Key: "k", Value: "v", Outcome: histories.OK, Call: 0, Return: 10},
		{Op: histories.Put, Key: "k", Value: "w", Outcome: histories.Fail, Call: 0, Return: 10},
	}
	var s Summary
	s.countOps(ops, time.Second)
	require.Nil(t, s.MessagesPerOp, "a store that counts no messages has no row")

	n := uint64(9)
	s.PeerMessages = &n
	s.countOps(ops, time.Second)
	require.NotNil(t, s.MessagesPerOp)
	require.InDelta(t, 4.5, *s.MessagesPerOp, 1e-9, "9 messages over 2 ok operations")
}
