package report

import (
	"bytes"
	"fmt"
	"image/color"
	"math"
	"regexp"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/chainraft/chainraft/histories"
)

// Chart geometry. The SVG is scaled to the page width by CSS; these fix
// the aspect ratio and the size of text relative to the plot.
const (
	chartW    = 10 * vg.Inch
	chartH    = 3.2 * vg.Inch
	legendW   = 1.4 * vg.Inch
	labelSize = 8 // points, fault labels
)

var (
	kindColors = map[histories.Kind]color.Color{
		histories.Get:    color.RGBA{31, 119, 180, 255},
		histories.Put:    color.RGBA{44, 160, 44, 255},
		histories.Append: color.RGBA{23, 190, 207, 255},
		histories.CAS:    color.RGBA{140, 86, 75, 255},
	}
	otherColor = color.RGBA{90, 90, 90, 255}
	errorColor = color.RGBA{214, 39, 40, 255}
	readColor  = color.RGBA{31, 119, 180, 255}
	writeColor = color.RGBA{44, 160, 44, 255}
)

// faultColor is the band colour of a fault kind: pale, so lines stay
// readable over it; the same kind has the same colour on every chart and in
// the fault table.
func faultColor(kind string) color.RGBA {
	switch {
	case contains(kind, "kill", "crash"):
		return color.RGBA{214, 39, 40, 255}
	case contains(kind, "pause", "stop"):
		return color.RGBA{255, 127, 14, 255}
	case contains(kind, "partition", "blackhole", "isolate", "link"):
		return color.RGBA{148, 103, 189, 255}
	case contains(kind, "zk"): // ZooKeeper faults
		return color.RGBA{140, 86, 75, 255}
	case contains(kind, "restart", "heal"):
		return color.RGBA{44, 160, 44, 255}
	}
	return color.RGBA{127, 127, 127, 255}
}

func fade(c color.RGBA, alpha uint8) color.RGBA {
	// Premultiplied, as image/color expects.
	return color.RGBA{
		R: uint8(uint16(c.R) * uint16(alpha) / 255),
		G: uint8(uint16(c.G) * uint16(alpha) / 255),
		B: uint8(uint16(c.B) * uint16(alpha) / 255),
		A: alpha,
	}
}

func cssColor(c color.RGBA) string { return fmt.Sprintf("#%02x%02x%02x", c.R, c.G, c.B) }

// bandPlotter draws fault bands behind the data: a pale rectangle over the
// whole height of the plot from inject to heal, a line for an instant, and
// the fault's label at the top in its lane. It is a plot.Plotter so the
// bands share the data's time transform exactly.
type bandPlotter struct {
	bands []Band
}

// sans is the charts' typeface: gonum/plot defaults to a serif, which
// clashes with the page's sans-serif text.
var sans = font.Font{Typeface: "Liberation", Variant: "Sans"}

func labelStyle() (s text.Style) {
	s = plot.New().Legend.TextStyle
	s.Font = font.From(sans, labelSize)
	return s
}

func (bp bandPlotter) Plot(c draw.Canvas, p *plot.Plot) {
	trX, _ := p.Transforms(&c)
	ts := labelStyle()
	lineH := ts.Font.Size * 1.25
	for _, b := range bp.bands {
		x0, x1 := trX(b.Start), trX(b.End)
		col := faultColor(b.Kind)
		if x1-x0 < 1 {
			c.StrokeLine2(draw.LineStyle{Color: fade(col, 200), Width: vg.Points(1.2), Dashes: []vg.Length{vg.Points(3), vg.Points(2)}},
				x0, c.Min.Y, x0, c.Max.Y)
		} else {
			c.FillPolygon(fade(col, 48), c.ClipPolygonXY([]vg.Point{
				{X: x0, Y: c.Min.Y}, {X: x1, Y: c.Min.Y}, {X: x1, Y: c.Max.Y}, {X: x0, Y: c.Max.Y},
			}))
		}
		label := b.Label()
		if b.Open {
			label += " (not healed)"
		}
		ts.Color = color.RGBA{R: col.R / 2, G: col.G / 2, B: col.B / 2, A: 255}
		y := c.Max.Y - lineH*vg.Length(b.lane+1)
		// A fault near the end keeps its label inside the plot.
		x := min(x0+vg.Points(2), c.Max.X-ts.Width(label)-vg.Points(2))
		c.FillText(ts, vg.Point{X: max(x, c.Min.X), Y: y}, label)
	}
}

// plainTicks are gonum's default tick positions with labels a person
// writes: "2500", "0.5", not "2500.00".
type plainTicks struct{}

func (plainTicks) Ticks(min, max float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(min, max)
	for i := range ticks {
		if ticks[i].Label != "" {
			ticks[i].Label = strconv.FormatFloat(ticks[i].Value, 'f', -1, 64)
		}
	}
	return ticks
}

// logTicks marks a log axis at 1, 2 and 5 times each power of ten when it
// spans few decades (plot.LogTicks labels powers of ten only, which leaves
// a one-decade latency axis with a single label), and at powers of ten with
// the rest as minor ticks when it spans many.
type logTicks struct{}

func (logTicks) Ticks(min, max float64) []plot.Tick {
	if min <= 0 || max <= min {
		return nil
	}
	lo, hi := math.Floor(math.Log10(min)), math.Ceil(math.Log10(max))
	labelled := map[int]bool{1: true, 2: true, 5: true}
	if hi-lo > 3 {
		labelled = map[int]bool{1: true}
	}
	var ticks []plot.Tick
	for d := lo; d <= hi; d++ {
		for m := 1; m <= 9; m++ {
			v := float64(m) * math.Pow(10, d)
			if v < min || v > max {
				continue
			}
			t := plot.Tick{Value: v}
			switch {
			case !labelled[m]:
			case v >= 1:
				t.Label = strconv.FormatFloat(v, 'f', 0, 64)
			default:
				t.Label = strconv.FormatFloat(v, 'g', 3, 64)
			}
			ticks = append(ticks, t)
		}
	}
	return ticks
}

// chart is one time plot with its legend entries drawn beside it.
type chart struct {
	p      *plot.Plot
	legend plot.Legend
	maxY   float64
	minY   float64 // smallest positive value, for log scales
	lanes  int
}

func newChart(ylabel string, endS float64, bands []Band) *chart {
	p := plot.New()
	for _, ts := range []*text.Style{&p.X.Label.TextStyle, &p.Y.Label.TextStyle, &p.X.Tick.Label, &p.Y.Tick.Label} {
		ts.Font = font.From(sans, 10)
	}
	p.X.Label.Text = "seconds since the workload started"
	p.Y.Label.Text = ylabel
	p.X.Min, p.X.Max = 0, math.Max(endS, 1)
	p.X.Tick.Marker = plainTicks{}
	p.Add(plotter.NewGrid())
	ch := &chart{p: p, legend: plot.NewLegend(), minY: math.Inf(1)}
	ch.legend.Top, ch.legend.Left = true, true
	ch.legend.TextStyle.Font = font.From(sans, 9)
	if len(bands) > 0 {
		// Label widths in seconds, at the scale the chart will draw.
		ts := labelStyle()
		sPerPt := (p.X.Max - p.X.Min) / float64(chartW-legendW-0.8*vg.Inch)
		ch.lanes = assignLanes(bands, func(b Band) (float64, float64) {
			w := float64(ts.Width(b.Label()+" (not healed)")) * sPerPt
			from := min(b.Start, p.X.Max-w) // as bandPlotter keeps labels inside
			return from, from + w
		})
		p.Add(bandPlotter{bands: bands})
	}
	return ch
}

// series adds ys (one value per one-second bucket, NaN for none) as a step
// line, broken where values are missing, so a gap reads as a gap.
func (ch *chart) series(name string, ys []float64, col color.Color, dashed bool, width float64) error {
	ls := draw.LineStyle{Color: col, Width: vg.Points(width)}
	if dashed {
		ls.Dashes = []vg.Length{vg.Points(4), vg.Points(2)}
	}
	var seg plotter.XYs
	legendDone := false
	flush := func() error {
		if len(seg) == 0 {
			return nil
		}
		l, err := plotter.NewLine(seg)
		if err != nil {
			return err
		}
		l.LineStyle = ls
		l.StepStyle = plotter.PostStep
		ch.p.Add(l)
		if !legendDone {
			ch.legend.Add(name, l)
			legendDone = true
		}
		seg = nil
		return nil
	}
	for b, y := range ys {
		if math.IsNaN(y) {
			if err := flush(); err != nil {
				return err
			}
			continue
		}
		ch.maxY = math.Max(ch.maxY, y)
		if y > 0 {
			ch.minY = math.Min(ch.minY, y)
		}
		// Each bucket is a horizontal step from its start to its end.
		seg = append(seg, plotter.XY{X: float64(b), Y: y})
		if b == len(ys)-1 || math.IsNaN(ys[b+1]) {
			seg = append(seg, plotter.XY{X: math.Min(float64(b+1), ch.p.X.Max), Y: y})
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if !legendDone { // keep the legend honest: the series exists but is empty
		l, _ := plotter.NewLine(plotter.XYs{{X: 0, Y: 0}})
		l.LineStyle = ls
		ch.legend.Add(name+" (none)", l)
	}
	return nil
}

var svgPrologue = regexp.MustCompile(`(?s)^.*?<svg width="[^"]*" height="[^"]*"`)

// renderStack draws the charts one above the other in one SVG, aligned by
// plot.Align so their time axes line up exactly whatever the width of
// their tick labels, each with its legend on the right. It returns inline
// SVG markup: no XML prologue and no fixed size, so it scales with the page.
func renderStack(charts ...*chart) ([]byte, error) {
	c := vgsvg.New(chartW, chartH*vg.Length(len(charts)))
	dc := draw.New(c)
	plotArea := dc
	plotArea.Max.X -= legendW
	grid := make([][]*plot.Plot, len(charts))
	for i, ch := range charts {
		grid[i] = []*plot.Plot{ch.p}
	}
	tiles := draw.Tiles{Rows: len(charts), Cols: 1, PadY: vg.Points(16), PadTop: vg.Points(4), PadBottom: vg.Points(4), PadLeft: vg.Points(4)}
	canvases := plot.Align(grid, tiles, plotArea)
	for i, ch := range charts {
		ch.p.Draw(canvases[i][0])
		legendArea := canvases[i][0]
		legendArea.Min.X = dc.Max.X - legendW + vg.Points(8)
		legendArea.Max.X = dc.Max.X
		legendArea.Max.Y -= vg.Points(6)
		ch.legend.Draw(legendArea)
	}
	var buf bytes.Buffer
	if _, err := c.WriteTo(&buf); err != nil {
		return nil, err
	}
	out := svgPrologue.ReplaceAll(buf.Bytes(), []byte(`<svg class="chart" role="img"`))
	if bytes.Equal(out, buf.Bytes()) {
		return nil, fmt.Errorf("report: unexpected SVG header from vgsvg")
	}
	return out, nil
}

// timeCharts draws, on one time axis with the fault bands across all:
// ok throughput per op kind; failed and unknown operations per second on
// an axis of their own (on the ok scale a few hundred timeouts are a flat
// line at zero); and every operation's latency as a point coloured by
// outcome, as Jepsen's latency-raw plot does, so that timeouts show as a
// band of info points at the request timeout instead of vanishing from
// percentiles of ok operations. timeoutMS places the info points (they
// never returned); 0 puts them at the top of the chart.
func timeCharts(tl *Timeline, bands []Band, endS, timeoutMS float64) ([]byte, error) {
	tc, err := throughputChart(tl, bands, endS)
	if err != nil {
		return nil, fmt.Errorf("throughput chart: %w", err)
	}
	ec, err := errorChart(tl, bands, endS)
	if err != nil {
		return nil, fmt.Errorf("fail/info chart: %w", err)
	}
	sc := scatterChart(tl, bands, endS, timeoutMS)
	return renderStack(tc, ec, sc)
}

// throughputChart plots ok operations per second per op kind over the
// fault bands.
func throughputChart(tl *Timeline, bands []Band, endS float64) (*chart, error) {
	ch := newChart("ok ops/s", endS, bands)
	for _, k := range tl.Kinds() {
		col, ok := kindColors[k]
		if !ok {
			col = otherColor
		}
		if err := ch.series(string(k), rateOf(tl, tl.OK[k], endS), col, false, 1.4); err != nil {
			return nil, err
		}
	}
	ch.p.Y.Tick.Marker = plainTicks{}
	ch.p.Y.Min = 0
	ch.p.Y.Max = math.Max(ch.maxY, 1) * (1.08 + 0.1*float64(ch.lanes))
	return ch, nil
}

// rateOf turns per-second counts into a rate per bucket. The last bucket
// may be partial: it is scaled to a rate, or dropped when too short to
// say anything (stragglers that returned just after the end).
func rateOf(tl *Timeline, counts []int64, endS float64) []float64 {
	ys := make([]float64, tl.Buckets)
	for b := range ys {
		width := math.Min(1, endS-float64(b))
		switch {
		case width < 0.25:
			ys[b] = math.NaN()
		case b < len(counts):
			ys[b] = float64(counts[b]) / width
		}
	}
	return ys
}

var (
	failColor = color.RGBA{255, 127, 14, 255}
	infoColor = color.RGBA{214, 39, 40, 255}
	okColor   = color.RGBA{31, 119, 180, 255}
)

// errorChart plots failed (certainly no effect) and unknown (info:
// timeouts, lost connections) operations per second on their own axis.
func errorChart(tl *Timeline, bands []Band, endS float64) (*chart, error) {
	ch := newChart("fail / info ops/s", endS, bands)
	if err := ch.series("fail", rateOf(tl, tl.Fails, endS), failColor, false, 1.3); err != nil {
		return nil, err
	}
	if err := ch.series("info", rateOf(tl, tl.Infos, endS), infoColor, false, 1.3); err != nil {
		return nil, err
	}
	ch.p.Y.Tick.Marker = plainTicks{}
	ch.p.Y.Min = 0
	ch.p.Y.Max = math.Max(ch.maxY, 1) * (1.08 + 0.1*float64(ch.lanes))
	return ch, nil
}

// scatterPoints are the scatter's points, rasterised: one per cell of
// about a pixel (800 columns over the run, 40 rows per decade) and
// outcome, so a million operations draw as the same picture in a few
// thousand marks.
type scatterPlotter struct {
	pts []scatterPoint
}

type scatterPoint struct {
	x, y float64
	col  color.Color
}

func (sp scatterPlotter) Plot(c draw.Canvas, p *plot.Plot) {
	trX, trY := p.Transforms(&c)
	r := vg.Points(1.1)
	for _, pt := range sp.pts {
		x, y := trX(pt.x), trY(pt.y)
		c.FillPolygon(pt.col, []vg.Point{{X: x - r, Y: y - r}, {X: x + r, Y: y - r}, {X: x + r, Y: y + r}, {X: x - r, Y: y + r}})
	}
}

// swatch is a legend entry drawn as a square of its colour.
type swatch struct{ col color.Color }

func (s swatch) Thumbnail(c *draw.Canvas) {
	mid := (c.Min.Y + c.Max.Y) / 2
	r := vg.Points(2.5)
	x := c.Min.X + vg.Points(8)
	c.FillPolygon(s.col, []vg.Point{{X: x - r, Y: mid - r}, {X: x + r, Y: mid - r}, {X: x + r, Y: mid + r}, {X: x - r, Y: mid + r}})
}

// scatterChart draws every operation at its call time and latency, ok
// blue, fail orange, info red (at the request timeout: it never returned),
// on a log scale.
func scatterChart(tl *Timeline, bands []Band, endS, timeoutMS float64) *chart {
	ch := newChart("latency ms (log), every op", endS, bands)
	maxLat, minLat := 0.0, math.Inf(1)
	for _, pt := range tl.Points {
		if v := float64(pt.LatMS); !math.IsNaN(v) {
			maxLat = math.Max(maxLat, v)
			if v > 0 {
				minLat = math.Min(minLat, v)
			}
		}
	}
	infoAt := timeoutMS
	if infoAt <= 0 {
		infoAt = math.Max(maxLat, 1)
	}
	maxLat = math.Max(maxLat, infoAt)
	if math.IsInf(minLat, 1) {
		minLat = 0.1
	}
	minLat = math.Max(minLat, 0.001)
	colW := math.Max(endS, 1) / 800
	type cell struct {
		x, y int
		o    histories.Outcome
	}
	seen := map[cell]bool{}
	layers := map[histories.Outcome][]scatterPoint{}
	for _, pt := range tl.Points {
		y := float64(pt.LatMS)
		if math.IsNaN(y) {
			y = infoAt
		}
		y = math.Max(y, minLat)
		k := cell{x: int(float64(pt.CallS) / colW), y: int(math.Floor(math.Log10(y) * 40)), o: pt.Outcome}
		if seen[k] {
			continue
		}
		seen[k] = true
		col := okColor
		switch pt.Outcome {
		case histories.Fail:
			col = failColor
		case histories.Info:
			col = infoColor
		}
		o := pt.Outcome
		if o != histories.Fail && o != histories.Info {
			o = histories.OK
		}
		layers[o] = append(layers[o], scatterPoint{x: (float64(k.x) + 0.5) * colW, y: y, col: fade(col, 200)})
	}
	var pts []scatterPoint
	for _, o := range []histories.Outcome{histories.OK, histories.Fail, histories.Info} {
		pts = append(pts, layers[o]...)
	}
	ch.p.Add(scatterPlotter{pts: pts})
	ch.legend.Add(fmt.Sprintf("ok (%d)", countOutcome(tl, histories.OK)), swatch{okColor})
	ch.legend.Add(fmt.Sprintf("fail (%d)", countOutcome(tl, histories.Fail)), swatch{failColor})
	ch.legend.Add(fmt.Sprintf("info (%d)", countOutcome(tl, histories.Info)), swatch{infoColor})
	ch.p.Y.Scale = plot.LogScale{}
	ch.p.Y.Tick.Marker = logTicks{}
	ch.p.Y.Min = math.Pow(10, math.Floor(math.Log10(minLat)))
	decades := math.Log10(maxLat/ch.p.Y.Min) * (0.08 + 0.1*float64(ch.lanes))
	ch.p.Y.Max = maxLat * math.Pow(10, math.Max(decades, 0.15))
	return ch
}

func countOutcome(tl *Timeline, o histories.Outcome) int {
	n := 0
	for _, pt := range tl.Points {
		if pt.Outcome == o || (o == histories.Info && pt.Outcome != histories.OK && pt.Outcome != histories.Fail) {
			n++
		}
	}
	return n
}

func contains(s string, subs ...string) bool {
	s = strings.ToLower(s)
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
