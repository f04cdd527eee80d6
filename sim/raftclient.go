package sim

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/chainraft/chainraft/histories"
	"github.com/chainraft/chainraft/kv"
	"github.com/chainraft/chainraft/raftkv"
	pb "github.com/chainraft/chainraft/raftkv/raftkvpb"
)

// raftClient is raftkv.Client on the simulated clock: the same leader
// guess shared by every client of the cluster, the same rotation through
// the nodes, the same retries of one request id until a definite answer or
// the deadline, the same backoffs, and the same rule for when a failure is
// indeterminate (any attempt that may have proposed the write). Where
// Client blocks in a gRPC call, this one waits for an answer event or its
// attempt's timeout event.
type raftClient struct {
	c        *raftCluster
	clientID uint64
	seq      uint64

	attemptTimeout time.Duration // raftkv.ClientOptions.AttemptTimeout

	// The operation in progress.
	op           histories.Operation
	cmd          *pb.Command
	deadline     int64
	write        bool
	maybeApplied bool
	lastErr      error
	last         uint64 // the node tried last
	rotate       bool
	attempt      int  // current attempt's number; answers to older ones are late
	waiting      bool // an attempt is in flight
	target       uint64
	done         func(histories.Operation, error)

	answered uint64 // the node that gave the last answer (LastNode)
}

func newRaftClient(c *raftCluster, i int) *raftClient {
	// Client ids are drawn from the seed, not kv.NewClientID's entropy:
	// the same seed must send the same commands.
	id := c.r.w.rng.Uint64() | 1
	return &raftClient{c: c, clientID: id, attemptTimeout: time.Second}
}

func (rc *raftClient) lastNode() string {
	if rc.answered == 0 {
		return ""
	}
	return strconv.FormatUint(rc.answered, 10)
}

// do starts op; done is called once with its results or error.
func (rc *raftClient) do(op histories.Operation, deadline int64, done func(histories.Operation, error)) {
	rc.op, rc.deadline, rc.done = op, deadline, done
	rc.cmd = &pb.Command{Key: op.Key, Value: op.Value, Expect: op.Expect}
	switch op.Op {
	case histories.Get:
		rc.cmd.Op = pb.Op_OP_GET
	case histories.Put:
		rc.cmd.Op = pb.Op_OP_PUT
	case histories.Append:
		rc.cmd.Op = pb.Op_OP_APPEND
	case histories.CAS:
		rc.cmd.Op = pb.Op_OP_CAS
	}
	rc.write = op.Op != histories.Get
	if rc.write {
		rc.seq++
		rc.cmd.Client, rc.cmd.Seq = rc.clientID, rc.seq
	}
	rc.maybeApplied = false
	rc.lastErr = errors.New("no attempt")
	rc.last, rc.rotate = 0, false
	rc.next()
}

// pick is raftkv.Conns.target: the leader guess, else the next id after the
// last one tried.
func (rc *raftClient) pick(after uint64, rotate bool) uint64 {
	if l := rc.c.leaderGuess; l != 0 && !rotate {
		return l
	}
	for _, n := range rc.c.nodes {
		if n.id > after {
			return n.id
		}
	}
	return rc.c.nodes[0].id
}

func (rc *raftClient) next() {
	w := rc.c.r.w
	if w.now >= rc.deadline {
		rc.finish()
		return
	}
	id := rc.pick(rc.last, rc.rotate)
	rc.last, rc.rotate = id, true
	rc.attempt++
	rc.waiting = true
	rc.target = id
	a := rc.attempt
	d := rc.attemptTimeout
	if half := time.Duration(rc.deadline-w.now) / 2; half >= 100*time.Millisecond && half < d {
		d = half
	}
	expiry := min(w.now+int64(d), rc.deadline)
	cmd := proto.Clone(rc.cmd).(*pb.Command)
	node := rc.c.node(id)
	rc.c.r.net.send(clientEndpoint, int(id), func() { node.request(reqRef{cl: rc, attempt: a}, cmd) }, nil)
	w.at(expiry, func() {
		if rc.attempt == a && rc.waiting {
			rc.answer(a, id, nil, errors.New("context deadline exceeded"))
		}
	})
}

// answer is the end of attempt a: a response, or err when the call failed
// (deadline, connection refused or reset).
func (rc *raftClient) answer(a int, id uint64, resp *pb.Response, err error) {
	if a != rc.attempt || !rc.waiting {
		return // a late answer to an attempt the client gave up on
	}
	rc.waiting = false
	backoff := 20 * time.Millisecond
	switch {
	case err != nil:
		rc.maybeApplied = rc.maybeApplied || rc.write
		rc.lastErr = fmt.Errorf("node %d: %w", id, err)
		if rc.c.leaderGuess == id {
			rc.c.leaderGuess = 0
		}
	case resp.GetCode() == pb.Code_CODE_OK:
		rc.answered = id
		rc.c.leaderGuess = id
		rc.succeed(resp.GetResult())
		return
	case resp.GetCode() == pb.Code_CODE_NOT_LEADER:
		rc.lastErr = fmt.Errorf("node %d: %s", id, resp.GetError())
		if l := resp.GetLeaderId(); l != 0 {
			rc.c.leaderGuess = l
			rc.rotate = false
			backoff = 0
		} else {
			if rc.c.leaderGuess == id {
				rc.c.leaderGuess = 0
			}
			backoff = 50 * time.Millisecond
		}
	case resp.GetCode() == pb.Code_CODE_BAD_REQUEST:
		rc.fail(kv.Definitef("raftkv: node %d: %s", id, resp.GetError()))
		return
	case resp.GetCode() == pb.Code_CODE_UNKNOWN:
		rc.maybeApplied = rc.maybeApplied || rc.write
		rc.lastErr = fmt.Errorf("node %d: %w: %s", id, raftkv.ErrUnknown, resp.GetError())
		if rc.c.leaderGuess == id {
			rc.c.leaderGuess = 0
		}
	default: // dropped, overloaded: certainly not proposed
		rc.lastErr = fmt.Errorf("node %d: %s", id, resp.GetError())
		rc.rotate = false
	}
	w := rc.c.r.w
	if backoff == 0 {
		rc.next()
		return
	}
	w.at(min(w.now+int64(backoff), rc.deadline), rc.next)
}

func (rc *raftClient) finish() {
	if rc.maybeApplied {
		rc.fail(fmt.Errorf("raftkv: %w after deadline: %w", raftkv.ErrUnknown, rc.lastErr))
		return
	}
	rc.fail(kv.Definite(fmt.Errorf("raftkv: context deadline exceeded (last: %w)", rc.lastErr)))
}

func (rc *raftClient) succeed(res *pb.Result) {
	op := rc.op
	switch op.Op {
	case histories.Get:
		op.Output, op.Found = res.GetValue(), res.GetFound()
	case histories.CAS:
		op.Swapped = res.GetSwapped()
	}
	rc.complete(op, nil)
}

func (rc *raftClient) fail(err error) { rc.complete(rc.op, err) }

func (rc *raftClient) complete(op histories.Operation, err error) {
	done := rc.done
	rc.done = nil
	if op.Node == "" {
		op.Node = rc.lastNode()
	}
	done(op, err)
}
