package zookeeper

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/chainraft/chainraft/internal/zkserver"
	"github.com/chainraft/chainraft/kv"
)

// comparePoll is the pause between two rounds while servers catch up.
const comparePoll = 200 * time.Millisecond

var errDiverge = errors.New("replicas diverge")

// CompareReplicas implements harness.ReplicaComparer. A server's state is
// named by its last zxid (`srvr`); once every server reports the same
// zxid, each one's data under Root is read through a session of its own
// pinned to it (plain reads: its local state is what is compared) and
// hashed, and the zxids are asked again: unchanged and equal zxids with
// different hashes are a divergence, never a race.
func (c *Cluster) CompareReplicas(ctx context.Context) (string, error) {
	n := c.ens.Size()
	conns := make([]*zk.Conn, n)
	var wg sync.WaitGroup
	defer func() {
		for _, conn := range conns {
			if conn != nil {
				conn.Close()
			}
		}
		wg.Wait()
	}()
	for i := range conns {
		conn, err := c.session([]string{c.ens.Addrs()[i]}, 0)
		if err != nil {
			return "", err
		}
		conns[i] = conn
	}
	last := "no answer yet"
	for {
		detail, agree, err := c.compareOnce(ctx, conns, &wg)
		if err == nil && agree {
			return detail, nil
		}
		if errors.Is(err, errDiverge) {
			return "", err
		}
		if err != nil {
			last = err.Error()
		} else {
			last = detail
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("replicas did not converge: %s", last)
		case <-time.After(comparePoll):
		}
	}
}

func (c *Cluster) zxids() ([]string, error) {
	out := make([]string, c.ens.Size())
	for i := range out {
		s, err := zkserver.FourLetter(c.ens.Addrs()[i], "srvr", observeWait)
		if err != nil {
			return nil, fmt.Errorf("server %d srvr: %w", i+1, err)
		}
		for _, line := range strings.Split(s, "\n") {
			if z, ok := strings.CutPrefix(line, "Zxid: "); ok {
				out[i] = strings.TrimSpace(z)
			}
		}
		if out[i] == "" {
			return nil, fmt.Errorf("server %d reports no zxid (not serving)", i+1)
		}
	}
	return out, nil
}

func (c *Cluster) compareOnce(ctx context.Context, conns []*zk.Conn, wg *sync.WaitGroup) (string, bool, error) {
	before, err := c.zxids()
	if err != nil {
		return "", false, err
	}
	for _, z := range before[1:] {
		if z != before[0] {
			return fmt.Sprintf("zxids %v", before), false, nil
		}
	}
	hashes := make([]string, len(conns))
	var keys int
	for i, conn := range conns {
		h, n, err := digest(ctx, conn, wg)
		if err != nil {
			return "", false, fmt.Errorf("server %d: %w", i+1, err)
		}
		hashes[i], keys = h, n
	}
	after, err := c.zxids()
	if err != nil {
		return "", false, err
	}
	var parts []string
	for i := range hashes {
		parts = append(parts, fmt.Sprintf("s%d:%.12s", i+1, hashes[i]))
		if after[i] != before[i] {
			return "zxids moved while reading", false, nil
		}
	}
	detail := fmt.Sprintf("servers at zxid %s, %d keys: %s", before[0], keys, strings.Join(parts, " "))
	for _, h := range hashes[1:] {
		if h != hashes[0] {
			return "", false, fmt.Errorf("%w: %s", errDiverge, detail)
		}
	}
	return detail, true, nil
}

// digest hashes every key and value under Root as conn's server holds
// them (kv.Digest, as the other stores hash theirs).
func digest(ctx context.Context, conn *zk.Conn, wg *sync.WaitGroup) (string, int, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*observeWait)
	defer cancel()
	kids, err := callCtx(ctx, wg, func() ([]string, error) {
		k, _, err := conn.Children(Root)
		return k, err
	})
	if err != nil {
		return "", 0, err
	}
	data := make(map[string]string, len(kids))
	for _, k := range kids {
		b, err := callCtx(ctx, wg, func() ([]byte, error) {
			b, _, err := conn.Get(Root + "/" + k)
			return b, err
		})
		if err != nil {
			return "", 0, err
		}
		data[k] = string(b)
	}
	return kv.Digest(data), len(kids), nil
}
