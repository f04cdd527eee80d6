package chaindriver

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/chainraft/chainraft/internal/hosts"
	"github.com/chainraft/chainraft/internal/zkserver"
)

// hostZKPort is the client port of the ZooKeeper the chain runs on a host
// of its own under --hosts.
const hostZKPort = 2181

// hostZKWait bounds a host ZooKeeper's start (a JVM on a busy host).
const hostZKWait = 60 * time.Second

// hostZK is a standalone ZooKeeper on a host of the pool, beside the chain
// nodes' hosts (a netns pool grows a namespace for it): the chain's
// coordination service on a machine of its own, as it would be deployed.
// Its files are brought home to <Dir>/zk/ at close. It takes no zk-kill
// fault (the harness's zkserver does, on this machine only); its links to
// the nodes are cut by zk-partition like any other.
type hostZK struct {
	host *hosts.Host
	proc *hosts.Proc
	addr string
	dir  string
}

func startHostZK(ctx context.Context, pool *hosts.Pool, nodes int) (*hostZK, error) {
	hs, err := pool.ServiceHosts(ctx, nodes, 1)
	if err != nil {
		return nil, err
	}
	h := hs[0]
	inst, err := zkserver.Find()
	if err != nil {
		return nil, err
	}
	if err := h.Require(ctx, inst.Java); err != nil {
		return nil, fmt.Errorf("ZooKeeper on host %s: %w", h.Name, err)
	}
	z := &hostZK{host: h, addr: net.JoinHostPort(h.Addr, strconv.Itoa(hostZKPort)), dir: h.Base + "/zk"}
	cfg := fmt.Sprintf(`# written by chainraft for a run on --hosts
tickTime=500
initLimit=10
syncLimit=5
dataDir=%s/data
clientPort=%d
clientPortAddress=%s
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr,stat,mntr,conf
minSessionTimeout=1000
maxSessionTimeout=60000
`, z.dir, hostZKPort, h.Addr)
	wctx, cancel := context.WithTimeout(ctx, hostZKWait)
	defer cancel()
	if _, err := h.Run(wctx, fmt.Sprintf("mkdir -p %s/data && cat > %s/zoo.cfg", hosts.Quote(z.dir), hosts.Quote(z.dir)), strings.NewReader(cfg)); err != nil {
		return nil, err
	}
	z.proc, err = h.Start(hosts.ProcSpec{
		Name: "zk-1",
		Argv: []string{inst.Java, "-Xms32m", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:-UsePerfData",
			"-Dzookeeper.jmx.log4j.disable=true", "-Dzookeeper.admin.enableServer=false", "-Dzookeeper.forceSync=no",
			"-cp", strings.Join(append(append([]string(nil), inst.ClassPath...), z.dir), ":"),
			"org.apache.zookeeper.server.quorum.QuorumPeerMain", z.dir + "/zoo.cfg"},
		Dir: z.dir, LogPath: z.dir + "/zk.log",
	})
	if err != nil {
		return nil, err
	}
	for {
		if out, err := zkserver.FourLetter(z.addr, "ruok", time.Second); err == nil && strings.HasPrefix(out, "imok") {
			return z, nil
		}
		if !z.proc.Running() {
			return nil, fmt.Errorf("ZooKeeper on host %s exited: %v (its log comes home in zk/)", h.Name, z.proc.ExitErr())
		}
		select {
		case <-wctx.Done():
			_ = z.proc.Kill()
			return nil, fmt.Errorf("ZooKeeper on host %s not serving within %v", h.Name, hostZKWait)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// unplanned names the server's death (it takes no faults).
func (z *hostZK) unplanned() error {
	if z.proc.Running() {
		return nil
	}
	return fmt.Errorf("ZooKeeper on host %s died: %v", z.host.Name, z.proc.ExitErr())
}

// close kills the server and brings its files home to local.
func (z *hostZK) close(local string) error {
	kerr := z.proc.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := z.host.Fetch(ctx, z.dir, local); err != nil {
		return err
	}
	return kerr
}
