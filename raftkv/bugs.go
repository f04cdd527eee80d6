package raftkv

import (
	"errors"
	"fmt"
	"strings"
)

// Seeded bugs. A test harness is worth what it catches, so the raft store
// can be told to break itself in four known ways, each a classic mistake
// of raft-based key-value stores. They exist so that the harness's
// detection tests (harness/detect_test.go) can show that a run with the
// bug is judged not linearizable and the same run without it passes.
//
// Every bug is off unless NodeConfig.Bug names it (`chainraft node --bug`);
// ParseBug is the one place that accepts names, and every planted branch in
// the code is marked "SEEDED BUG" and guarded by a field set only from here.
const (
	// BugLocalRead serves reads from the local state machine of whichever
	// node receives them, leader or not, with no ReadIndex round: a deposed
	// leader or a lagging follower answers from the past (what etcd's
	// raftexample does).
	BugLocalRead = "local-read"
	// BugEarlyAck answers a write as soon as the leader has proposed it —
	// before it is durable or committed — with the result it would have
	// against the state applied so far. A read that follows the reply can
	// miss the write, and a leader crash can lose it altogether.
	BugEarlyAck = "early-ack"
	// BugNoDedup applies every committed write, skipping the dedup table:
	// a client's retry of a write whose first attempt did commit (its reply
	// lost to a timeout, a crash or a partition) applies twice.
	BugNoDedup = "no-dedup"

	// BugWallLease serves reads from a leader lease timed on the wall
	// clock: a read whose ReadIndex round a quorum confirmed grants the
	// node a lease until the read's start plus most of an election
	// timeout, and reads during it are answered locally, leader or not,
	// as a lease holder may. Timed on the monotonic clock that lease is
	// sound (no follower can elect a new leader sooner); on the wall
	// clock, a step back stretches it by the step, and a leader cut off
	// meanwhile keeps answering from the past while another leader takes
	// writes. Only clock faults (nodes on hosts) show it.
	BugWallLease = "wall-lease"

	// BugStaleRead is the old name of BugLocalRead, still accepted.
	BugStaleRead = "stale-read"
)

// ErrUnknownBug is wrapped by ParseBug for a name no bug answers to.
var ErrUnknownBug = errors.New("unknown bug")

// KnownBugs lists the seeded bug names, in the order the docs give them.
func KnownBugs() []string { return []string{BugLocalRead, BugEarlyAck, BugNoDedup, BugWallLease} }

// bugs is the set of seeded bugs a node runs with; the zero value is a
// correct node.
type bugs struct {
	localRead bool
	earlyAck  bool
	noDedup   bool
	wallLease bool
}

// ParseBug checks a --bug value: "" (no bug) or one of KnownBugs. It
// returns the canonical name.
func ParseBug(name string) (string, error) {
	switch name {
	case "", BugLocalRead, BugEarlyAck, BugNoDedup, BugWallLease:
		return name, nil
	case BugStaleRead:
		return BugLocalRead, nil
	}
	return "", fmt.Errorf("raftkv: %w %q (known: %s)", ErrUnknownBug, name, strings.Join(KnownBugs(), ", "))
}

func parseBugs(name string) (bugs, error) {
	name, err := ParseBug(name)
	if err != nil {
		return bugs{}, err
	}
	return bugs{
		localRead: name == BugLocalRead,
		earlyAck:  name == BugEarlyAck,
		noDedup:   name == BugNoDedup,
		wallLease: name == BugWallLease,
	}, nil
}
