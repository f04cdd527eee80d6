package proccluster

// Nodes on hosts (Config.Hosts): the same cluster, its nodes run over SSH
// as Jepsen runs them. Node id runs on Hosts.NodeHost(id) and listens on
// the host's address at fixed ports (PeerPort, ClientPort: a host has its
// own port space, and several nodes on one host still differ). The
// chainraft binary is copied to each host once; a node's data directory
// and log live below the host's working directory and are brought back to
// <Dir>/nodes/ when the cluster closes. Kill, pause and restart are
// signals sent through the node's SSH session (internal/hosts.Proc).
//
// The nemesis's network has no proxies here: its links are registered
// with the network as enforced ones and every cut becomes iptables rules
// on the hosts, in the run's chain (hosts.Firewall). Clients and peers
// dial the real addresses.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/chainraft/chainraft/internal/hosts"
	"github.com/chainraft/chainraft/internal/powerfs"
	"github.com/chainraft/chainraft/nemesis"
)

// Ports of node id on its host.
func PeerPort(id int) int   { return 7400 + 2*id }
func ClientPort(id int) int { return 7401 + 2*id }

// remoteFetchTimeout bounds bringing every host's node files home.
const remoteFetchTimeout = 5 * time.Minute

func newRemote(cfg Config) (*Cluster, error) {
	if cfg.PowerFS {
		return nil, fmt.Errorf("%s cluster: power faults need powerfs, which runs on this machine only, not on --hosts", cfg.Store)
	}
	if cfg.CPUs > 0 {
		return nil, fmt.Errorf("%s cluster: --node-cpus limits processes on this machine only, not on --hosts", cfg.Store)
	}
	ids := cfg.Nodes + max(cfg.Spares, 0)
	c := &Cluster{cfg: cfg, peer: map[int]string{}, client: map[int]string{}, procs: map[int]process{}, down: map[int]bool{}, disks: map[int]*powerfs.Disk{}}
	for id := 1; id <= ids; id++ {
		h := cfg.Hosts.NodeHost(id)
		c.peer[id] = net.JoinHostPort(h.Addr, strconv.Itoa(PeerPort(id)))
		c.client[id] = c.peer[id]
		if cfg.ClientPorts {
			c.client[id] = net.JoinHostPort(h.Addr, strconv.Itoa(ClientPort(id)))
		}
	}
	if cfg.Network != nil {
		eps := map[string]hosts.Endpoint{nemesis.ClientEndpoint: {}}
		var links []nemesis.Link
		for a := 1; a <= ids; a++ {
			ports := []int{PeerPort(a)}
			if cfg.ClientPorts {
				ports = append(ports, ClientPort(a))
			}
			eps[nemesis.NodeEndpoint(a)] = hosts.Endpoint{Host: cfg.Hosts.NodeHost(a), Ports: ports}
			for b := 1; b <= ids; b++ {
				if a != b {
					links = append(links, nemesis.Link{From: nemesis.NodeEndpoint(a), To: nemesis.NodeEndpoint(b)})
				}
			}
			for z := range cfg.ZK {
				links = append(links, nemesis.Link{From: nemesis.NodeEndpoint(a), To: nemesis.ZKEndpoint(z + 1)})
			}
			links = append(links, nemesis.Link{From: nemesis.ClientEndpoint, To: nemesis.NodeEndpoint(a)})
		}
		for i, a := range cfg.ZK {
			host, port, err := net.SplitHostPort(a)
			if err != nil {
				return nil, fmt.Errorf("%s cluster: ZooKeeper address %q: %w", cfg.Store, a, err)
			}
			p, _ := strconv.Atoi(port)
			var zh *hosts.Host
			for _, h := range cfg.Hosts.Hosts {
				if h.Addr == host {
					zh = h
				}
			}
			if zh == nil {
				return nil, fmt.Errorf("%s cluster: ZooKeeper server %s is on none of the hosts: its links cannot be cut", cfg.Store, a)
			}
			eps[nemesis.ZKEndpoint(i+1)] = hosts.Endpoint{Host: zh, Ports: []int{p}}
		}
		c.fw = cfg.Hosts.NewFirewall(eps)
		var noDelay error
		if !cfg.Hosts.Netem {
			noDelay = errors.New(cfg.Hosts.NetemWhy)
		} else {
			noDelay = errors.New("delay on hosts is not implemented yet (netem per destination)")
		}
		if err := cfg.Network.Enforce(c.fw, links, noDelay); err != nil {
			return nil, fmt.Errorf("%s cluster: %w", cfg.Store, err)
		}
	}
	return c, nil
}

// Remote reports whether the nodes run on hosts.
func (c *Cluster) Remote() bool { return c.cfg.Hosts != nil }

// Host is the host node id runs on, or nil when nodes run here.
func (c *Cluster) Host(id int) *hosts.Host {
	if c.cfg.Hosts == nil {
		return nil
	}
	return c.cfg.Hosts.NodeHost(id)
}

func (c *Cluster) remoteDataDir(id int) string {
	return c.cfg.Hosts.NodeHost(id).Base + "/" + c.cfg.Store + "/nodes/" + strconv.Itoa(id)
}

func (c *Cluster) startRemote(id int, path string, args, env []string) error {
	h := c.cfg.Hosts.NodeHost(id)
	ctx, cancel := context.WithTimeout(context.Background(), remoteFetchTimeout)
	defer cancel()
	bin := path
	if c.cfg.Binary != "" && path == c.cfg.Binary {
		var err error
		if bin, err = h.Install(ctx, path); err != nil {
			return fmt.Errorf("%s cluster: node %d: %w", c.cfg.Store, id, err)
		}
	} else if err := h.Require(ctx, path); err != nil {
		return fmt.Errorf("%s cluster: node %d: %w", c.cfg.Store, id, err)
	}
	dir := h.Base + "/" + c.cfg.Store + "/nodes"
	p, err := h.Start(hosts.ProcSpec{
		Name: fmt.Sprintf("%s-%d", c.cfg.Store, id), Argv: append([]string{bin}, args...), Env: env,
		Dir: dir, LogPath: dir + "/" + strconv.Itoa(id) + ".log",
	})
	if err != nil {
		return fmt.Errorf("%s cluster: start node %d: %w", c.cfg.Store, id, err)
	}
	c.mu.Lock()
	c.procs[id] = p
	c.mu.Unlock()
	fmt.Fprintf(c.cfg.Log, "%s: node %d started on host %s at %s (pid %d there)\n", c.cfg.Store, id, h.Name, c.peer[id], p.Pid())
	return nil
}

// closeRemote heals the cluster's rules and brings every host's node
// files home (<Dir>/nodes/), then removes them from the hosts; the nodes
// are gone by then.
func (c *Cluster) closeRemote() error {
	var errs []error
	if c.fw != nil {
		if err := c.fw.Heal(); err != nil {
			errs = append(errs, err)
		}
		fmt.Fprintf(c.cfg.Log, "%s: hosts' firewall: %s\n", c.cfg.Store, c.fw.Timing())
	}
	ctx, cancel := context.WithTimeout(context.Background(), remoteFetchTimeout)
	defer cancel()
	seen := map[*hosts.Host]bool{}
	local := filepath.Join(c.cfg.Dir, "nodes")
	if err := os.MkdirAll(local, 0o755); err != nil {
		return err
	}
	for id := range c.peer {
		h := c.cfg.Hosts.NodeHost(id)
		if seen[h] {
			continue
		}
		seen[h] = true
		dir := h.Base + "/" + c.cfg.Store + "/nodes"
		if err := h.Fetch(ctx, dir, local); err != nil {
			errs = append(errs, err)
			continue
		}
		if _, err := h.Do(ctx, "rm -rf "+hosts.Quote(dir), ""); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
