package chain

import (
	"errors"
	"fmt"
	"strings"
)

// Seeded bugs. A test harness is worth what it catches, so the chain store
// can be told to break itself in known ways, each a classic mistake of
// chain replication, for the harness's detection tests
// (harness/detect_test.go): a run with the bug must be judged not
// linearizable (or fail an end-of-run check) and the same run without it
// must pass.
//
// Every bug is off unless CoreConfig.Bug (NodeConfig.Bug, `chainraft node
// --bug`) or, for its client half, ClientOptions.Bug names it; ParseBug is
// the one place that accepts names, and every planted branch is marked
// "SEEDED BUG" and guarded by a field of the bugs struct, which NewCore (and
// Dial, for the client half) parse from the name.
const (
	// BugHeadRead serves reads at the chain's head, from its own state,
	// which holds writes the tail has not acknowledged yet (and may never:
	// they die with the head). The node side lets a head answer reads; the
	// client side (ClientOptions.Bug) spreads reads over both ends of the
	// chain, every other read of a client at the head: a read there can
	// show a write that a later read at the tail does not, with no fault at
	// all. (Every read at the head would look linearizable while the head
	// lives, as it shows writes in the order they commit.)
	BugHeadRead = "head-read"
	// BugNoResend skips the Sent-list resend when a node gets a new
	// successor (a middle node failed and was spliced out): the
	// predecessor sends only what comes next, and the successor, trusting
	// that it holds everything before, accepts the gap. The writes the dead
	// middle had not passed on are acknowledged and lost.
	BugNoResend = "no-resend"
	// BugStaleTail keeps a node serving reads after it lost its ZooKeeper
	// session: the master may already have replaced it as the tail, and the
	// new chain commits writes it never sees.
	BugStaleTail = "stale-tail"
	// BugEarlyReply makes the head answer a write as soon as it has ordered
	// it, before the tail applied it: the classic non-linearizable chain (a
	// read at the tail can miss an acknowledged write). Cluster tests only:
	// the harness's bug table leaves it out.
	BugEarlyReply = "early-reply"
	// BugCraqDirtyRead makes a member answering a CRAQ read (`--read-mode
	// craq`) serve its newest version of a key even when it is dirty,
	// without asking the tail which version is committed: a read there can
	// show a write the tail has not applied, and a later read at a member
	// it has not reached yet shows the value before.
	BugCraqDirtyRead = "craq-dirty-read"
)

// ErrUnknownBug is wrapped by ParseBug for a name no bug answers to.
var ErrUnknownBug = errors.New("unknown bug")

// KnownBugs lists the seeded bug names.
func KnownBugs() []string {
	return []string{BugHeadRead, BugNoResend, BugStaleTail, BugEarlyReply, BugCraqDirtyRead}
}

// ParseBug checks a --bug value: "" (no bug) or one of KnownBugs.
func ParseBug(name string) (string, error) {
	for _, b := range append(KnownBugs(), "") {
		if name == b {
			return name, nil
		}
	}
	return "", fmt.Errorf("chain: %w %q (known: %s)", ErrUnknownBug, name, strings.Join(KnownBugs(), ", "))
}

// bugs is the set of seeded bugs a node (or a client) runs with; the zero
// value is a correct store.
type bugs struct {
	headRead   bool
	noResend   bool
	staleTail  bool
	earlyReply bool
	// craqDirtyRead: see BugCraqDirtyRead.
	craqDirtyRead bool
}

func parseBugs(name string) (bugs, error) {
	name, err := ParseBug(name)
	if err != nil {
		return bugs{}, err
	}
	return bugs{
		headRead:      name == BugHeadRead,
		noResend:      name == BugNoResend,
		staleTail:     name == BugStaleTail,
		earlyReply:    name == BugEarlyReply,
		craqDirtyRead: name == BugCraqDirtyRead,
	}, nil
}
