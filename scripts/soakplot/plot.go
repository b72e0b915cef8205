package main

import (
	"bytes"
	"fmt"
	"html"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
)

type point struct{ x, y float64 }

type series struct {
	label string
	color string
	dash  string
	pts   []point // NaN y: no value (the line breaks)
}

type panel struct {
	title  string
	log    bool // log-scale y axis (values <= 0 are left out)
	series []series
	note   string // shown in the panel when it has nothing to draw
}

var (
	palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"}
	dashes  = []string{"", "7,4", "2,3", "9,3,2,3"}
)

// metric is one CSV column drawn in a panel.
type metric struct {
	col   string
	label string
	scale float64 // values are divided by it
}

const mib = 1 << 20

func plotFile(in, out, title string) error {
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	t, err := readTable(f)
	if err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	var b bytes.Buffer
	if err := render(&b, t, title); err != nil {
		return err
	}
	return os.WriteFile(out, b.Bytes(), 0o644)
}

// render draws t as one SVG of small-multiple panels.
func render(w io.Writer, t *table, title string) error {
	nodes := t.nodes()
	var panels []panel
	add := func(title string, log bool, ms []metric, perNode bool) {
		panels = append(panels, buildPanel(t, nodes, title, log, ms, perNode))
	}
	add("Memory (MiB)", false, []metric{{"rss_bytes", "RSS", mib}, {"heap_inuse_bytes", "Go heap in use", mib}, {"heap_live_bytes", "Go heap live after GC", mib}}, true)
	add("Disk (MiB)", false, []metric{{"data_dir_bytes", "data dir", mib}, {"snapshot_bytes", "newest snapshots", mib}}, true)
	kinds := t.stateKinds()
	for i, k := range kinds {
		p := buildPanel(t, nodes, "State entries: "+k, false, []metric{{statePrefix + k, k, 1}}, true)
		if len(nodes) == 1 && len(p.series) == 1 {
			p.series[0].color = palette[i%len(palette)]
		}
		panels = append(panels, p)
	}
	if len(kinds) == 0 {
		panels = append(panels, panel{title: "State entries", note: "no edgenode_state_entries series in /metrics"})
	}
	add("Queued messages", false, []metric{{"queued", "queued", 1}}, true)
	add("Accepted sends/s (201)", false, []metric{{"sends_per_s", "accepted/s", 1}, {"attempted_per_s", "attempted/s", 1}}, false)
	add("Errors per interval", false, []metric{{"errors", "errors", 1}}, false)
	add("Send→deliver latency (ms, log scale)", true, []metric{{"max_ms", "max", 1}, {"p99_ms", "p99", 1}, {"p50_ms", "p50", 1}}, false)

	xmax := 0.0
	for i := range t.rows {
		if v, ok := t.num(i, "minute"); ok {
			xmax = max(xmax, v)
		}
	}
	note := "x: minutes since the measurement window began (each point ends an interval)."
	if len(nodes) > 1 {
		note += " One line per node; load-generator columns (sends/s, errors, latency) cover the whole cluster."
	}
	return writeSVG(w, title, note, panels, xmax)
}

// buildPanel makes one series per metric (and per node when there are
// several). perNode false draws a column once when it holds the same value
// on every node's row (the load generator's columns).
func buildPanel(t *table, nodes []string, title string, log bool, ms []metric, perNode bool) panel {
	p := panel{title: title, log: log}
	var present []metric
	for _, m := range ms {
		if t.has(m.col) {
			present = append(present, m)
		}
	}
	if len(present) == 0 {
		p.note = "not in this CSV"
		return p
	}
	once := !perNode && sameOnEveryNode(t, present)
	groups := nodes
	if once || len(nodes) <= 1 {
		groups = []string{""}
	}
	for gi, node := range groups {
		for mi, m := range present {
			s := series{label: m.label}
			if len(groups) > 1 {
				s.label = node + " " + m.label
				s.color, s.dash = palette[gi%len(palette)], dashes[mi%len(dashes)]
			} else {
				s.color, s.dash = palette[mi%len(palette)], ""
				if len(present) > 1 && mi > 0 && once {
					s.dash = dashes[mi%len(dashes)]
				}
			}
			seen := map[float64]bool{}
			for i := range t.rows {
				if node != "" && t.str(i, "node") != node {
					continue
				}
				x, ok := t.num(i, "minute")
				if !ok || seen[x] {
					continue
				}
				seen[x] = true
				y, ok := t.num(i, m.col)
				if !ok || (log && y <= 0) {
					y = math.NaN()
				} else {
					y /= m.scale
				}
				s.pts = append(s.pts, point{x, y})
			}
			p.series = append(p.series, s)
		}
	}
	if !hasValues(p) {
		p.note = "no values"
	}
	return p
}

// sameOnEveryNode: every metric has one value per minute across nodes.
func sameOnEveryNode(t *table, ms []metric) bool {
	for _, m := range ms {
		byMinute := map[string]string{}
		for i := range t.rows {
			x, v := t.str(i, "minute"), t.str(i, m.col)
			if prev, ok := byMinute[x]; ok && prev != v {
				return false
			}
			byMinute[x] = v
		}
	}
	return true
}

func hasValues(p panel) bool {
	for _, s := range p.series {
		for _, q := range s.pts {
			if !math.IsNaN(q.y) {
				return true
			}
		}
	}
	return false
}

// Layout, in SVG user units (px).
const (
	cols      = 2
	cellW     = 560
	plotLeft  = 66
	plotRight = 18
	plotTop   = 30
	plotH     = 170
	xAxisH    = 38 // tick labels and the axis label under the plot
	legendRow = 16
	headerH   = 62
	charW     = 6.4 // approximate width of a character at 11px
)

func writeSVG(w io.Writer, title, note string, panels []panel, xmax float64) error {
	if xmax <= 0 {
		xmax = 1
	}
	plotW := float64(cellW - plotLeft - plotRight)
	legendRows := 1
	for _, p := range panels {
		legendRows = max(legendRows, len(legendLayout(p, plotW)))
	}
	cellH := plotTop + plotH + xAxisH + legendRows*legendRow + 14
	rows := (len(panels) + cols - 1) / cols
	width, height := cols*cellW+20, headerH+rows*cellH+10
	var b strings.Builder
	pf := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	pf(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="Helvetica, Arial, sans-serif" font-size="11">`+"\n", width, height, width, height)
	pf("<title>%s</title>\n", esc(title))
	pf(`<rect width="100%%" height="100%%" fill="white"/>` + "\n")
	// Long lines get a smaller font rather than being cut at the edge.
	fit := func(text string, size, charEm float64) float64 {
		if w := float64(len([]rune(text))) * size * charEm; w > float64(width-40) {
			return math.Floor(size*float64(width-40)/w*10) / 10
		}
		return size
	}
	pf(`<text x="20" y="26" font-size="%g" font-weight="bold">%s</text>`+"\n", fit(title, 17, 0.6), esc(title))
	pf(`<text x="20" y="46" font-size="%g" fill="#444">%s</text>`+"\n", fit(note, 11.5, 0.55), esc(note))
	xt := niceTicks(0, xmax, 6)
	for i, p := range panels {
		ox := 10 + float64(i%cols)*cellW
		oy := float64(headerH + (i/cols)*cellH)
		pf(`<g class="panel" transform="translate(%g,%g)">`+"\n", ox, oy)
		pf(`<text class="panel-title" x="%d" y="18" font-size="13" font-weight="bold">%s</text>`+"\n", plotLeft, esc(p.title))
		drawPanel(&b, p, plotW, xt)
		pf("</g>\n")
	}
	pf("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func drawPanel(b *strings.Builder, p panel, plotW float64, xt []float64) {
	pf := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	x0, y0 := float64(plotLeft), float64(plotTop)
	xmax := xt[len(xt)-1]
	sx := func(x float64) float64 { return x0 + x/xmax*plotW }
	// y range
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range p.series {
		for _, q := range s.pts {
			if !math.IsNaN(q.y) {
				lo, hi = min(lo, q.y), max(hi, q.y)
			}
		}
	}
	var yt []float64
	var sy func(float64) float64
	if math.IsInf(lo, 1) { // nothing to draw
		lo, hi = 1, 10
	}
	if p.log {
		a, c := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
		if c <= a {
			c = a + 1
		}
		for e := a; e <= c; e++ {
			yt = append(yt, math.Pow(10, e))
		}
		sy = func(y float64) float64 { return y0 + plotH - (math.Log10(y)-a)/(c-a)*plotH }
	} else {
		yt = niceTicks(0, hi, 5)
		top := yt[len(yt)-1]
		sy = func(y float64) float64 { return y0 + plotH - y/top*plotH }
	}
	// frame, grid and ticks
	pf(`<rect x="%g" y="%g" width="%g" height="%d" fill="none" stroke="#999"/>`+"\n", x0, y0, plotW, plotH)
	for _, v := range yt {
		y := sy(v)
		pf(`<line x1="%g" y1="%.1f" x2="%g" y2="%.1f" stroke="#e4e4e4"/>`, x0, y, x0+plotW, y)
		pf(`<line x1="%g" y1="%.1f" x2="%g" y2="%.1f" stroke="#999"/>`, x0-4, y, x0, y)
		pf(`<text x="%g" y="%.1f" text-anchor="end" dominant-baseline="middle">%s</text>`+"\n", x0-7, y, fmtNum(v))
	}
	for _, v := range xt {
		x := sx(v)
		pf(`<line x1="%.1f" y1="%g" x2="%.1f" y2="%g" stroke="#eeeeee"/>`, x, y0, x, y0+plotH)
		pf(`<line x1="%.1f" y1="%g" x2="%.1f" y2="%g" stroke="#999"/>`, x, y0+plotH, x, y0+plotH+4)
		pf(`<text x="%.1f" y="%g" text-anchor="middle">%s</text>`+"\n", x, y0+plotH+16, fmtNum(v))
	}
	pf(`<text x="%g" y="%g" text-anchor="middle" fill="#444">minute</text>`+"\n", x0+plotW/2, y0+plotH+31)
	if p.note != "" {
		pf(`<text x="%g" y="%g" text-anchor="middle" fill="#888" font-style="italic">%s</text>`+"\n", x0+plotW/2, y0+plotH/2, esc(p.note))
	}
	// lines, broken where a value is missing; dots when there are few points
	for _, s := range p.series {
		dash := ""
		if s.dash != "" {
			dash = fmt.Sprintf(` stroke-dasharray="%s"`, s.dash)
		}
		var run []string
		flush := func() {
			if len(run) > 1 {
				pf(`<polyline fill="none" stroke="%s" stroke-width="1.6"%s points="%s"/>`+"\n", s.color, dash, strings.Join(run, " "))
			}
			run = run[:0]
		}
		for _, q := range s.pts {
			if math.IsNaN(q.y) {
				flush()
				continue
			}
			run = append(run, fmt.Sprintf("%.1f,%.1f", sx(q.x), sy(q.y)))
			if len(s.pts) <= 40 {
				pf(`<circle cx="%.1f" cy="%.1f" r="2.2" fill="%s"/>`, sx(q.x), sy(q.y), s.color)
			}
		}
		flush()
	}
	// legend under the axis label
	for ri, row := range legendLayout(p, plotW) {
		y := y0 + plotH + xAxisH + float64(ri)*legendRow + 6
		for _, e := range row {
			s := p.series[e.i]
			dash := ""
			if s.dash != "" {
				dash = fmt.Sprintf(` stroke-dasharray="%s"`, s.dash)
			}
			pf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"%s/>`, x0+e.x, y, x0+e.x+22, y, s.color, dash)
			pf(`<text x="%.1f" y="%.1f" dominant-baseline="middle">%s</text>`+"\n", x0+e.x+27, y, esc(s.label))
		}
	}
}

type legendEntry struct {
	i int     // series index
	x float64 // offset from the plot's left edge
}

// legendLayout flows the legend entries into rows of the plot's width.
func legendLayout(p panel, width float64) [][]legendEntry {
	var rows [][]legendEntry
	var row []legendEntry
	x := 0.0
	for i, s := range p.series {
		w := 27 + float64(len([]rune(s.label)))*charW + 16
		if x > 0 && x+w > width {
			rows, row, x = append(rows, row), nil, 0
		}
		row = append(row, legendEntry{i, x})
		x += w
	}
	if len(row) > 0 {
		rows = append(rows, row)
	}
	return rows
}

// niceTicks returns about n round ticks from lo to at least hi.
func niceTicks(lo, hi float64, n int) []float64 {
	if !(hi > lo) || math.IsInf(hi-lo, 0) {
		hi = lo + 1
	}
	raw := (hi - lo) / float64(max(n-1, 1))
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, f := range []float64{1, 2, 2.5, 5, 10} {
		if f*mag >= raw {
			step = f * mag
			break
		}
	}
	var out []float64
	for k := math.Floor(lo / step); len(out) < 100; k++ {
		v, _ := strconv.ParseFloat(strconv.FormatFloat(k*step, 'g', 12, 64), 64) // 0.30000000000000004 → 0.3
		out = append(out, v)
		if v >= hi-step*1e-9 {
			break
		}
	}
	return out
}

// fmtNum prints a tick value compactly: 0.25, 12, 1.5k, 2M.
func fmtNum(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 1e9:
		return trimNum(v/1e9) + "G"
	case a >= 1e6:
		return trimNum(v/1e6) + "M"
	case a >= 1e4:
		return trimNum(v/1e3) + "k"
	}
	return trimNum(v)
}

func trimNum(v float64) string {
	return strconv.FormatFloat(math.Round(v*100)/100, 'f', -1, 64)
}

func esc(s string) string { return html.EscapeString(s) }
