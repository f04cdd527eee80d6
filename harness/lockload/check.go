package lockload

import (
	"fmt"
	"sort"
)

// Verdicts of Check.
const (
	VerdictOK        = "ok"
	VerdictViolation = "violation"
	// VerdictUnknown: the history shows no accepted write, so it says
	// nothing about mutual exclusion; never reported as ok.
	VerdictUnknown = "unknown"
)

// Violation kinds.
const (
	// KindInterleave: another holder's accepted write fell between an
	// acquisition's read and its accepted write, so that write was based on
	// a superseded read.
	KindInterleave = "interleaved critical sections"
	// KindLostIncrement: an accepted write did not set the counter to the
	// value it had plus one.
	KindLostIncrement = "lost increment"
	// KindFinal: the final counter is not the number of accepted writes.
	KindFinal = "final counter"
	// KindStaleRead: the resource returned a value other than its own
	// counter (a bug in the resource, not in the lock).
	KindStaleRead = "stale read"
)

// Holding is one side of a violation: an acquisition (worker, token) and the
// request of it that matters.
type Holding struct {
	Worker int   `json:"worker"`
	Token  int64 `json:"token"`
	Seq    int64 `json:"seq"`
	Time   int64 `json:"time"`
}

// Violation is one broken property, with the holders involved.
type Violation struct {
	Kind   string `json:"kind"`
	Detail string `json:"detail"`
	// Holder is the acquisition whose write is at fault.
	Holder Holding `json:"holder"`
	// Other is the acquisition that interfered, when there is one: for an
	// interleaving, the write that fell inside Holder's section; for a lost
	// increment, the write that set the value Holder overwrote.
	Other *Holding `json:"other,omitempty"`
	// Paused is set by Run (Check knows nothing of the nemesis): the
	// nemesis paused Holder's or Other's acquisition, which explains the
	// violation. A violation no pause explains points at the lock itself.
	Paused bool `json:"paused"`
}

// CheckResult is the verdict on a resource history.
type CheckResult struct {
	Verdict       string `json:"verdict"`
	Requests      int    `json:"requests"`
	Acquisitions  int    `json:"acquisitions"`
	AcceptedReads int    `json:"accepted_reads"`
	// AcceptedWrites is writes and cas that changed the counter.
	AcceptedWrites int `json:"accepted_writes"`
	// Refused counts refused requests, StaleRefused those refused for a
	// stale token: the fencing at work.
	Refused      int `json:"refused"`
	StaleRefused int `json:"stale_refused"`
	// TwoHolders counts acquisitions that were still active at the resource
	// (between their first and last request) when another acquisition
	// began: each is a holder deposed without knowing, the lock having two
	// holders at once. Not a violation by itself: with fencing the
	// stale holder's write is refused and the counter stays right.
	TwoHolders int   `json:"two_holders"`
	Final      int64 `json:"final"`
	// Violations holds at most maxViolations entries; ViolationCount is
	// the total.
	Violations     []Violation `json:"violations,omitempty"`
	ViolationCount int         `json:"violation_count"`
	// Unexplained counts the interleavings among Violations where neither
	// acquisition was paused (set by Run): two holders the pause nemesis
	// did not cause, a fault of the lock recipe itself.
	Unexplained int `json:"unexplained"`
}

const maxViolations = 50

type acqKey struct {
	worker int
	token  int64
}

// section is one acquisition as the resource saw it.
type section struct {
	key         acqKey
	first, last int   // indexes of its first and last request
	read        int   // index of its first accepted read, or -1
	write       int   // index of its first accepted write after read, or -1
	readValue   int64 // the value that read returned
}

// Check decides whether a resource history (as Resource.History returns it,
// in serving order) shows mutual exclusion and no lost increment:
//
//   - replaying the accepted writes from 0, each sets the counter to the
//     value it had plus one (no lost increment), and each accepted read
//     returned the replayed counter;
//   - no acquisition's accepted write is based on a read that another
//     acquisition's accepted write superseded (critical sections as the
//     resource saw them do not interleave);
//   - the final counter equals the number of accepted writes.
//
// A history with no accepted write is VerdictUnknown. A history whose Seq
// are not 1, 2, 3, ... is not one a Resource wrote: Check returns an error.
func Check(h []Request) (CheckResult, error) {
	var res CheckResult
	res.Requests = len(h)
	for i, r := range h {
		if r.Seq != int64(i)+1 {
			return res, fmt.Errorf("lockload: history request %d has seq %d, want %d", i, r.Seq, i+1)
		}
	}
	add := func(v Violation) {
		res.ViolationCount++
		if len(res.Violations) < maxViolations {
			res.Violations = append(res.Violations, v)
		}
	}
	at := func(i int) Holding {
		return Holding{Worker: h[i].Worker, Token: h[i].Token, Seq: h[i].Seq, Time: h[i].Time}
	}

	// Replay the counter; index the acquisitions.
	secs := map[acqKey]*section{}
	var order []*section
	var cur int64
	lastWrite := -1 // index of the newest accepted write
	for i, r := range h {
		k := acqKey{r.Worker, r.Token}
		s := secs[k]
		if s == nil {
			s = &section{key: k, first: i, read: -1, write: -1}
			secs[k] = s
			order = append(order, s)
		}
		s.last = i
		if !r.Accepted {
			res.Refused++
			if r.Reason == ReasonStaleToken {
				res.StaleRefused++
			}
			continue
		}
		switch r.Op {
		case OpRead:
			res.AcceptedReads++
			if r.Value != cur {
				add(Violation{Kind: KindStaleRead, Holder: at(i),
					Detail: fmt.Sprintf("read at seq %d returned %d but the accepted writes before it leave %d", r.Seq, r.Value, cur)})
			}
			if s.read < 0 {
				s.read, s.readValue = i, r.Value
			}
		case OpWrite, OpCAS:
			res.AcceptedWrites++
			if r.Value != cur+1 {
				var other *Holding
				if lastWrite >= 0 {
					o := at(lastWrite)
					other = &o
				}
				add(Violation{Kind: KindLostIncrement, Holder: at(i), Other: other,
					Detail: fmt.Sprintf("worker %d (token %d) wrote %d at seq %d (t=%s) where the counter was %d: want %d",
						r.Worker, r.Token, r.Value, r.Seq, fmtNs(r.Time), cur, cur+1)})
			}
			cur = r.Value
			lastWrite = i
			if s.read >= 0 && s.write < 0 {
				s.write = i
			}
		default:
			return res, fmt.Errorf("lockload: history request seq %d has unknown op %q", r.Seq, r.Op)
		}
	}
	res.Final = cur
	res.Acquisitions = len(order)

	// Interleaving: an accepted write of another acquisition strictly
	// between an acquisition's read and its accepted write.
	var writes []int // indexes of accepted writes, ascending
	for i, r := range h {
		if r.Accepted && r.Op != OpRead {
			writes = append(writes, i)
		}
	}
	for _, s := range order {
		if s.read < 0 || s.write < 0 {
			continue
		}
		lo := sort.SearchInts(writes, s.read+1)
		for _, k := range writes[lo:] {
			if k >= s.write {
				break
			}
			if h[k].Worker == s.key.worker && h[k].Token == s.key.token {
				continue
			}
			other := at(k)
			add(Violation{Kind: KindInterleave, Holder: at(s.write), Other: &other,
				Detail: fmt.Sprintf("worker %d (token %d) read %d at t=%s and wrote %d at t=%s, but worker %d (token %d) wrote %d at t=%s in between",
					s.key.worker, s.key.token, s.readValue, fmtNs(h[s.read].Time), h[s.write].Value, fmtNs(h[s.write].Time),
					h[k].Worker, h[k].Token, h[k].Value, fmtNs(h[k].Time))})
			break
		}
	}

	// Two holders at once: order is sorted by first request, so a section
	// some later acquisition began inside is one its successor began inside.
	for i := 0; i+1 < len(order); i++ {
		if order[i+1].first < order[i].last {
			res.TwoHolders++
		}
	}

	if int64(res.AcceptedWrites) != cur {
		add(Violation{Kind: KindFinal,
			Detail: fmt.Sprintf("final counter %d after %d accepted writes: %d increment(s) lost", cur, res.AcceptedWrites, int64(res.AcceptedWrites)-cur)})
	}
	switch {
	case res.ViolationCount > 0:
		res.Verdict = VerdictViolation
	case res.AcceptedWrites == 0:
		res.Verdict = VerdictUnknown
	default:
		res.Verdict = VerdictOK
	}
	return res, nil
}

func fmtNs(ns int64) string {
	return fmt.Sprintf("%.3fs", float64(ns)/1e9)
}
