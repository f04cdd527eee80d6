package sim

import (
	"bytes"
	cryptorand "crypto/rand"
	"io"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync"
)

// etcd raft draws each node's randomized election timeout from
// crypto/rand.Reader (go.etcd.io/raft/v3 raft.go, lockedRand), with no
// option to pass a source in. Left alone, that one draw would make every
// election, and so every history, differ between two runs of a seed.
//
// The simulator therefore replaces crypto/rand.Reader, once, with a
// dispatcher: a read on a goroutine that is running a seed's world gets bytes
// from that world's seeded source; any other read goes to the real reader.
// Worlds run in parallel, one per goroutine, so the dispatcher keys them by
// goroutine id. The id is read from runtime.Stack's first line, which costs a
// microsecond; raft draws only when a node changes role, so this is noise.
// The replacement happens before the first world starts and is never undone;
// nothing in a process running the simulator needs crypto/rand to be
// unpredictable for its own safety (the sim serves no network).
var (
	entropyOnce sync.Once
	entropyMu   sync.Mutex
	entropyBy   = map[uint64]*rand.Rand{}
)

type dispatchReader struct{ real io.Reader }

func (d dispatchReader) Read(p []byte) (int, error) {
	id := goid()
	entropyMu.Lock()
	r := entropyBy[id]
	entropyMu.Unlock()
	if r == nil {
		return d.real.Read(p)
	}
	for i := range p {
		p[i] = byte(r.Uint32())
	}
	return len(p), nil
}

// bindEntropy routes this goroutine's crypto/rand reads to r until the
// returned function is called. The caller must stay on this goroutine.
func bindEntropy(r *rand.Rand) (unbind func()) {
	entropyOnce.Do(func() {
		cryptorand.Reader = dispatchReader{real: cryptorand.Reader}
	})
	id := goid()
	entropyMu.Lock()
	entropyBy[id] = r
	entropyMu.Unlock()
	return func() {
		entropyMu.Lock()
		delete(entropyBy, id)
		entropyMu.Unlock()
	}
}

// goid is the current goroutine's id, from the "goroutine N [" header of its
// stack trace.
func goid() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	if i := bytes.IndexByte(b, ' '); i > 0 {
		b = b[:i]
	}
	id, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil {
		panic("sim: cannot read the goroutine id from " + strconv.Quote(string(buf[:])))
	}
	return id
}
