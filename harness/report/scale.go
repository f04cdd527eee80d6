package report

// scale.html: a scale sweep (harness/scale.go) as tables and charts
// against the node count (scale-out) and the CPU quota per node
// (scale-up), one line per series.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// ScalePoint is one run of a sweep: a series (a store, with its shard
// count following the nodes or fixed) at one node count and CPU quota.
type ScalePoint struct {
	Series   string  `json:"series"`
	Store    string  `json:"store"`
	Nodes    int     `json:"nodes"`
	Shards   int     `json:"shards"`              // chains or raft groups; 0: the store has none
	NodeCPUs float64 `json:"node_cpus,omitempty"` // quota per node in cores; 0: none
	Clients  int     `json:"clients"`
	// Link is the run's link inside the scale directory.
	Link    string `json:"link,omitempty"`
	Verdict string `json:"verdict"`
	Error   string `json:"error,omitempty"`

	DurationS  float64 `json:"duration_s"`
	Throughput float64 `json:"ok_ops_s"`
	ReadOps    float64 `json:"read_ops_s"`
	WriteOps   float64 `json:"write_ops_s"`
	P50MS      float64 `json:"p50_ms"`
	P99MS      float64 `json:"p99_ms"`
	ReadP99MS  float64 `json:"read_p99_ms,omitempty"`

	MessagesPerOp     *float64 `json:"messages_per_op,omitempty"`
	CPUPerOpUS        *float64 `json:"node_cpu_us_per_op,omitempty"`
	BusiestCPUPerOpUS *float64 `json:"busiest_node_cpu_us_per_op,omitempty"`
	BusiestNode       string   `json:"busiest_node,omitempty"`

	// PredictedOps is what N separate servers of NodeCPUs cores each (one
	// core without a quota) would serve, bounded by the busiest node:
	// cores / its CPU per operation. Agreement is Throughput over it — the
	// busiest node's share of its cores in use.
	PredictedOps *float64 `json:"predicted_ops_s,omitempty"`
	Agreement    *float64 `json:"measured_over_predicted,omitempty"`
	// LinearOps is perfect scale-out from the series' smallest cluster at
	// the same quota: its measured throughput times nodes / its nodes.
	// LinearRatio is Throughput over it.
	LinearOps   *float64 `json:"linear_ops_s,omitempty"`
	LinearRatio *float64 `json:"measured_over_linear,omitempty"`
}

// ScaleVerdict is the worst verdict of the points: illegal if any is, ok
// only if there are points and every one is ok without an error.
func ScaleVerdict(ps []ScalePoint) string {
	if len(ps) == 0 {
		return verdictUnknown
	}
	v := verdictOK
	for _, p := range ps {
		switch {
		case p.Verdict == verdictIllegal:
			return verdictIllegal
		case p.Verdict != verdictOK || p.Error != "":
			v = verdictUnknown
		}
	}
	return v
}

// DeriveScale fills each point's linear prediction from the smallest
// cluster of its series at its quota.
func DeriveScale(ps []ScalePoint) {
	for i := range ps {
		p := &ps[i]
		p.LinearOps, p.LinearRatio = nil, nil
		var base *ScalePoint
		for j := range ps {
			q := &ps[j]
			if q.Series == p.Series && q.NodeCPUs == p.NodeCPUs && q.Throughput > 0 && (base == nil || q.Nodes < base.Nodes) {
				base = q
			}
		}
		if base == nil || base.Nodes == p.Nodes {
			continue
		}
		lin := base.Throughput * float64(p.Nodes) / float64(base.Nodes)
		ratio := p.Throughput / lin
		p.LinearOps, p.LinearRatio = &lin, &ratio
	}
}

// scaleFileJSON is scale.json as the page reads it.
type scaleFileJSON struct {
	Start          time.Time    `json:"start"`
	Command        []string     `json:"command"`
	Seed           int64        `json:"seed"`
	TimeLimitS     float64      `json:"time_limit_s"`
	Clients        int          `json:"clients"`
	ClientsPerNode int          `json:"clients_per_node"`
	Keys           int          `json:"keys"`
	ReadFraction   float64      `json:"read_fraction"`
	Series         []string     `json:"series"`
	Nodes          []int        `json:"nodes"`
	NodeCPUs       []float64    `json:"node_cpus"`
	Verdict        string       `json:"verdict"`
	Points         []ScalePoint `json:"points"`
}

type scaleRowView struct {
	ScalePoint
	Pill, Href                                    string
	CPUs, Msgs, CPUOp, Busiest, Pred, Agree, Line string
}

type scaleChartView struct {
	Title string
	SVG   template.HTML
}

type scalePage struct {
	CSS                         template.CSS
	Command, Generated, Verdict string
	F                           scaleFileJSON
	Rows                        []scaleRowView
	Charts                      []scaleChartView
	Warnings                    []string
}

// WriteScale renders <dir>/scale.html from <dir>/scale.json, atomically.
func WriteScale(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, "scale.json"))
	if err != nil {
		return err
	}
	var f scaleFileJSON
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(dir, "scale.json"), err)
	}
	page := scalePage{CSS: styleCSS, F: f, Command: shellJoin(f.Command), Generated: time.Now().UTC().Format(time.RFC3339),
		Verdict: verdictClass(ScaleVerdict(f.Points))}
	for _, p := range f.Points {
		v := scaleRowView{ScalePoint: p, CPUs: "none", Msgs: optText(p.MessagesPerOp, 1), CPUOp: optText(p.CPUPerOpUS, 0),
			Busiest: optText(p.BusiestCPUPerOpUS, 0), Pred: optText(p.PredictedOps, 0), Agree: optPct(p.Agreement), Line: optPct(p.LinearRatio)}
		if p.NodeCPUs > 0 {
			v.CPUs = strconv.FormatFloat(p.NodeCPUs, 'f', -1, 64)
		}
		if v.Busiest != "–" && p.BusiestNode != "" {
			v.Busiest += " (n" + p.BusiestNode + ")"
		}
		v.Pill = map[string]string{verdictOK: "pass", verdictIllegal: "fail"}[verdictClass(p.Verdict)]
		if v.Pill == "" {
			v.Pill = "unknown"
		}
		if p.Link != "" && filepath.IsLocal(p.Link) {
			v.Href = relHref(p.Link) + "/report.html"
		}
		page.Rows = append(page.Rows, v)
	}
	charts, err := scaleCharts(f)
	if err != nil {
		page.Warnings = append(page.Warnings, err.Error())
	}
	page.Charts = charts
	var buf bytes.Buffer
	if err := scaleTemplate.Execute(&buf, page); err != nil {
		return fmt.Errorf("scale %s: %w", dir, err)
	}
	return writeAtomic(filepath.Join(dir, "scale.html"), buf.Bytes())
}

func optText(v *float64, prec int) string {
	if v == nil {
		return "–"
	}
	return strconv.FormatFloat(*v, 'f', prec, 64)
}

func optPct(v *float64) string {
	if v == nil {
		return "–"
	}
	return fmt.Sprintf("%.0f%%", 100**v)
}

// scaleMetric is one chart: a value of a point, and its axis label.
type scaleMetric struct {
	label string
	value func(ScalePoint) (float64, bool)
}

var scaleMetrics = []scaleMetric{
	{"ok ops/s", func(p ScalePoint) (float64, bool) { return p.Throughput, p.Throughput > 0 }},
	{"read ops/s", func(p ScalePoint) (float64, bool) { return p.ReadOps, p.ReadOps > 0 }},
	{"write ops/s", func(p ScalePoint) (float64, bool) { return p.WriteOps, p.WriteOps > 0 }},
	{"p99 latency ms", func(p ScalePoint) (float64, bool) { return p.P99MS, p.P99MS > 0 }},
	{"node CPU µs per op, all nodes", func(p ScalePoint) (float64, bool) { return deref(p.CPUPerOpUS) }},
	{"node CPU µs per op, busiest node", func(p ScalePoint) (float64, bool) { return deref(p.BusiestCPUPerOpUS) }},
	{"messages per op", func(p ScalePoint) (float64, bool) { return deref(p.MessagesPerOp) }},
	{"predicted ops/s (busiest node)", func(p ScalePoint) (float64, bool) { return deref(p.PredictedOps) }},
}

func deref(v *float64) (float64, bool) {
	if v == nil {
		return 0, false
	}
	return *v, true
}

// scaleCharts draws every metric against the node count for each quota
// that has several node counts (scale-out), and ok ops/s against the quota
// for each node count that has several quotas (scale-up).
func scaleCharts(f scaleFileJSON) ([]scaleChartView, error) {
	var out []scaleChartView
	cpus := uniqueCPUs(f.Points)
	nodes := uniqueNodes(f.Points)
	if len(nodes) > 1 {
		for _, cpu := range cpus {
			for _, m := range scaleMetrics {
				svg, err := scaleChart(f, m, "nodes", func(p ScalePoint) (float64, bool) { return float64(p.Nodes), p.NodeCPUs == cpu })
				if err != nil {
					return out, err
				}
				if svg != "" {
					out = append(out, scaleChartView{Title: m.label + " against nodes, node CPUs " + cpuLabel(cpu), SVG: svg})
				}
			}
		}
	}
	if len(cpus) > 1 {
		for _, n := range nodes {
			for _, m := range scaleMetrics[:4] {
				svg, err := scaleChart(f, m, "CPU cores per node", func(p ScalePoint) (float64, bool) { return p.NodeCPUs, p.Nodes == n })
				if err != nil {
					return out, err
				}
				if svg != "" {
					out = append(out, scaleChartView{Title: fmt.Sprintf("%s against CPU per node, %d nodes", m.label, n), SVG: svg})
				}
			}
		}
	}
	return out, nil
}

func cpuLabel(cpu float64) string {
	if cpu <= 0 {
		return "unlimited"
	}
	return strconv.FormatFloat(cpu, 'f', -1, 64)
}

func uniqueCPUs(ps []ScalePoint) []float64 {
	var out []float64
	for _, p := range ps {
		if !slices.Contains(out, p.NodeCPUs) {
			out = append(out, p.NodeCPUs)
		}
	}
	sort.Float64s(out)
	return out
}

func uniqueNodes(ps []ScalePoint) []int {
	var out []int
	for _, p := range ps {
		if !slices.Contains(out, p.Nodes) {
			out = append(out, p.Nodes)
		}
	}
	sort.Ints(out)
	return out
}

// scaleChart draws metric m of the points x selects, one line with
// markers per series; "" when no series has a value.
func scaleChart(f scaleFileJSON, m scaleMetric, xlabel string, x func(ScalePoint) (float64, bool)) (template.HTML, error) {
	p := plot.New()
	for _, ts := range []*text.Style{&p.X.Label.TextStyle, &p.Y.Label.TextStyle, &p.X.Tick.Label, &p.Y.Tick.Label} {
		ts.Font = font.From(sans, 10)
	}
	p.X.Label.Text, p.Y.Label.Text = xlabel, m.label
	p.X.Tick.Marker, p.Y.Tick.Marker = plainTicks{}, plainTicks{}
	p.Add(plotter.NewGrid())
	legend := plot.NewLegend()
	legend.Top, legend.Left = true, true
	legend.TextStyle.Font = font.From(sans, 9)
	ch := &chart{p: p, legend: legend, minY: math.Inf(1)}
	drawn := 0
	for i, name := range f.Series {
		var xys plotter.XYs
		for _, pt := range f.Points {
			xv, ok := x(pt)
			if !ok || pt.Series != name {
				continue
			}
			if yv, ok := m.value(pt); ok {
				xys = append(xys, plotter.XY{X: xv, Y: yv})
				ch.maxY = math.Max(ch.maxY, yv)
			}
		}
		if len(xys) == 0 {
			continue
		}
		sort.Slice(xys, func(a, b int) bool { return xys[a].X < xys[b].X })
		l, pts, err := plotter.NewLinePoints(xys)
		if err != nil {
			return "", err
		}
		col := compareColors[i%len(compareColors)]
		l.LineStyle = draw.LineStyle{Color: col, Width: vg.Points(1.6)}
		pts.Color = col
		pts.Shape = draw.CircleGlyph{}
		p.Add(l, pts)
		legend.Add(name, l, pts)
		drawn++
	}
	if drawn == 0 {
		return "", nil
	}
	p.Y.Min = 0
	p.Y.Max = math.Max(ch.maxY, 1e-9) * 1.1
	svg, err := renderStack(ch)
	if err != nil {
		return "", fmt.Errorf("scale chart %s: %w", m.label, err)
	}
	return template.HTML(svg), nil
}

var scaleTemplate = template.Must(template.New("scale").Funcs(template.FuncMap{
	"pct": func(f float64) string { return fmt.Sprintf("%.0f%%", 100*f) },
	"f0":  func(f float64) string { return strconv.FormatFloat(f, 'f', 0, 64) },
	"f1":  func(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) },
}).Parse(scaleHTML))

const scaleHTML = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Verdict}} · scale {{range $i, $s := .F.Series}}{{if $i}}, {{end}}{{$s}}{{end}} · chainraft</title>
<style>{{.CSS}}</style>
</head>
<body>
<main>
<header class="run">
  <h1>scale: {{range $i, $s := .F.Series}}{{if $i}}, {{end}}{{$s}}{{end}}</h1>
  <span class="badge {{.Verdict}}" id="verdict">{{.Verdict}}</span>
  <span class="nav"><a href="../index.html">all runs</a></span>
  <div class="meta">
    seed <b>{{.F.Seed}}</b> · <b>{{printf "%.0f" .F.TimeLimitS}} s</b> per run
    · {{if .F.ClientsPerNode}}{{.F.ClientsPerNode}} clients per node{{else}}{{.F.Clients}} clients{{end}} · {{.F.Keys}} keys · reads {{pct .F.ReadFraction}}
    · nodes {{range $i, $n := .F.Nodes}}{{if $i}}, {{end}}{{$n}}{{end}}
    {{- if not .F.Start.IsZero}} · started <b>{{.F.Start.UTC.Format "2006-01-02 15:04:05 UTC"}}</b>{{end}}
  </div>
  {{- if .Command}}
  <pre class="cmd">$ {{.Command}}</pre>
  {{- end}}
</header>
{{- range .Warnings}}
<div class="error">{{.}}</div>
{{- end}}
<h2>Runs</h2>
<table id="scale">
<thead><tr><th>series</th><th class="n">nodes</th><th class="n">shards</th><th class="n">CPU/node</th><th class="n">clients</th><th>verdict</th><th class="n">ok ops/s</th><th class="n">reads/s</th><th class="n">writes/s</th><th class="n">p50 ms</th><th class="n">p99 ms</th><th class="n">CPU µs/op all</th><th class="n">CPU µs/op busiest</th><th class="n">msgs/op</th><th class="n">predicted ops/s</th><th class="n">measured / predicted</th><th class="n">measured / linear</th></tr></thead>
<tbody>
{{- range .Rows}}
<tr><td>{{if .Href}}<a href="{{.Href}}">{{.Series}}</a>{{else}}{{.Series}}{{end}}</td><td class="n">{{.Nodes}}</td><td class="n">{{if .Shards}}{{.Shards}}{{else}}–{{end}}</td><td class="n">{{.CPUs}}</td><td class="n">{{.Clients}}</td><td><span class="pill {{.Pill}}">{{.Verdict}}</span>{{if .Error}} <span class="never">{{.Error}}</span>{{end}}</td><td class="n">{{f0 .Throughput}}</td><td class="n">{{f0 .ReadOps}}</td><td class="n">{{f0 .WriteOps}}</td><td class="n">{{f1 .P50MS}}</td><td class="n">{{f1 .P99MS}}</td><td class="n">{{.CPUOp}}</td><td class="n">{{.Busiest}}</td><td class="n">{{.Msgs}}</td><td class="n">{{.Pred}}</td><td class="n">{{.Agree}}</td><td class="n">{{.Line}}</td></tr>
{{- end}}
</tbody>
</table>
<p class="mut">A series is a store with as many shards as nodes (chains for chain, raft groups for raft), or, written store/K, with K fixed. <i>Predicted ops/s</i> models N separate servers with the quota's cores each (one core without a quota): the busiest node runs out first, at cores ÷ its CPU per operation. <i>Measured / predicted</i> is therefore how busy the busiest node was: near 100% it was the bottleneck and the model holds; well below, something else held the run back (the clients, the shared machine, the disk, waiting on other nodes). <i>Measured / linear</i> compares with perfect scale-out from the series' smallest cluster at the same quota. CPU and messages are per ok operation, over the workload only.</p>
{{- range .Charts}}
<h2>{{.Title}}</h2>
<figure>{{.SVG}}</figure>
{{- end}}
<p class="mut">Generated {{.Generated}} by chainraft.</p>
</main>
</body>
</html>
`
