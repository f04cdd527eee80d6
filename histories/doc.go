// Package histories holds what the harness records and how it is judged:
// the operation record, the JSON Lines history format, the recorder (see
// recorder.go), the Porcupine model of the KV interface, the per-key
// budgeted three-valued checker and its HTML visualizations.
//
// # Format
//
// history.jsonl has one operation per line:
//
//	field    type     required            meaning
//	client   int ≥ 0  yes                 client id; one operation in flight per client
//	op       string   yes                 "get", "put", "append", "cas"
//	key      string   yes                 may be ""
//	value    string   no (default "")     put/append value, cas new value; not on a get
//	expect   string   no (default "")     cas only; "" is the empty string, which an absent key never matches
//	call     int64≥0  yes                 ns since the run's start (monotonic clock)
//	return   int64    unless outcome info ns since the run's start, ≥ call
//	outcome  string   yes                 "ok", "fail" (certainly no effect), "info" (unknown), "invoke" (see Streaming)
//	found    bool     no (default false)  get with outcome ok: the key existed
//	output   string   no (default "")     get with outcome ok and found: the value read
//	swapped  bool     no (default false)  cas with outcome ok: it swapped
//	node     string   no                  the node that answered
//	error    string   no                  the error text
//
// The reader validates each line and reports the first problem as an
// *InputError naming file and line: malformed JSON, a missing required
// field, an unknown op or outcome, a negative client or call, a return
// before the call, fields that belong to another kind of operation (output
// on a put, swapped on a get, result fields on a failed or unknown
// operation, output on a get that did not find the key), and a client
// whose operations overlap in time, checked across the whole file whatever
// the line order. An info operation without a return occupies its client for
// good (the recorder moves on under a new id); one with a return (the client
// gave up then) frees it. Intervals that only touch do not overlap.
//
// Unknown fields are ignored on purpose: a newer recorder may add fields (a
// request sequence, a retry count) that an older checker need not read.
// Strictness is kept for the fields the checker interprets, since a typo
// there changes the verdict. Blank lines are skipped; a line over 1 MiB is
// an error rather than an unbounded allocation. In memory, Return 0 on an
// info operation means "no return"; the Writer writes every other return,
// even 0, and encodes by hand (checked against encoding/json by the tests)
// because reflection was a visible part of recording cost. A key, value,
// expect or output that is not valid UTF-8 is written as
// {"b64":"<standard base64>"} in place of the string: JSON strings cannot
// hold arbitrary bytes, and the U+FFFD replacement encoding/json makes
// would merge two different keys into one. The node and error fields,
// which only describe, are replaced as before.
//
// # Streaming
//
// A streaming recorder (NewStreamRecorder) keeps no operation in memory: it
// writes each one when it completes. A harness killed mid-run must still
// leave a history that is judged soundly, and "a line per completed
// operation" is not enough: a read can see a write that was still in
// flight, whose line would never be written, and the read would look
// illegal. So:
//
//   - Before a write's request is sent, its invoke line goes out: the
//     operation with outcome "invoke", no return, no result fields.
//   - Every line goes through one ordered stream (a bounded channel to one
//     flusher goroutine), so a line recorded after a write was sent
//     follows that write's invoke line in the file; lines are gathered
//     whole and written at least every StreamFlushInterval (200 ms).
//   - Reading, a line with the same client and call as an earlier invoke
//     line completes it and replaces it (op, key, value and expect must
//     match); an invoke line never completed is an unknown operation that
//     never returned (error NoCompletionError), delivered after the last
//     line. A client with an open invoke line is busy, as with any
//     operation in flight.
//   - A last line without a newline that is not JSON is a write torn by the
//     kill (the kernel may cut a write short on SIGKILL): it is ignored and
//     Reader.Torn is set. Any other malformed line is still an error.
//
// Cutting the file anywhere keeps it sound: every read line present has
// the invoke line of each write it could have seen before it, and that
// write is then completed or unknown. Files without invoke lines read as
// before. Close writes the operations still in flight as unknown
// (InFlightError), flushes, syncs and closes. After a run, read the file
// back with ScanFile (one operation at a time) rather than keeping it.
//
// # Memory
//
// Check and CheckFile never hold a history as Operations. As it is read,
// each operation the check keeps is appended to its key's buffer in a
// compact encoding (opStore: a flag byte, varints for client, call and
// return − call, the value, expect and output bytes, node and error texts
// interned), a few dozen bytes each; past 64 MiB of buffers they all go to
// one temporary file, unlinked as soon as it is created. Keys are then
// prepared and searched in batches of at most 100,000 operations (a key
// longer than that alone): each batch gets the late variants, the witness
// and the first search round, and a key decided there is dropped at once.
// Only undecided keys stay for the later rounds, and illegal keys (up to a
// million operations) for their drawings. So memory is the store's bound,
// one batch and what is still undecided, whatever the length. Rounds keep
// their meaning: every segment gets its first slice before any gets a
// second, and after an illegal round nothing is searched further.
//
// Reading costs little too. A plain line (the Writer's: no whitespace,
// known fields once each, strings without escapes, integers) is parsed by
// hand; any other line goes to encoding/json, which alone decides what it
// means and what is wrong with it, and a fuzz test requires the two to
// agree wherever the hand parser answers. Keys and nodes are interned. The
// check that no client overlaps itself keeps, while each client's
// operations arrive in order (one beginning no earlier than the last
// returned, as any recorder writes them), only the last return per
// client; the first operation that does not makes ScanFile read the file
// again with the exact check over every span, passing over the operations
// already delivered, so the verdict and error line never depend on which
// check ran.
//
// # Checking rules, and why they are sound
//
// Check answers ok, illegal or unknown for every key and for the history.
// Each rule below either keeps exactly the set of linearizations or is
// argued to preserve the verdict both ways, so an ok is never wrong and an
// illegal is never invented.
//
//   - Keys are checked apart (locality, Herlihy & Wing): every operation
//     touches one key, so the history is linearizable iff each key's is.
//     The model's state is then one register: present flag and value, so an
//     absent key and an empty value differ.
//   - Fail operations are dropped: they certainly had no effect. Unknown
//     reads are dropped: no effect, and nothing known about what they saw.
//   - An unknown write returns "after everything" (one past the last time in
//     the key's history), accepts any output and applies its effect (a cas
//     only if its precondition holds): it may have taken effect at any time
//     after its call or never, and "never" is the same as "last".
//
// On a key without appends whose written values (put values, cas new
// values) are all distinct, a value read identifies its one writer:
//
//   - Bounding: an unknown write whose value some completed operation saw (a
//     read of it, a cas that swapped from it) gets as return the earliest
//     such observer's return; ok writes are tightened the same way, and each
//     observer's call is raised to its writer's call. This is exact: only
//     that write can put its value in the state, so in every linearization
//     it comes before each observer, which comes before its own return.
//
//   - Pruning: an unknown write nobody observed is dropped unless some cas
//     compares against its value or some completed cas that did not swap (on
//     an expected value that some write produces) returned after the
//     write's call. Dropping it is sound: in any linearization, the
//     operations between it and the next state change would see its value,
//     so none of them is a read or a swapping cas and any other cas there is
//     an unknown one, which can move to the end (its return is after
//     everything); removing the write leaves a linearization of the pruned
//     history, and conversely a linearization of the pruned history with the
//     write appended last is one of the original. The non-swapping cas
//     clause is needed: "put a; unknown put v; cas(a→b) did not swap" is
//     linearizable only if v landed before the cas.
//
//   - Value clusters, on keys with only puts and gets: a value's put and
//     the reads that returned it are contiguous in every linearization, and
//     reads of the absent key precede every put, so if any operation of one
//     cluster returned before any operation of another began, the whole of
//     the first precedes the whole of the second; intervals are narrowed to
//     match (see tightenClusters). Every linearization already obeys these
//     bounds, so the set of linearizations is unchanged (a brute-force test
//     enumerates them on small histories); the search then meets operations
//     in an order closer to the true one and finds more places to cut.
//
// # Appends
//
// On a key with appends, a state is a base (the value of the last put or
// swapped cas, or "" when appends started from an absent key) followed by
// the appended values in the order applied. decoder parses a state seen (a
// read's output, a swapped cas's expected value) over the key's put and cas
// values and its append values; when there is exactly one parse, it is
// what happened: the real state was made by some such sequence, and there
// is only one. Nothing below needs values to be unique; a value with
// several writers, or a state with several parses, simply names nothing.
//
//   - Bounding: each write a decoded state names (its base's writer, each
//     append) took effect before the observer returned, so its return is
//     lowered to the earliest such observer's, and the observer's call is
//     raised to the latest named write's call (exact, as above).
//   - Order: consecutive writes of one decoded state were applied with no
//     state change between them (a, then b right after): b's call is
//     raised to a's, a's return lowered to b's; a swapped cas comes right
//     after the write whose state it expected.
//   - Clusters generalised: a write that certainly took effect (ok, or an
//     unknown one some decoded state names) and the reads whose decoded
//     state it made last are contiguous in every linearization (states
//     never recur: a recurrence would be a second production of the same
//     string, and the parse is unique), and adjacent clusters (the Order
//     pairs) merge into one contiguous run. The bounds of "Value
//     clusters" then apply unchanged (narrowByClusters).
//   - Pruning: an unknown write w is dropped unless its value shows in a
//     decoded state, or inside a state that did not decode or a cas's
//     expected value that did not (by substring), or some completed cas
//     that did not swap may need w to explain it. In a linearization the
//     operations between w and the next reset would all see w's value, so
//     none is a read or a swapping cas, and removing w changes only states
//     nobody looks at, except a non-swapping cas c whose expected value
//     equals the state without w. That needs c to return after w's call,
//     and c's expected value to be a state that may still hold at w's call:
//     one with no parse never holds, and one whose last write x was
//     certainly followed by a write that returned at r (an Order pair, or
//     a write that began after x returned) was gone by r. So w is kept when
//     some such c has min(c's return, r) ≥ w's call.
//   - Segments also cut where a read began after every state change of the
//     segment returned: that read saw the state the segment leaves.
//   - Late first: unknown writes neither pruned nor bounded stay open to
//     the end, which blocks every cut after their call and lets the search
//     try each of them at every step. So each key that has such writes is
//     first checked with them narrowed to the instant "after everything"
//     (lateVariant): narrowing intervals only removes linearizations, so
//     an Ok there is an Ok of the key (such a write then took effect last,
//     or never). Anything else proves nothing and the key is checked as
//     recorded, within the same budget. A late search that only ran out
//     of time is tried again with growing slices while the late searches
//     have used less than a quarter of the time left: on a loaded machine
//     the first slice can be too short for the easy form, and the recorded
//     form is much harder, so giving up early turned checkable histories
//     into Unknown.
//   - Witness plans: to make the state a read saw, the walk may go back
//     through cas bases (a cas needs the state it expected first), apply
//     a pending write that leaves another state for a cas that did not
//     swap, and apply first the pending writes nobody saw before a put
//     erases them. Each step is a legal model step of a called, pending
//     operation, so a complete walk is still a linearization.
//   - Witness: before searching, each segment is walked in time order,
//     taking reads as soon as legal, applying writes at their return
//     unless a read needs them first (its decoded state says which pending
//     writes, in which order). An Ok comes only with a complete sequence of
//     legal model steps, each inside its (narrowed) interval: a
//     linearization, so it needs no further argument; when the walk gets
//     stuck the segment is searched as before.
//
// These rules narrow the intervals the search sees; the visualization draws
// those, and each operation's tooltip gives its recorded times and which
// rule narrowed it. Keys with appends get the rules of "Appends" above
// instead; keys without appends whose values repeat get none (a repeated
// value does not name its writer); the Jepsen etcd histories in the tests
// repeat values and exercise that path. Result.Pruned and Result.Bounded count the unknown
// writes pruned and bounded. Finally, on every key:
//
//   - Segments: a key is cut where every operation before the cut returned
//     before any after it began, and the state there is forced (see
//     segmentKey: the latest state change is a put or swapped cas that began
//     after all other state changes of the segment returned). The key is
//     linearizable iff every segment is, from its forced start state. Search
//     cost grows much faster than the length searched, so this is what
//     makes long keys cheap.
//
// # Budget
//
// porcupine's search is exponential in the worst case; Check never lets
// that turn into a false Ok. The budget (60 s unless set) covers the search
// of all keys. Segments are searched by a fixed pool of workers in rounds of
// growing per-segment slices (budget/64, then ×4 per round, the last round
// getting what is left), so one hard segment cannot starve the rest; a
// restarted search wastes at most a third of its time. An exhausted budget
// or a cancelled ctx makes the undecided segments, their keys and the
// history Unknown. Once any segment is illegal the history's verdict is
// settled and undecided segments stay Unknown rather than use the rest of
// the budget. Stopping a search: porcupine only watches its own timer, so
// the model refuses every step once a stop flag is set, porcupine unwinds
// within a few steps and answers illegal, and that answer is discarded as
// Unknown. An Ok reached while stopping is a complete linearization built
// from genuine steps, so it stands.
//
// # Visualizations
//
// With VisualizeDir set, each illegal key (and, with VisualizeAll, each ok
// key of a history of at most VisualizeAllMaxOps operations) is searched
// again verbosely and written with porcupine's visualizer to
// <dir>/<key>.html; the key is sanitized, with a hash of the real key added
// whenever the name had to change, so keys never share a file. Unknown keys
// are not drawn: the partial linearizations of an interrupted search are
// short and misleading. Each drawing has its own budget (30 s, within a
// phase budget equal to Budget); a drawing whose search was stopped says so
// on the page. The pages of one check together stay under
// MaxVisualizationBytes (256 MiB unless set): a page that would exceed it is
// not written. Browsers struggle past about 10–20 thousand operations, so an
// illegal key is drawn from its first illegal segment, and what is still
// longer than 5,000 operations is cut to a window: the longest linearization
// the search found is replayed to a point, and the page shows the following
// operations checked from the state reached there, which keeps the
// violation (a porcupine linearization prefix respects real time, so had the
// rest been linearizable from that state, the whole would have been). A cut
// page carries a "checker" annotation "cut: showing ops X..Y of Z" with the
// reason in its tooltip. Timeline rows are packed per page: porcupine
// draws one row per client id, but a key sees many mostly idle clients, so
// operations share rows when their intervals do not meet (the tooltip gives
// the real client id, recorded times, node and error, HTML-escaped, as are
// state descriptions: the tooltip is innerHTML). Annotations are drawn when
// they overlap the page's operations; untagged ones go on a "notes" row.
//
// # Goroutines
//
// Check owns all of them and returns after they end. runPool starts
// Workers goroutines per round (and per visualization phase) that take
// items from an unbuffered channel and exit when Check closes it. Each
// porcupine call starts one goroutine for its single partition and waits for
// it, except after porcupine's own backstop timer, when that goroutine stops
// at its next step; context.AfterFunc runs a short goroutine to set a stop
// flag. Nothing is shared between searches but the read-only operations.
//
// # Invariants
//
// The model is deterministic and pure (porcupine's visualizer replays it);
// replaying the search's own linearization through it must succeed, and a
// refusal panics with the key and step, since it would mean the model and
// the search disagree.
package histories
