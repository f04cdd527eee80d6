package harness

import (
	"context"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/chainraft/chainraft/kv"
	"github.com/chainraft/chainraft/nemesis"
)

// Cluster is a running store under test, however it is made: an in-process
// kv.Memory, or node processes (and ZooKeeper servers) started by the harness.
// The harness owns it: Close must stop every process and goroutine the
// cluster started and must be safe to call more than once.
type Cluster interface {
	// NewClient returns a KV for one workload client. Each has its own
	// request-id space; the harness uses it from one goroutine at a time.
	NewClient() (kv.KV, error)
	// Close stops the cluster and releases everything it holds.
	Close() error
}

// ClusterConfig is what a store needs to start a cluster. Fields a store does
// not use are ignored.
type ClusterConfig struct {
	// Dir is the run directory: node data directories, node logs (nodes/<id>.log)
	// and ZooKeeper files (zk/) go below it.
	Dir string
	// Nodes is the number of node processes (default 3).
	Nodes int
	// NoFsync turns fsync off in the nodes, for measurements only.
	NoFsync bool
	// NodeCPUs, when positive, gives every node process a CPU quota of
	// that many cores in a cgroup of its own (proc.Spec.CPUs), so that
	// the nodes compete for CPU like separate servers (harness/cpu.go).
	// ZooKeeper and the harness are not limited.
	NodeCPUs float64
	// ReadMode is the raft read mode: "index" (default) or "lease".
	ReadMode string
	// ZK is an existing ZooKeeper ensemble (host:port,...); empty starts one.
	ZK string
	// ZKServers is the size of the ZooKeeper ensemble the harness starts (1 or 3).
	ZKServers int
	// Chains and Replicas shape the chain store: Chains chains of Replicas
	// nodes rotated over the Nodes nodes.
	Chains, Replicas int
	// Bug plants a named bug in the store (test only; empty for none).
	Bug string
	// Binary is the chainraft executable used to start node processes.
	Binary string
	// RequestTimeout bounds one client request, retries included.
	RequestTimeout time.Duration
	// Log receives the harness's own progress lines about the cluster.
	Log io.Writer
	// Network, when set, is the nemesis's proxied network: the cluster wires
	// every node→node, node→ZooKeeper and client→node link through it (see
	// nemesis.Network.Wire). Nil, the default, means direct connections, so
	// that a run without network faults measures the store, not the proxy.
	Network *nemesis.Network
	// SpareNodes is how many nodes a run may add beyond Nodes (raft member
	// faults add a fresh node id each time): their ports and proxies are
	// wired at start, since a running node learns a new peer's address from
	// the log, one address for every dialer.
	SpareNodes int
}

// StoreFactory starts a cluster. It must not leave anything running when it
// returns an error.
type StoreFactory func(ctx context.Context, cfg ClusterConfig) (Cluster, error)

var (
	storesMu sync.Mutex
	stores   = map[string]StoreFactory{}
)

// RegisterStore makes a store available to StartCluster under name. Store
// files call it from init, so the harness core never names a store.
func RegisterStore(name string, f StoreFactory) {
	storesMu.Lock()
	defer storesMu.Unlock()
	if _, dup := stores[name]; dup {
		panic(fmt.Sprintf("harness: store %q registered twice", name))
	}
	stores[name] = f
}

// Stores lists the registered store names, sorted.
func Stores() []string {
	storesMu.Lock()
	defer storesMu.Unlock()
	names := make([]string, 0, len(stores))
	for n := range stores {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// StartCluster starts a cluster of the named store.
func StartCluster(ctx context.Context, store string, cfg ClusterConfig) (Cluster, error) {
	storesMu.Lock()
	f, ok := stores[store]
	storesMu.Unlock()
	if !ok {
		return nil, fmt.Errorf("unknown store %q (known: %v)", store, Stores())
	}
	if cfg.Nodes == 0 {
		cfg.Nodes = 3
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	return f(ctx, cfg)
}
