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
// Charts are drawn by gonum.org/v1/plot into SVG: throughput and latency
// share one time axis (plot.Align keeps the two plots' axes identical), and
// a small plotter draws each fault as a band from inject to heal, with its
// label in a lane of its own when faults overlap. Skipped or failed injects
// are listed in the fault table, never drawn: nothing happened then.
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
