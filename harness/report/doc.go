// Package report turns a run directory into report.html and a directory of
// runs into index.html: pages a person reads at a glance after a run, in CI
// artifacts, or through `chainraft serve`.
//
// Why it reads files, not harness values: the report must render any run
// on disk — an old run, a run copied from CI, a run made by a newer
// chainraft — so it decodes summary.json, history.jsonl and nemesis.jsonl
// itself, tolerantly (unknown fields ignored, fields of an unexpected type
// skipped, malformed lines counted and reported on the page), and imports
// no harness package. The harness calls WriteRun and WriteIndex at the end
// of a run; `chainraft report` calls them again at will.
//
// Self-contained pages: CSS and the index's small sort/filter script are
// inline, charts are inline SVG, fonts are the reader's own. Nothing is
// fetched from anywhere; links point only at files of the run directory.
// Tests check this on the markup, and in headless Chromium with a net log.
//
// Charts are drawn by gonum.org/v1/plot into SVG: ok throughput, fail and
// info rates (on their own axis: on the ok scale a few hundred timeouts are
// a flat line at zero), and a latency scatter of every operation coloured
// by outcome, as Jepsen's latency-raw plot — percentiles of ok operations
// fall during an outage, because the slow ones time out and leave them;
// the scatter shows them as info points at the request timeout. The three
// share one time axis, counted from the workload's start (plot.Align keeps
// the plots' axes identical), and a small plotter draws each fault as a
// band from inject to heal, with its label in a lane of its own when
// faults overlap. Skipped or failed injects are listed in the fault table,
// never drawn: nothing happened then. The scatter is rasterised to about a
// pixel per mark, so a million operations draw as a few thousand.
//
// Speed and availability are shown apart (the harness's availability.go
// measures them): healthy ok ops/s and unavailable seconds lead the run
// page, the index and compare.html; per fault, each figure runs until the
// next fault, and what did not happen is said in words ("not before the
// heal", "no dip"), never as a number. compare.html marks a value better
// only beyond NoiseFraction, shows each later run over the first, and
// the table mapping each store's roles onto the other's.
//
// Porcupine pages (porcupine.go) are rewritten in place by WriteRun:
// titled by verdict, key, store and run, with a link back, zoom and a jump
// to each fault.
//
// Verdicts: the badge is green only for "ok" and red only for "illegal";
// anything else — "unknown", empty, a word this version does not know — is
// amber "unknown". A report never shows a run as ok that the checker did
// not call ok.
//
// Cost: the history is streamed once (bufio, one small struct per line),
// ok operations counted per one-second bucket and per op kind, and every ok
// latency kept as a float32 in its bucket so per-second percentiles are
// exact: 4 bytes per operation, a million operations in a few MB and about
// a second. The timeline is bounded to maxBuckets (a day) so a corrupt
// timestamp cannot make it grow without limit.
//
// Writes are atomic (temporary file, rename), so a server or browser never
// reads half a page. There are no goroutines in this package.
package report
