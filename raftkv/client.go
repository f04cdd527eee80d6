package raftkv

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/chainraft/chainraft/kv"
	pb "github.com/chainraft/chainraft/raftkv/raftkvpb"
)

// ClientOptions say where the store is and tune its clients; zero values
// take the defaults.
type ClientOptions struct {
	// Members are the nodes to reach (more can be added with SetMember).
	Members []Member
	// RequestTimeout bounds one request, retries included, when the caller's
	// context has no deadline (default 5s).
	RequestTimeout time.Duration
	// AttemptTimeout bounds one try at one node (default 1s), so a request
	// stuck at a dead or partitioned leader moves on.
	AttemptTimeout time.Duration
	// Groups is the number of raft groups the keys are split over
	// (kv.ShardOf); 0 or 1 for a single group.
	Groups int
}

// Conns holds one gRPC connection per node, shared by every Client of a
// cluster (HTTP/2 multiplexes their requests), and the shared guess of who
// leads each group.
type Conns struct {
	opts    ClientOptions
	leaders []atomic.Uint64 // by group

	mu    sync.Mutex // guards conns and addrs; never held across a call
	conns map[uint64]*grpc.ClientConn
	addrs map[uint64]string
}

// Dial prepares connections to the members. The connections open lazily,
// on a client's first call, so ctx is only checked: it is there because
// dialling chain's Conns does wait (for ZooKeeper), and both stores' Conns
// are made the same way.
func Dial(ctx context.Context, opts ClientOptions) (*Conns, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if opts.RequestTimeout == 0 {
		opts.RequestTimeout = 5 * time.Second
	}
	if opts.AttemptTimeout == 0 {
		opts.AttemptTimeout = time.Second
	}
	opts.Groups = max(opts.Groups, 1)
	c := &Conns{opts: opts, leaders: make([]atomic.Uint64, opts.Groups), conns: map[uint64]*grpc.ClientConn{}, addrs: map[uint64]string{}}
	for _, m := range opts.Members {
		if err := c.SetMember(m.ID, m.Addr); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// SetMember adds (or re-addresses) a node clients may talk to.
func (c *Conns) SetMember(id uint64, addr string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.addrs[id]; ok && old == addr {
		return nil
	}
	conn, err := grpc.NewClient(addr, dialOptions()...)
	if err != nil {
		return fmt.Errorf("raftkv: dial node %d at %s: %w", id, addr, err)
	}
	if old := c.conns[id]; old != nil {
		old.Close()
	}
	c.conns[id] = conn
	c.addrs[id] = addr
	return nil
}

// Close closes every connection.
func (c *Conns) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, conn := range c.conns {
		conn.Close()
		delete(c.conns, id)
	}
	return nil
}

func (c *Conns) ids() []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := make([]uint64, 0, len(c.conns))
	for id := range c.conns {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}

func (c *Conns) client(id uint64) pb.KVClient {
	c.mu.Lock()
	defer c.mu.Unlock()
	conn := c.conns[id]
	if conn == nil {
		return nil
	}
	return pb.NewKVClient(conn)
}

// groupOf is the raft group holding key.
func (c *Conns) groupOf(key string) uint32 { return uint32(kv.ShardOf(key, c.opts.Groups)) }

// target is the node to try next for group g: the leader guess, else the
// next id after the last one tried.
func (c *Conns) target(g uint32, after uint64, rotate bool) uint64 {
	ids := c.ids()
	if len(ids) == 0 {
		return 0
	}
	if l := c.leaders[g].Load(); l != 0 && !rotate {
		return l
	}
	for _, id := range ids {
		if id > after {
			return id
		}
	}
	return ids[0]
}

// Status asks one node for its view of group 0 (the only group of a
// single-group store).
func (c *Conns) Status(ctx context.Context, id uint64) (*pb.StatusResponse, error) {
	return c.GroupStatus(ctx, id, 0)
}

// GroupStatus asks one node for its view of group g (role RoleNone when it
// has no replica of g).
func (c *Conns) GroupStatus(ctx context.Context, id uint64, g uint32) (*pb.StatusResponse, error) {
	cl := c.client(id)
	if cl == nil {
		return nil, fmt.Errorf("raftkv: unknown node %d", id)
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.AttemptTimeout)
	defer cancel()
	return cl.Status(ctx, &pb.StatusRequest{Group: g})
}

// GroupDigest is GroupStatus with the digest of the node's data, which
// costs the node a pass over all of it: ctx alone bounds it, as it takes
// longer the more data there is.
func (c *Conns) GroupDigest(ctx context.Context, id uint64, g uint32) (*pb.StatusResponse, error) {
	cl := c.client(id)
	if cl == nil {
		return nil, fmt.Errorf("raftkv: unknown node %d", id)
	}
	return cl.Status(ctx, &pb.StatusRequest{Group: g, Digest: true})
}

// Groups is the number of raft groups the clients split keys over.
func (c *Conns) Groups() int { return c.opts.Groups }

// AddNode asks the leader to add a voter; RemoveNode to remove one. Both
// retry on other nodes until a leader answers or ctx ends.
func (c *Conns) AddNode(ctx context.Context, id uint64, addr string) error {
	return c.adminCall(ctx, func(ctx context.Context, cl pb.KVClient) (*pb.AdminResponse, error) {
		return cl.AddNode(ctx, &pb.AddNodeRequest{Id: id, Addr: addr})
	})
}

// RemoveNode removes a voter.
func (c *Conns) RemoveNode(ctx context.Context, id uint64) error {
	return c.adminCall(ctx, func(ctx context.Context, cl pb.KVClient) (*pb.AdminResponse, error) {
		return cl.RemoveNode(ctx, &pb.RemoveNodeRequest{Id: id})
	})
}

func (c *Conns) adminCall(ctx context.Context, call func(context.Context, pb.KVClient) (*pb.AdminResponse, error)) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.RequestTimeout)
		defer cancel()
	}
	var last uint64
	rotate := false
	lastErr := errors.New("no attempt")
	for ctx.Err() == nil {
		id := c.target(0, last, rotate)
		last, rotate = id, true
		cl := c.client(id)
		if cl == nil {
			return fmt.Errorf("raftkv: no nodes")
		}
		actx, cancel := context.WithTimeout(ctx, 3*c.opts.AttemptTimeout)
		r, err := call(actx, cl)
		cancel()
		switch {
		case err != nil:
			lastErr = err
		case r.GetCode() == pb.Code_CODE_OK:
			return nil
		case r.GetCode() == pb.Code_CODE_NOT_LEADER:
			lastErr = errors.New(r.GetError())
			if r.GetLeaderId() != 0 {
				c.leaders[0].Store(r.GetLeaderId())
				rotate = false
			}
		case r.GetCode() == pb.Code_CODE_REJECTED, r.GetCode() == pb.Code_CODE_BAD_REQUEST:
			return fmt.Errorf("%w: %s", ErrRejected, r.GetError())
		default:
			lastErr = errors.New(r.GetError())
		}
		sleepCtx(ctx, 50*time.Millisecond)
	}
	return fmt.Errorf("raftkv: membership change: %w (last: %v)", ctx.Err(), lastErr)
}

// NewClient returns a KV client with its own client id.
func (c *Conns) NewClient() *Client { return &Client{conns: c, seq: kv.NewSequencer()} }

// Client is one workload client: one client id, one request at a time.
// It finds the leader through not-leader hints and retries a request under
// its original request id until a definite answer or the deadline; the
// store's dedup table makes a retried write apply at most once.
type Client struct {
	conns *Conns
	seq   *kv.Sequencer
	last  uint64 // the node that gave the last answer
}

// LastNode names the node that answered the last request, for the history.
func (c *Client) LastNode() string {
	if c.last == 0 {
		return ""
	}
	return strconv.FormatUint(c.last, 10)
}

var _ kv.KV = (*Client)(nil)

// Get implements kv.KV.
func (c *Client) Get(ctx context.Context, key string) (string, bool, error) {
	res, err := c.do(ctx, &pb.Command{Op: pb.Op_OP_GET, Key: key})
	if err != nil {
		return "", false, err
	}
	return res.GetValue(), res.GetFound(), nil
}

// Put implements kv.KV.
func (c *Client) Put(ctx context.Context, key, value string) error {
	_, err := c.do(ctx, &pb.Command{Op: pb.Op_OP_PUT, Key: key, Value: value})
	return err
}

// Append implements kv.KV.
func (c *Client) Append(ctx context.Context, key, value string) error {
	_, err := c.do(ctx, &pb.Command{Op: pb.Op_OP_APPEND, Key: key, Value: value})
	return err
}

// CAS implements kv.KV.
func (c *Client) CAS(ctx context.Context, key, expect, value string) (bool, error) {
	res, err := c.do(ctx, &pb.Command{Op: pb.Op_OP_CAS, Key: key, Expect: expect, Value: value})
	if err != nil {
		return false, err
	}
	return res.GetSwapped(), nil
}

// do sends cmd until a definite answer. maybeApplied records whether any
// attempt may have proposed the write: then, if the deadline passes, the
// error is indeterminate, whatever the last attempt said. Reads have no
// effect, so their failures are always definite.
func (c *Client) do(ctx context.Context, cmd *pb.Command) (*pb.Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, kv.Definite(err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.conns.opts.RequestTimeout)
		defer cancel()
	}
	write := cmd.GetOp() != pb.Op_OP_GET
	if write {
		id := c.seq.Next()
		cmd.Client, cmd.Seq = id.Client, id.Seq
	}
	g := c.conns.groupOf(cmd.GetKey())
	leader := &c.conns.leaders[g]
	req := &pb.Request{Cmd: cmd, Group: g}
	maybeApplied := false
	lastErr := errors.New("no attempt")
	var last uint64
	rotate := false
	for attempt := 0; ctx.Err() == nil; attempt++ {
		id := c.conns.target(g, last, rotate)
		last, rotate = id, true
		cl := c.conns.client(id)
		if cl == nil {
			// The connections were closed (the harness frees stuck clients
			// that way): an earlier attempt may still have proposed the
			// write, so this ends like a deadline, not with a definite error.
			lastErr = errNoNodes
			break
		}
		actx, cancel := context.WithTimeout(ctx, c.attemptTimeout(ctx))
		resp, err := cl.Do(actx, req)
		cancel()
		backoff := 20 * time.Millisecond
		switch {
		case err != nil:
			// The request may have reached the node and been proposed.
			maybeApplied = maybeApplied || write
			lastErr = fmt.Errorf("node %d: %w", id, err)
			if leader.Load() == id {
				leader.CompareAndSwap(id, 0)
			}
		case resp.GetCode() == pb.Code_CODE_OK:
			c.last = id
			leader.Store(id)
			return resp.GetResult(), nil
		case resp.GetCode() == pb.Code_CODE_NOT_LEADER:
			lastErr = fmt.Errorf("node %d: %s", id, resp.GetError())
			if l := resp.GetLeaderId(); l != 0 {
				if resp.GetLeaderAddr() != "" && c.conns.client(l) == nil {
					// Only for a node we have never heard of: our own
					// address for a node (perhaps through a proxy) wins.
					_ = c.conns.SetMember(l, resp.GetLeaderAddr())
				}
				leader.Store(l)
				rotate = false
				backoff = 0
			} else {
				leader.CompareAndSwap(id, 0)
				backoff = 50 * time.Millisecond // an election is running
			}
		case resp.GetCode() == pb.Code_CODE_NOT_MEMBER:
			// No replica of the group here: the next node, at once.
			lastErr = fmt.Errorf("node %d: %s", id, resp.GetError())
			leader.CompareAndSwap(id, 0)
			backoff = 0
		case resp.GetCode() == pb.Code_CODE_BAD_REQUEST:
			return nil, kv.Definitef("raftkv: node %d: %s", id, resp.GetError())
		case resp.GetCode() == pb.Code_CODE_UNKNOWN:
			maybeApplied = maybeApplied || write
			lastErr = fmt.Errorf("node %d: %w: %s", id, ErrUnknown, resp.GetError())
			leader.CompareAndSwap(id, 0)
		default: // dropped, overloaded: certainly not proposed
			lastErr = fmt.Errorf("node %d: %s", id, resp.GetError())
			rotate = false
		}
		if backoff > 0 {
			sleepCtx(ctx, backoff)
		}
	}
	if maybeApplied {
		if ctx.Err() == nil {
			return nil, fmt.Errorf("raftkv: %w: %w", ErrUnknown, lastErr)
		}
		return nil, fmt.Errorf("raftkv: %w after deadline: %w", ErrUnknown, lastErr)
	}
	if ctx.Err() == nil {
		return nil, kv.Definite(fmt.Errorf("raftkv: %w", lastErr))
	}
	return nil, kv.Definite(fmt.Errorf("raftkv: %w (last: %w)", ctx.Err(), lastErr))
}

// errNoNodes: the client has no connection left to try.
var errNoNodes = errors.New("no nodes")

// attemptTimeout gives one try at most half of what is left (and at most
// AttemptTimeout), so that a request stuck at a paused or cut-off leader
// still has time to find the next one before the caller's deadline.
func (c *Client) attemptTimeout(ctx context.Context) time.Duration {
	d := c.conns.opts.AttemptTimeout
	if dl, ok := ctx.Deadline(); ok {
		if half := time.Until(dl) / 2; half >= 100*time.Millisecond && half < d {
			d = half
		}
	}
	return d
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
