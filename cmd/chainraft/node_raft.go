package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/chainraft/chainraft/raftkv"
)

func init() {
	nodeRunners["raft"] = runRaftNode
}

// runRaftNode runs one raft store node until ctx is done (SIGTERM or
// SIGINT), then stops it cleanly; SIGKILL is what the nemesis uses to test
// the unclean path.
func runRaftNode(ctx context.Context, f NodeFlags) error {
	var plain, book []string
	for _, p := range f.Peers {
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
		return err
	}
	addrs, err := parsePeers(book)
	if err != nil {
		return err
	}
	var lease bool
	switch f.ReadMode {
	case "", "index":
	case "lease":
		lease = true
	default:
		return usageErrorf("node: --read-mode %q (want index or lease)", f.ReadMode)
	}
	if _, err := raftkv.ParseBug(f.Bug); err != nil {
		return usageErrorf("node: --bug: %v", err)
	}
	if !f.Join {
		found := false
		for _, p := range peers {
			found = found || p.ID == f.ID
		}
		if !found {
			return usageErrorf("node: --peers must include this node (%d) unless --join", f.ID)
		}
	}
	logger := log.New(os.Stderr, fmt.Sprintf("raft%d ", f.ID), log.LstdFlags|log.Lmicroseconds)
	lis, err := net.Listen("tcp", f.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	n, err := raftkv.StartNode(raftkv.NodeConfig{
		ID:            f.ID,
		Peers:         peers,
		Addrs:         addrs,
		Join:          f.Join,
		DataDir:       f.DataDir,
		NoFsync:       f.NoFsync,
		Lease:         lease,
		SnapshotEvery: f.SnapshotEvery,
		Logger:        logger,
		Bug:           f.Bug,
	})
	if err != nil {
		lis.Close()
		return err
	}
	srv := raftkv.Serve(n, lis)
	logger.Printf("serving on %s (data %s, fsync %v, read mode %s)", lis.Addr(), f.DataDir, !f.NoFsync, f.ReadMode)
	select {
	case <-ctx.Done():
	case <-n.Done():
	}
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(2 * time.Second):
		srv.Stop()
	}
	return n.Stop()
}

func parsePeers(specs []string) ([]raftkv.Member, error) {
	var out []raftkv.Member
	for _, s := range specs {
		idStr, addr, ok := strings.Cut(s, "=")
		id, err := strconv.ParseUint(idStr, 10, 64)
		if !ok || err != nil || id == 0 || addr == "" {
			return nil, usageErrorf("node: bad --peers entry %q (want id=host:port)", s)
		}
		out = append(out, raftkv.Member{ID: id, Addr: addr})
	}
	return out, nil
}
