package main

import (
	"context"
	"fmt"
	"io"

	"github.com/chainraft/chainraft/internal/hosts"
)

// hostsHelp is --hosts's usage line.
const hostsHelp = "run the nodes on other hosts over SSH, as Jepsen does: netns:N (N network namespaces made for the run on this machine, needs root), or a,b,c or @file ([user@]host[:port], keys from the SSH agent or ~/.ssh, ~/.ssh/known_hosts honoured); network faults become iptables rules on the hosts, and everything started there ends with the run"

// openHosts opens --hosts (nil when empty). The caller closes the pool
// after the run; a harness that dies instead leaves the hosts to their
// guards and reaper (internal/hosts).
func openHosts(ctx context.Context, spec string, log io.Writer) (*hosts.Pool, error) {
	if spec == "" {
		return nil, nil
	}
	p, err := hosts.Open(ctx, spec, hosts.Options{Log: log})
	if err != nil {
		return nil, withCode(exitRunFailed, fmt.Errorf("--hosts %s: %w", spec, err))
	}
	return p, nil
}

// closeHosts closes a pool opened by openHosts, reporting a failure.
func closeHosts(p *hosts.Pool, log io.Writer) {
	if p == nil {
		return
	}
	if err := p.Close(); err != nil {
		fmt.Fprintf(log, "warning: cleaning up --hosts: %v\n", err)
	}
}
