package raftdriver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/chainraft/chainraft/harness"
	"github.com/chainraft/chainraft/raftkv"
)

// nodeFlags are `chainraft node raft`'s flags.
type nodeFlags struct {
	id            uint64
	listen        string
	peers         []string
	dataDir       string
	noFsync       bool
	readMode      string
	join          bool
	bug           string
	snapshotEvery uint64
	groups        int
	groupSize     int
}

// usageErrorf is an error about NodeMain's command line. It wraps
// harness.ErrInvalidConfig, which `chainraft node` turns into exit 2 (bad
// usage) rather than 1 (the node failed).
func usageErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: raft node: %s", harness.ErrInvalidConfig, fmt.Sprintf(format, args...))
}

// nodeFlagSet is the flag set NodeMain parses; its usage is NodeUsage.
func nodeFlagSet(f *nodeFlags) *pflag.FlagSet {
	fs := pflag.NewFlagSet("chainraft node raft", pflag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned, usage printed on --help only
	fs.Uint64Var(&f.id, "id", 0, "node id (positive, never reused)")
	fs.StringVar(&f.listen, "listen", "127.0.0.1:0", "address to listen on, for clients and peers")
	fs.StringSliceVar(&f.peers, "peers", nil, "initial members as id=host:port, self included; +id=host:port is only where to dial id if the log adds it")
	fs.StringVar(&f.dataDir, "data-dir", "", "directory for durable state (required)")
	fs.BoolVar(&f.noFsync, "no-fsync", false, "skip fsync (measurements only: unsafe)")
	fs.StringVar(&f.readMode, "read-mode", ReadModeIndex, "reads: index (ReadIndex) or lease")
	fs.BoolVar(&f.join, "join", false, "join an existing cluster (added by conf change)")
	fs.StringVar(&f.bug, "bug", "", "plant a seeded bug (tests only): "+strings.Join(raftkv.KnownBugs(), ", "))
	fs.Uint64Var(&f.snapshotEvery, "snapshot-every", 10000, "log entries between snapshots (0: raftkv's default)")
	fs.IntVar(&f.groups, "groups", 1, "raft groups the keys are split over; with more than 1, --peers lists every node and this node runs the groups placed on it")
	fs.IntVar(&f.groupSize, "group-size", 3, "members of each group when --groups > 1")
	return fs
}

// NodeUsage is `chainraft node raft`'s flags, for help text.
func NodeUsage() string {
	var f nodeFlags
	return nodeFlagSet(&f).FlagUsages()
}

// nodeConfig parses args into the node process's configuration. Every
// error names the flag at fault and wraps harness.ErrInvalidConfig.
func nodeConfig(args []string) (raftkv.RunConfig, error) {
	var f nodeFlags
	fs := nodeFlagSet(&f)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return raftkv.RunConfig{}, err
		}
		return raftkv.RunConfig{}, usageErrorf("%v", err)
	}
	if fs.NArg() > 0 {
		return raftkv.RunConfig{}, usageErrorf("unexpected argument %q (every setting is a flag)", fs.Arg(0))
	}
	if f.id == 0 {
		return raftkv.RunConfig{}, usageErrorf("--id must be a positive integer")
	}
	if f.dataDir == "" {
		return raftkv.RunConfig{}, usageErrorf("--data-dir is required")
	}
	var plain, book []string
	for _, p := range f.peers {
		// "+id=addr" is an address-only entry: where to dial node id if the
		// log ever makes it a member (the harness's proxies), not a member.
		if rest, ok := strings.CutPrefix(p, "+"); ok {
			book = append(book, rest)
		} else {
			plain = append(plain, p)
		}
	}
	peers, err := parsePeers(plain)
	if err != nil {
		return raftkv.RunConfig{}, err
	}
	addrs, err := parsePeers(book)
	if err != nil {
		return raftkv.RunConfig{}, err
	}
	lease, err := leaseMode(f.readMode)
	if err != nil {
		return raftkv.RunConfig{}, usageErrorf("--read-mode %q (want %s or %s)", f.readMode, ReadModeIndex, ReadModeLease)
	}
	bug, err := raftkv.ParseBug(f.bug)
	if err != nil {
		return raftkv.RunConfig{}, usageErrorf("--bug: %v", err)
	}
	if f.groups < 1 || f.groupSize < 1 {
		return raftkv.RunConfig{}, usageErrorf("--groups %d, --group-size %d: want positive", f.groups, f.groupSize)
	}
	if f.groups > 1 && f.join {
		return raftkv.RunConfig{}, usageErrorf("--join needs a single group (membership changes are single-group only)")
	}
	if !f.join {
		found := false
		for _, p := range peers {
			found = found || p.ID == f.id
		}
		if !found {
			return raftkv.RunConfig{}, usageErrorf("--peers must include this node (%d) unless --join", f.id)
		}
	}
	return raftkv.RunConfig{
		ID:            f.id,
		Listen:        f.listen,
		Peers:         peers,
		Addrs:         addrs,
		Join:          f.join,
		DataDir:       f.dataDir,
		NoFsync:       f.noFsync,
		Lease:         lease,
		SnapshotEvery: f.snapshotEvery,
		Bug:           bug,
		Groups:        f.groups,
		GroupSize:     f.groupSize,
	}, nil
}

// NodeMain implements harness.NodeDriver: `chainraft node raft ARGS`. It
// runs one node until ctx is done (SIGTERM or SIGINT), then stops it
// cleanly; SIGKILL is what the nemesis uses to test the unclean path. With
// --help it prints the flags to stderr and returns nil.
func (*Driver) NodeMain(ctx context.Context, args []string) error {
	cfg, err := nodeConfig(args)
	if errors.Is(err, pflag.ErrHelp) {
		fmt.Fprintf(os.Stderr, "Usage: chainraft node raft [flags]\n\n%s", NodeUsage())
		return nil
	}
	if err != nil {
		return err
	}
	return raftkv.Run(ctx, cfg)
}

// parsePeers parses id=host:port entries.
func parsePeers(specs []string) ([]raftkv.Member, error) {
	var out []raftkv.Member
	for _, s := range specs {
		idStr, addr, ok := strings.Cut(s, "=")
		id, err := strconv.ParseUint(idStr, 10, 64)
		if !ok || err != nil || id == 0 || addr == "" {
			return nil, usageErrorf("bad --peers entry %q (want id=host:port)", s)
		}
		out = append(out, raftkv.Member{ID: id, Addr: addr})
	}
	return out, nil
}
