package report

// Porcupine pages, made readable. Porcupine writes one page per key, titled
// "Porcupine", with no way back to the run, laid out one slot per event so
// that a key of a few thousand operations is 170,000–244,000 px wide, and
// with its legend clipped under the fold. WriteRun rewrites each page of
// porcupine/ in place (idempotently: what it added is between two marks
// and replaced on the next report):
//
//   - the tab is titled by verdict, key, store and run;
//   - a bar at the top links back to report.html, zooms the timeline
//     (fit, 10%, 25%, 50%, 100%; it opens at a width of at most eight
//     screens), and jumps to each fault: the page draws the nemesis's
//     annotations as boxes whose text is the fault, so the jump finds the
//     n-th box with that text and scrolls it to the middle;
//   - the legend moves below the bar and is no longer clipped;
//   - a fragment opens it at a zoom and a fault: k003.html#zoom=1&fault=0.
//
// Everything added is inline: the pages stay self-contained.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

const (
	porcupineBegin = "<!-- chainraft:begin -->"
	porcupineEnd   = "<!-- chainraft:end -->"
)

var (
	porcupineTitle = regexp.MustCompile(`<title>[^<]*</title>`)
	porcupineAdded = regexp.MustCompile(`(?s)` + regexp.QuoteMeta(porcupineBegin) + `.*?` + regexp.QuoteMeta(porcupineEnd) + `\n?`)
)

type porcupineJump struct {
	Label string `json:"label"`
	Kind  string `json:"kind"`
	Nth   int    `json:"nth"` // among the faults with the same label
	At    string `json:"-"`
}

type porcupineBar struct {
	Back, Key, Verdict, Store, Run string
	Jumps                          []porcupineJump
	JumpsJSON                      template.JS
}

var porcupineBarTemplate = template.Must(template.New("bar").Parse(`<style>
#chainraft-bar { position: fixed; top: 0; left: 0; right: 0; z-index: 10; background: #fff; border-bottom: 1px solid #d1d9e0;
  font: 13px/1.4 system-ui, sans-serif; padding: 6px 10px; display: flex; flex-wrap: wrap; gap: 4px 12px; align-items: center; }
#chainraft-bar a, #chainraft-bar button { color: #0969da; background: none; border: 1px solid #d1d9e0; border-radius: 4px; padding: 1px 7px; font: inherit; cursor: pointer; text-decoration: none; }
#chainraft-bar b { font-weight: 600; }
#chainraft-bar .v-ok { color: #1a7f37; } #chainraft-bar .v-illegal { color: #cf222e; } #chainraft-bar .v-unknown { color: #bf8700; }
#legend { top: 44px !important; } #legend svg { overflow: visible; width: 760px; }
body { padding-top: 84px; } #canvas { margin-top: 0 !important; } /* zoom scales its own margin */
</style>
<div id="chainraft-bar">
  <a href="{{.Back}}">← report</a>
  <span><b>{{.Key}}</b> · {{if .Verdict}}<span class="v-{{.Verdict}}">{{.Verdict}}</span> · {{end}}{{.Store}} · {{.Run}}</span>
  <span>zoom <button data-z="fit">fit</button><button data-z="0.1">10%</button><button data-z="0.25">25%</button><button data-z="0.5">50%</button><button data-z="1">100%</button> <span id="chainraft-zoom"></span></span>
  {{- if .Jumps}}
  <span>faults:{{range $i, $j := .Jumps}} <button data-jump="{{$i}}" title="scroll to this fault on the timeline">{{$j.At}} {{$j.Label}}</button>{{end}}</span>
  {{- end}}
</div>
<script>
(function () {
  var jumps = {{.JumpsJSON}};
  function canvas() { return document.getElementById("canvas"); }
  function setZoom(z) {
    var c = canvas(); if (!c) return;
    if (z === "fit") { c.style.zoom = 1; z = Math.min(1, window.innerWidth / Math.max(c.scrollWidth, 1)); }
    c.style.zoom = z;
    document.getElementById("chainraft-zoom").textContent = Math.round(z * 1000) / 10 + "%";
  }
  document.getElementById("chainraft-bar").addEventListener("click", function (e) {
    var b = e.target.closest("button"); if (!b) return;
    if (b.hasAttribute("data-z")) { var v = b.getAttribute("data-z"); setZoom(v === "fit" ? v : +v); }
    if (b.hasAttribute("data-jump")) {
      var j = jumps[+b.getAttribute("data-jump")], n = 0, found = null;
      var texts = canvas().querySelectorAll("text");
      for (var i = 0; i < texts.length && !found; i++) {
        var t = texts[i].textContent;
        if (t.indexOf(j.label) === 0 || (t.indexOf(j.kind) === 0 && t.length < j.label.length)) { if (n++ === j.nth) found = texts[i]; }
      }
      if (found) { var r = found.getBoundingClientRect(); window.scrollBy(r.left + r.width / 2 - window.innerWidth / 2, 0); b.setAttribute("data-at", window.scrollX); }
    }
  });
  window.addEventListener("load", function () {
    // Bounded width: open at no more than eight screens wide, unless the
    // fragment says otherwise (#zoom=1&fault=0: a link to one fault).
    var c = canvas(); if (!c) return;
    var h = new URLSearchParams(location.hash.slice(1));
    setZoom(h.has("zoom") ? +h.get("zoom") : Math.min(1, 8 * window.innerWidth / Math.max(c.scrollWidth, 1)));
    var f = h.has("fault") && document.querySelector('#chainraft-bar button[data-jump="' + (+h.get("fault")) + '"]');
    if (f) f.click();
  });
})();
</script>
`))

// decoratePorcupine rewrites every page in <dir>/porcupine. A page that
// does not look like Porcupine's (no <body>) is left alone.
func decoratePorcupine(dir string, s *Summary, bands []Band) error {
	entries, err := os.ReadDir(filepath.Join(dir, "porcupine"))
	if err != nil {
		return nil // no pages
	}
	verdicts := map[string]string{}
	keyOf := map[string]string{}
	for _, kr := range s.KeyResults {
		if kr.Visualization != "" {
			base := filepath.Base(kr.Visualization)
			verdicts[base], keyOf[base] = verdictClass(kr.Verdict), kr.Key
		}
	}
	var jumps []porcupineJump
	seen := map[string]int{}
	for _, b := range applied(bands) {
		if b.Start == b.End && !b.Open {
			continue
		}
		l := b.Label()
		jumps = append(jumps, porcupineJump{Label: l, Kind: b.Kind, Nth: seen[l], At: fmt.Sprintf("%.1fs", b.Start)})
		seen[l]++
	}
	js, err := json.Marshal(jumps)
	if err != nil {
		return err
	}
	run := s.Name
	var errs []string
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".html") {
			continue
		}
		path := filepath.Join(dir, "porcupine", name)
		b, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		if !bytes.Contains(b, []byte("<body>")) {
			continue
		}
		key := keyOf[name]
		if key == "" {
			key = strings.TrimSuffix(name, ".html")
		}
		verdict := verdicts[name]
		if verdict == "" && verdictClass(s.Verdict) == verdictOK {
			verdict = verdictOK // every key of a passing run is linearizable
		}
		bar := porcupineBar{Back: "../report.html", Key: key, Verdict: verdict, Store: s.Store, Run: run, Jumps: jumps, JumpsJSON: template.JS(js)}
		var buf bytes.Buffer
		if err := porcupineBarTemplate.Execute(&buf, bar); err != nil {
			return err
		}
		b = porcupineAdded.ReplaceAll(b, nil)
		title := strings.TrimPrefix(strings.Join([]string{verdict, key, s.Store, run}, " · "), " · ")
		b = porcupineTitle.ReplaceAllLiteral(b, []byte("<title>"+template.HTMLEscapeString(title)+" · chainraft</title>"))
		added := porcupineBegin + "\n" + buf.String() + porcupineEnd + "\n"
		b = bytes.Replace(b, []byte("<body>"), []byte("<body>\n"+added), 1)
		if err := writeAtomic(path, b); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("porcupine pages: %s", strings.Join(errs, "; "))
	}
	return nil
}
