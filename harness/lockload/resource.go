package lockload

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/chainraft/chainraft/kv"
)

// Request is one request the resource served, in the order it served them:
// one line of history.jsonl. The resource is the only clock the check
// trusts: Seq is its serialization order and Time its monotonic clock.
type Request struct {
	// Seq numbers the requests from 1 in the order the resource applied them.
	Seq int64 `json:"seq"`
	// Time is ns since the run's start on the harness's monotonic clock.
	Time int64 `json:"time"`
	// Worker is the lock client that sent the request.
	Worker int `json:"worker"`
	// Token is the fencing token of the acquisition the request belongs to
	// (sent in both modes; checked only when fenced).
	Token int64 `json:"token"`
	// Op is OpRead, OpWrite or OpCAS.
	Op string `json:"op"`
	// Value: for a read, the counter returned; for a write or cas, the value
	// to be written.
	Value int64 `json:"value"`
	// Expect is the value a cas compares against.
	Expect int64 `json:"expect,omitempty"`
	// Before is the counter when the request was served.
	Before int64 `json:"before"`
	// Accepted: a read returned Value, a write or cas set the counter to Value.
	Accepted bool `json:"accepted"`
	// Reason says why a request was refused.
	Reason string `json:"reason,omitempty"`
}

// Request operations.
const (
	OpRead  = "read"
	OpWrite = "write"
	OpCAS   = "cas"
)

// Refusal reasons.
const (
	ReasonStaleToken = "stale token"
	ReasonMismatch   = "value changed"
)

// maxRequests bounds the resource's in-memory log: a run is bounded in time,
// and a run that serves this many requests is misconfigured, not a history
// worth keeping whole.
const maxRequests = 1 << 20

// ErrHistoryFull: the resource served maxRequests and serves no more.
var ErrHistoryFull = errors.New("lockload: resource history full")

// Resource is the protected resource: one counter behind an HTTP server on
// loopback. Every request is served under one mutex, timestamped and logged
// in that order, so the log is the resource's own linear history.
type Resource struct {
	fenced bool
	start  time.Time

	mu       sync.Mutex
	value    int64
	maxToken int64
	log      []Request
	out      *bufio.Writer
	outFile  *os.File
	outErr   error
	lastRead Request // the newest accepted read: the holder the nemesis targets
	open     bool    // lastRead's acquisition has not written since

	ln  net.Listener
	srv *http.Server
	wg  sync.WaitGroup
}

// StartResource serves the counter on 127.0.0.1 and appends each served
// request to historyPath (if not empty) as it serves it. start is the run's
// start: request times count from it on the monotonic clock.
func StartResource(fenced bool, start time.Time, historyPath string) (*Resource, error) {
	r := &Resource{fenced: fenced, start: start}
	if historyPath != "" {
		f, err := os.Create(historyPath)
		if err != nil {
			return nil, fmt.Errorf("lockload: resource history: %w", err)
		}
		r.outFile = f
		r.out = bufio.NewWriter(f)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		if r.outFile != nil {
			r.outFile.Close()
		}
		return nil, fmt.Errorf("lockload: resource listen: %w", err)
	}
	r.ln = ln
	mux := http.NewServeMux()
	mux.HandleFunc("/read", r.handle(OpRead))
	mux.HandleFunc("/write", r.handle(OpWrite))
	mux.HandleFunc("/cas", r.handle(OpCAS))
	r.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 2 * time.Second,
		ReadTimeout:       2 * time.Second,
		WriteTimeout:      2 * time.Second,
		IdleTimeout:       5 * time.Second,
	}
	r.wg.Add(1)
	go func() { // owned by Close, which shuts the server down and waits
		defer r.wg.Done()
		_ = r.srv.Serve(ln)
	}()
	return r, nil
}

// Addr is the resource's host:port.
func (r *Resource) Addr() string { return r.ln.Addr().String() }

// Close stops serving (waiting for requests in flight) and flushes the
// history file. It is idempotent.
func (r *Resource) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err := r.srv.Shutdown(ctx)
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	r.wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.outFile != nil {
		if ferr := r.out.Flush(); ferr != nil && r.outErr == nil {
			r.outErr = ferr
		}
		if cerr := r.outFile.Close(); cerr != nil && r.outErr == nil {
			r.outErr = cerr
		}
		r.outFile = nil
	}
	return errors.Join(err, r.outErr)
}

// History is a copy of every request served so far, in order.
func (r *Resource) History() []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Request(nil), r.log...)
}

// Value is the counter now.
func (r *Resource) Value() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.value
}

// InCritical is the newest accepted read while its acquisition has not
// written yet: that worker is inside its critical section. It is how the nemesis finds a holder to pause at the worst moment,
// between its read and its write.
func (r *Resource) InCritical() (read Request, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastRead, r.open
}

// Since is the time on the resource's clock (ns since the run's start).
func (r *Resource) Since() int64 { return int64(time.Since(r.start)) }

// reply is the resource's answer on the wire.
type reply struct {
	Seq      int64  `json:"seq"`
	Value    int64  `json:"value"`
	Accepted bool   `json:"accepted"`
	Reason   string `json:"reason,omitempty"`
}

func (r *Resource) handle(op string) http.HandlerFunc {
	return func(w http.ResponseWriter, hr *http.Request) {
		q := hr.URL.Query()
		worker, err1 := strconv.Atoi(q.Get("worker"))
		token, err2 := strconv.ParseInt(q.Get("token"), 10, 64)
		var value, expect int64
		var err3, err4 error
		if op != OpRead {
			value, err3 = strconv.ParseInt(q.Get("value"), 10, 64)
		}
		if op == OpCAS {
			expect, err4 = strconv.ParseInt(q.Get("expect"), 10, 64)
		}
		if err := errors.Join(err1, err2, err3, err4); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rec, err := r.serve(op, worker, token, value, expect)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(reply{Seq: rec.Seq, Value: rec.Value, Accepted: rec.Accepted, Reason: rec.Reason})
	}
}

// serve applies one request atomically and logs it.
func (r *Resource) serve(op string, worker int, token, value, expect int64) (Request, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.log) >= maxRequests {
		return Request{}, ErrHistoryFull
	}
	rec := Request{
		Seq:    int64(len(r.log)) + 1,
		Time:   int64(time.Since(r.start)),
		Worker: worker, Token: token, Op: op,
		Expect: expect, Before: r.value,
	}
	switch {
	case r.fenced && token < r.maxToken:
		rec.Reason = ReasonStaleToken
		if op != OpRead {
			rec.Value = value
		}
	case op == OpRead:
		rec.Accepted = true
		rec.Value = r.value
	case op == OpCAS && r.value != expect:
		rec.Value = value
		rec.Reason = ReasonMismatch
	default: // a write, or a cas that matched
		rec.Accepted = true
		rec.Value = value
		r.value = value
	}
	if r.fenced && rec.Reason != ReasonStaleToken {
		r.maxToken = max(r.maxToken, token)
	}
	if rec.Accepted {
		switch {
		case op == OpRead:
			r.lastRead, r.open = rec, true
		case r.open && r.lastRead.Worker == worker && r.lastRead.Token == token:
			r.open = false
		}
	}
	r.log = append(r.log, rec)
	if r.out != nil && r.outErr == nil {
		b, _ := json.Marshal(rec)
		b = append(b, '\n')
		if _, err := r.out.Write(b); err != nil {
			r.outErr = err
		}
	}
	return rec, nil
}

// ---- the client a worker uses ----

// ErrRefused is a request the resource refused (a stale token, or a cas
// whose expected value had changed): it certainly had no effect.
var ErrRefused = fmt.Errorf("lockload: refused by the resource: %w", kv.ErrDefinite)

// ResourceClient talks to a Resource. Every request has a deadline; a
// request that fails without a reply is indeterminate (it may have been
// served: the resource's history says).
type ResourceClient struct {
	base   string
	worker int
	hc     *http.Client
}

// NewResourceClient is worker's client of the resource at addr.
func NewResourceClient(addr string, worker int, timeout time.Duration) *ResourceClient {
	return &ResourceClient{
		base:   "http://" + addr,
		worker: worker,
		hc: &http.Client{
			Timeout: timeout,
			// A fresh connection per request: a worker paused for seconds
			// must not come back to a pooled connection the server has
			// closed meanwhile, which would turn its write into a transport
			// error instead of the request the test is about.
			Transport: &http.Transport{DisableKeepAlives: true},
		},
	}
}

// Read returns the counter, under token.
func (c *ResourceClient) Read(ctx context.Context, token int64) (int64, error) {
	rep, err := c.do(ctx, "/read", url.Values{"token": {fmt.Sprint(token)}})
	if err != nil {
		return 0, err
	}
	return rep.Value, nil
}

// Write sets the counter to value, with no condition: the unfenced write.
func (c *ResourceClient) Write(ctx context.Context, token, value int64) error {
	_, err := c.do(ctx, "/write", url.Values{"token": {fmt.Sprint(token)}, "value": {fmt.Sprint(value)}})
	return err
}

// CAS sets the counter from expect to value if token is not older than the
// newest the resource has seen: the fenced write.
func (c *ResourceClient) CAS(ctx context.Context, token, expect, value int64) error {
	_, err := c.do(ctx, "/cas", url.Values{
		"token": {fmt.Sprint(token)}, "expect": {fmt.Sprint(expect)}, "value": {fmt.Sprint(value)},
	})
	return err
}

func (c *ResourceClient) do(ctx context.Context, path string, q url.Values) (reply, error) {
	q.Set("worker", strconv.Itoa(c.worker))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path+"?"+q.Encode(), nil)
	if err != nil {
		return reply{}, fmt.Errorf("lockload: %s: %w", path, err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return reply{}, fmt.Errorf("lockload: %s: %w", path, err) // indeterminate
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return reply{}, fmt.Errorf("lockload: %s: reading reply: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return reply{}, fmt.Errorf("lockload: %s: %s: %s", path, resp.Status, body)
	}
	var rep reply
	if err := json.Unmarshal(body, &rep); err != nil {
		return reply{}, fmt.Errorf("lockload: %s: bad reply %q: %w", path, body, err)
	}
	if !rep.Accepted {
		return rep, fmt.Errorf("%w: %s (seq %d)", ErrRefused, rep.Reason, rep.Seq)
	}
	return rep, nil
}
