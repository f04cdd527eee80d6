package etcd

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/chainraft/chainraft/kv"
)

// client is one workload client: kv.KV over etcd. It talks to one member
// at a time (clients are dealt over the members, so that a serializable
// read is answered by every member in turn) and moves to the next member
// after any error, as an application with several endpoints would.
// One goroutine at a time, as the harness uses it.
type client struct {
	c            *Cluster
	serializable bool
	pos          int // rotation position over the members
	conn         int // which of the member's connections
	last         string
}

// LastNode implements workload.NodeReporter.
func (cl *client) LastNode() string { return cl.last }

// pick is the connection to use now and records its node.
func (cl *client) pick() (*clientv3.Client, error) {
	cli, id := cl.c.conn(cl.pos, cl.conn)
	if id != 0 {
		cl.last = memberName(id)
	}
	if cli == nil {
		return nil, kv.Definitef("etcd: no member to talk to")
	}
	return cli, nil
}

// failed moves the client on to the next member and classifies err.
func (cl *client) failed(err error) error {
	cl.pos++
	return classify(err)
}

// Get implements kv.KV. A failed read is dropped by the checker whatever
// its class, so its errors are passed on as they are.
func (cl *client) Get(ctx context.Context, key string) (string, bool, error) {
	if err := ctx.Err(); err != nil {
		return "", false, kv.Definite(err)
	}
	cli, err := cl.pick()
	if err != nil {
		return "", false, err
	}
	var opts []clientv3.OpOption
	if cl.serializable {
		opts = append(opts, clientv3.WithSerializable())
	}
	resp, err := cli.Get(ctx, key, opts...)
	if err != nil {
		return "", false, cl.failed(err)
	}
	if len(resp.Kvs) == 0 {
		return "", false, nil
	}
	return string(resp.Kvs[0].Value), true, nil
}

// writeCtx marks a write to be refused by a member that knows no leader
// (rpctypes.ErrNoLeader, before the request is handled): a definite
// failure at once instead of a proposal waiting out the deadline.
func writeCtx(ctx context.Context) context.Context { return clientv3.WithRequireLeader(ctx) }

// Put implements kv.KV.
func (cl *client) Put(ctx context.Context, key, value string) error {
	if err := ctx.Err(); err != nil {
		return kv.Definite(err)
	}
	cli, err := cl.pick()
	if err != nil {
		return err
	}
	if _, err := cli.Put(writeCtx(ctx), key, value); err != nil {
		return cl.failed(err)
	}
	return nil
}

// CAS implements kv.KV: one Txn comparing the value. etcd fails a value
// comparison on a key that does not exist, as the model wants (an absent
// key never matches).
func (cl *client) CAS(ctx context.Context, key, expect, value string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, kv.Definite(err)
	}
	cli, err := cl.pick()
	if err != nil {
		return false, err
	}
	resp, err := cli.Txn(writeCtx(ctx)).
		If(clientv3.Compare(clientv3.Value(key), "=", expect)).
		Then(clientv3.OpPut(key, value)).
		Commit()
	if err != nil {
		return false, cl.failed(err)
	}
	return resp.Succeeded, nil
}

// Append implements kv.KV. etcd has no append, so it is a read and then a
// Txn that writes old+value only if the key's mod revision is still the
// one read (0: still absent), retried until it applies:
//
//   - the first read failing: nothing was sent that writes, a definite
//     failure;
//   - a Txn whose comparison failed had no effect (its Else branch reads
//     the key again, so the next try needs no separate read), and the
//     loop goes on; a deadline reached between tries is definite too;
//   - a Txn that erred may have applied: unknown, and the loop stops —
//     trying again could append twice.
func (cl *client) Append(ctx context.Context, key, value string) error {
	if err := ctx.Err(); err != nil {
		return kv.Definite(err)
	}
	cli, err := cl.pick()
	if err != nil {
		return err
	}
	g, err := cli.Get(ctx, key)
	if err != nil {
		cl.pos++
		return kv.Definite(fmt.Errorf("etcd: append's read: %w", err))
	}
	cur, rev := "", int64(0)
	if len(g.Kvs) > 0 {
		cur, rev = string(g.Kvs[0].Value), g.Kvs[0].ModRevision
	}
	for {
		if err := ctx.Err(); err != nil {
			return kv.Definite(fmt.Errorf("etcd: append gave up after failed comparisons: %w", err))
		}
		resp, err := cli.Txn(writeCtx(ctx)).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
			Then(clientv3.OpPut(key, cur+value)).
			Else(clientv3.OpGet(key)).
			Commit()
		if err != nil {
			return cl.failed(err)
		}
		if resp.Succeeded {
			return nil
		}
		cur, rev = "", 0
		if len(resp.Responses) > 0 {
			if r := resp.Responses[0].GetResponseRange(); r != nil && len(r.Kvs) > 0 {
				cur, rev = string(r.Kvs[0].Value), r.Kvs[0].ModRevision
			}
		}
	}
}

// classify marks the errors that prove a write had no effect as definite;
// every other error is left indeterminate (the harness records info).
// Definite:
//
//   - the member refused before handling the request: no leader (the
//     require-leader check), too many requests (applied index too far
//     behind), not capable, request too large, no space (the quota check
//     runs before the proposal);
//   - raft dropped the proposal on the member that received it (no
//     leader known: "raft proposal dropped"), so it was never forwarded;
//   - gRPC could not send it at all: the connection to the member was
//     down when the request was to go out ("Error while dialing").
//
// Everything else — a deadline, "request timed out", a connection that
// broke with the request on it, leader changed, server stopped — may have
// been committed.
func classify(err error) error {
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, rpctypes.ErrNoLeader),
		errors.Is(err, rpctypes.ErrTooManyRequests),
		errors.Is(err, rpctypes.ErrNotCapable),
		errors.Is(err, rpctypes.ErrRequestTooLarge),
		errors.Is(err, rpctypes.ErrNoSpace):
		return kv.Definite(err)
	}
	if s, ok := status.FromError(err); ok {
		msg := s.Message()
		switch {
		case s.Code() == codes.Unavailable && strings.Contains(msg, "Error while dialing"):
			return kv.Definite(err)
		case strings.Contains(msg, "raft proposal dropped"):
			return kv.Definite(err)
		}
	}
	return err
}
