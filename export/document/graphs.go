package document

import (
	"fmt"
	"math"
	"time"

	"codeberg.org/go-pdf/fpdf"

	"perfusion/charting"
)

// pt is one plotted mean; ok false is a gap (no usable reading).
type pt struct {
	t  int64 // ms
	v  float64
	ok bool
}

// line is one plotted series.
type line struct {
	label string
	pts   []pt
	right bool // on the panel's right axis
	marks bool // points (lab results), not a line
}

// panel is one trend graph.
type panel struct {
	title        string
	left, right  string // axis units
	lines        []line
	threshold    float64 // drawn dashed when > 0
	thLabel      string
	shade        [][2]int64 // full-flow windows
	lmin, lmax   float64
	rmin, rmax   float64
	hasR, hasAny bool
}

// Styles: each series differs by dash pattern as well as colour, so a
// black-and-white print or scan still tells them apart.
var styles = []struct {
	r, g, b int
	dash    []float64
}{
	{0, 0, 0, nil},
	{20, 70, 200, []float64{1.6, 0.8}},
	{200, 40, 40, []float64{0.4, 0.6}},
	{0, 130, 60, []float64{2.4, 0.8, 0.4, 0.8}},
	{200, 120, 0, []float64{3.2, 1.2}},
}

// series returns a channel's means as points.
func (d *doc) series(channel string) []pt {
	for _, s := range d.in.Trends {
		if s.Series.Channel != channel {
			continue
		}
		out := make([]pt, len(s.Series.TimesMs))
		for i, t := range s.Series.TimesMs {
			out[i] = pt{t: t, v: s.Series.Values[i], ok: !s.Series.IsInvalid(i)}
		}
		return out
	}
	return nil
}

// labPoints returns lab results of an analyte as points.
func (d *doc) labPoints(analyte string) []pt {
	var out []pt
	for _, e := range d.cur {
		if l := e.Detail.LabResult; l != nil && l.Analyte == analyte {
			out = append(out, pt{t: e.OccurredAt.UnixMilli(), v: l.Value, ok: true})
		}
	}
	return out
}

// do2i derives a DO2i curve from the pump flow means (the metric uses
// every sample; the graph shows the minute means): CaO2 from the in-line
// haemoglobin, SaO2 and pO2 of the same minute, else the latest arterial
// lab result before it. Only inside bypass runs: off bypass the pump
// carries no circulation and a DO2i of 0 says nothing.
func (d *doc) do2i() []pt {
	bsa := d.in.Case.Details.Patient.BSAM2
	flow := d.series("pump_flow")
	if bsa <= 0 || len(flow) == 0 {
		return nil
	}
	idx := func(ch string) map[int64]float64 {
		m := map[int64]float64{}
		for _, p := range d.series(ch) {
			if p.ok {
				m[p.t] = p.v
			}
		}
		return m
	}
	hbI, saI, poI := idx("inline_hb"), idx("inline_sao2"), idx("inline_po2")
	lab := func(analyte string, t int64) (float64, bool) {
		var v float64
		found := false
		for _, e := range d.cur {
			l := e.Detail.LabResult
			if l == nil || l.Analyte != analyte || e.OccurredAt.UnixMilli() > t || (analyte != "hb" && l.Site != "" && l.Site != "arterial") {
				continue
			}
			v, found = l.Value, true
		}
		return v, found
	}
	get := func(m map[int64]float64, analyte string, t int64) (float64, bool) {
		if v, ok := m[t]; ok {
			return v, true
		}
		return lab(analyte, t)
	}
	inRun := func(t int64) bool {
		if len(d.in.Metrics.Runs) == 0 {
			return true
		}
		for _, r := range d.in.Metrics.Runs {
			if t >= r.On.UnixMilli()-d.in.PeriodMs && t < r.Off.UnixMilli() {
				return true
			}
		}
		return false
	}
	var out []pt
	for _, p := range flow {
		if !inRun(p.t) {
			out = append(out, pt{t: p.t})
			continue
		}
		hb, ok1 := get(hbI, "hb", p.t)
		sa, ok2 := get(saI, "sao2", p.t)
		po, ok3 := get(poI, "po2", p.t)
		q := pt{t: p.t, ok: p.ok && ok1 && ok2 && ok3}
		if q.ok {
			q.v = charting.DO2i(p.v, bsa, charting.CaO2(hb, sa/100, po))
			q.ok = !math.IsNaN(q.v) && !math.IsInf(q.v, 0)
		}
		out = append(out, q)
	}
	return out
}

func (d *doc) chanLine(key string) line {
	name := key
	if ch, ok := d.cat.Lookup(key); ok {
		name = ch.Name
	}
	return line{label: name, pts: d.series(key)}
}

// panels builds the trend graphs of the record.
func (d *doc) panels() []*panel {
	bsa := d.in.Case.Details.Patient.BSAM2
	flow := d.chanLine("pump_flow")
	flow.label = "Pump flow (L/min, left)"
	fl := &panel{title: "Flow and flow index", left: "L/min", right: "L/min/m²", lines: []line{flow}}
	if bsa > 0 {
		var idx []pt
		for _, p := range flow.pts {
			idx = append(idx, pt{t: p.t, v: p.v / bsa, ok: p.ok})
		}
		fl.lines = append(fl.lines, line{label: "Flow index (L/min/m², right)", pts: idx, right: true})
	}
	pr := &panel{title: "Pressures", left: "mmHg"}
	for _, k := range []string{"map", "arterial_line_pressure", "venous_line_pressure", "cvp", "pap"} {
		pr.lines = append(pr.lines, d.chanLine(k))
	}
	te := &panel{title: "Temperatures", left: "°C"}
	for _, k := range []string{"temp_arterial_outlet", "temp_venous_inlet", "temp_nasopharyngeal", "temp_bladder", "temp_rectal"} {
		te.lines = append(te.lines, d.chanLine(k))
	}
	hc := &panel{title: "Haematocrit and SvO2", left: "%", lines: []line{d.chanLine("inline_hct"), d.chanLine("inline_svo2"),
		{label: "Haematocrit, lab", pts: d.labPoints("hct"), marks: true}, {label: "SvO2, lab", pts: d.labPoints("svo2"), marks: true}}}
	th := d.in.Metrics.Thresholds().DO2iThreshold
	do := &panel{title: "DO2i", left: "mL/min/m²", lines: []line{{label: "DO2i from minute means", pts: d.do2i()}},
		threshold: th, thLabel: fmt.Sprintf("threshold %s mL/min/m²", g(th))}
	for _, r := range d.in.Metrics.Runs {
		if !r.FullFlowFrom.IsZero() {
			do.shade = append(do.shade, [2]int64{r.FullFlowFrom.UnixMilli(), r.FullFlowTo.UnixMilli()})
		}
	}
	out := []*panel{fl, pr, te, hc, do}
	for _, p := range out {
		var kept []line
		for _, l := range p.lines {
			if len(l.pts) > 0 {
				kept = append(kept, l)
			}
		}
		p.lines = kept
		p.scale()
	}
	return out
}

// scale sets the panel's axis ranges from the whole record, so every page
// of a long case draws a channel on the same scale.
func (p *panel) scale() {
	p.lmin, p.lmax, p.rmin, p.rmax = math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, l := range p.lines {
		for _, q := range l.pts {
			if !q.ok {
				continue
			}
			p.hasAny = true
			if l.right {
				p.hasR = true
				p.rmin, p.rmax = math.Min(p.rmin, q.v), math.Max(p.rmax, q.v)
			} else {
				p.lmin, p.lmax = math.Min(p.lmin, q.v), math.Max(p.lmax, q.v)
			}
		}
	}
	if p.threshold > 0 {
		p.lmin, p.lmax = math.Min(p.lmin, p.threshold), math.Max(p.lmax, p.threshold)
	}
	p.lmin, p.lmax = nice(p.lmin, p.lmax)
	p.rmin, p.rmax = nice(p.rmin, p.rmax)
}

// nice widens [lo, hi] to round numbers.
func nice(lo, hi float64) (float64, float64) {
	if math.IsInf(lo, 0) || math.IsInf(hi, 0) {
		return 0, 1
	}
	if hi-lo < 1e-9 {
		lo, hi = lo-1, hi+1
	}
	st := step(hi - lo)
	return math.Floor(lo/st) * st, math.Ceil(hi/st) * st
}

// step is a round tick step giving about four intervals over r.
func step(r float64) float64 {
	raw := r / 4
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw {
			return m * mag
		}
	}
	return 10 * mag
}

// graphPageSpan is the longest time one page of graphs covers: a 4-hour
// case stays on one page, a 24-hour ECMO run takes four, each still
// readable minute by minute.
const graphPageSpan = 6 * time.Hour

// graphs draws the trend pages: the record's span split into equal
// chunks of at most graphPageSpan, each a page of panels on one time axis
// with the event timeline under them.
func (d *doc) graphs() {
	lo, hi := d.span()
	if lo.IsZero() || !hi.After(lo) {
		return
	}
	ps := d.panels()
	n := int(math.Ceil(float64(hi.Sub(lo)) / float64(graphPageSpan)))
	chunk := hi.Sub(lo) / time.Duration(n)
	for i := range n {
		from := lo.Add(time.Duration(i) * chunk)
		to := from.Add(chunk)
		d.f.AddPage()
		title := "Trends"
		if n > 1 {
			title = fmt.Sprintf("Trends, part %d of %d", i+1, n)
		}
		d.section(fmt.Sprintf("%s: %s to %s", title, d.full(from), d.full(to)))
		d.font(6.5)
		d.color(90, 90, 90)
		d.para(6.5, fmt.Sprintf("Means over %s; gaps are periods without a usable reading (invalid, artifact-marked or out of the plausible range). The shaded band on DO2i is the full-flow window.", period(d.in.PeriodMs)))
		d.color(0, 0, 0)
		const ph = 31.0
		for _, p := range ps {
			d.panel(p, from, to, ph)
		}
		d.timeline(from, to)
	}
}

func period(ms int64) string {
	if ms <= 60_000 {
		return "one minute"
	}
	return fmt.Sprintf("%d minutes", ms/60_000)
}

// plot area x bounds
const (
	plotL = marginL + 14
	plotR = pageW - marginR - 14
)

func (d *doc) xOf(t int64, from, to time.Time) float64 {
	return plotL + (plotR-plotL)*float64(t-from.UnixMilli())/float64(to.UnixMilli()-from.UnixMilli())
}

// timeTicks returns tick times over [from, to] at a round step.
func timeTicks(from, to time.Time, loc *time.Location) []time.Time {
	span := to.Sub(from)
	stepD := time.Hour * 4
	for _, s := range []time.Duration{5, 10, 15, 20, 30, 60, 120, 180, 240} {
		if span/(s*time.Minute) <= 10 {
			stepD = s * time.Minute
			break
		}
	}
	// align to the step in the print zone
	_, off := from.In(loc).Zone()
	offD := time.Duration(off) * time.Second
	t := from.Add(offD).Truncate(stepD).Add(-offD)
	if t.Before(from) {
		t = t.Add(stepD)
	}
	var out []time.Time
	for ; !t.After(to); t = t.Add(stepD) {
		out = append(out, t)
	}
	return out
}

func (d *doc) panel(p *panel, from, to time.Time, h float64) {
	f := d.f
	d.need(h + 8)
	y0 := f.GetY() + 4
	d.font(7.5)
	f.SetXY(marginL, y0-4)
	title := p.title + " (" + p.left
	if p.hasR {
		title += "; right: " + p.right
	}
	title += ")"
	w0 := f.GetStringWidth(title)
	f.CellFormat(w0+1, 3.5, title, "", 0, "L", false, 0, "")
	// legend after the title, text not colour alone
	x := marginL + w0 + 4
	d.font(6)
	for i, l := range p.lines {
		st := styles[i%len(styles)]
		w := f.GetStringWidth(l.label)
		if x+w+10 > pageW-marginR {
			break
		}
		f.SetDrawColor(st.r, st.g, st.b)
		f.SetFillColor(st.r, st.g, st.b)
		if l.marks {
			f.Circle(x+2.5, y0-2.2, 0.6, "F")
		} else {
			f.SetLineWidth(0.4)
			f.SetDashPattern(st.dash, 0)
			f.Line(x, y0-2.2, x+5, y0-2.2)
			f.SetDashPattern(nil, 0)
		}
		f.SetXY(x+6, y0-4)
		f.CellFormat(w+1, 3.5, l.label, "", 0, "L", false, 0, "")
		x += w + 10
	}
	if p.threshold > 0 {
		f.SetDrawColor(200, 40, 40)
		f.SetLineWidth(0.3)
		f.SetDashPattern([]float64{1, 1}, 0)
		f.Line(x, y0-2.2, x+5, y0-2.2)
		f.SetDashPattern(nil, 0)
		f.SetXY(x+6, y0-4)
		f.CellFormat(30, 3.5, p.thLabel, "", 0, "L", false, 0, "")
	}
	// frame and grid
	yOf := func(v, lo, hi float64) float64 { return y0 + h - h*(v-lo)/(hi-lo) }
	for _, s := range p.shade {
		a, b := max(s[0], from.UnixMilli()), min(s[1], to.UnixMilli())
		if b > a {
			f.SetFillColor(228, 236, 246)
			f.Rect(d.xOf(a, from, to), y0, d.xOf(b, from, to)-d.xOf(a, from, to), h, "F")
		}
	}
	f.SetDrawColor(200, 200, 200)
	f.SetLineWidth(0.1)
	d.font(5.5)
	d.color(60, 60, 60)
	if !p.hasAny {
		f.SetXY(plotL, y0+h/2-2)
		f.CellFormat(plotR-plotL, 4, "no data recorded", "", 0, "C", false, 0, "")
	}
	st := step(p.lmax - p.lmin)
	for v := p.lmin; v <= p.lmax+st/1e6; v += st {
		y := yOf(v, p.lmin, p.lmax)
		f.Line(plotL, y, plotR, y)
		f.SetXY(marginL, y-1.5)
		f.CellFormat(13, 3, trimNum(v, st), "", 0, "R", false, 0, "")
	}
	if p.hasR {
		rs := step(p.rmax - p.rmin)
		for v := p.rmin; v <= p.rmax+rs/1e6; v += rs {
			f.SetXY(plotR+1, yOf(v, p.rmin, p.rmax)-1.5)
			f.CellFormat(13, 3, trimNum(v, rs), "", 0, "L", false, 0, "")
		}
	}
	for _, t := range timeTicks(from, to, d.loc) {
		xx := d.xOf(t.UnixMilli(), from, to)
		f.Line(xx, y0, xx, y0+h)
		f.SetXY(xx-8, y0+h+0.3)
		f.CellFormat(16, 3, t.In(d.loc).Format("15:04"), "", 0, "C", false, 0, "")
	}
	d.eventLines(from, to, y0, h)
	f.SetDrawColor(0, 0, 0)
	f.SetLineWidth(0.2)
	f.Rect(plotL, y0, plotR-plotL, h, "D")
	if p.threshold > 0 && p.threshold >= p.lmin && p.threshold <= p.lmax {
		f.SetDrawColor(200, 40, 40)
		f.SetLineWidth(0.3)
		f.SetDashPattern([]float64{1, 1}, 0)
		y := yOf(p.threshold, p.lmin, p.lmax)
		f.Line(plotL, y, plotR, y)
		f.SetDashPattern(nil, 0)
	}
	// the data, clipped to the plot
	f.ClipRect(plotL, y0, plotR-plotL, h, false)
	lo, hi := from.UnixMilli()-d.in.PeriodMs, to.UnixMilli()+d.in.PeriodMs
	for i, l := range p.lines {
		s := styles[i%len(styles)]
		f.SetDrawColor(s.r, s.g, s.b)
		f.SetFillColor(s.r, s.g, s.b)
		f.SetLineWidth(0.35)
		f.SetDashPattern(s.dash, 0)
		ymin, ymax := p.lmin, p.lmax
		if l.right {
			ymin, ymax = p.rmin, p.rmax
		}
		if l.marks {
			for _, q := range l.pts {
				if q.ok && q.t >= lo && q.t <= hi {
					f.Circle(d.xOf(q.t, from, to), yOf(q.v, ymin, ymax), 0.7, "F")
				}
			}
			continue
		}
		drawPath(f, l.pts, lo, hi, d.in.PeriodMs, func(q pt) (float64, float64) {
			// a mean stands for its period: plot it at the middle
			return d.xOf(q.t+d.in.PeriodMs/2, from, to), yOf(q.v, ymin, ymax)
		})
		f.SetDashPattern(nil, 0)
	}
	f.ClipEnd()
	// ClipEnd restores the PDF graphics state of before the clip, which
	// fpdf does not track: set the colours again so later text is not
	// drawn in the restored (shading) fill colour.
	f.SetFillColor(255, 255, 255)
	f.SetDrawColor(0, 0, 0)
	d.color(0, 0, 0)
	f.SetXY(marginL, y0+h+4)
}

// drawPath strokes the points in [lo, hi] as polylines, broken at gaps and
// at missing periods.
func drawPath(f *fpdf.Fpdf, pts []pt, lo, hi, period int64, xy func(pt) (float64, float64)) {
	open := false
	var last int64
	n := 0
	for _, q := range pts {
		if q.t < lo || q.t > hi {
			continue
		}
		if !q.ok || (open && q.t-last > period) {
			if open && n > 1 {
				f.DrawPath("D")
			}
			open, n = false, 0
			if !q.ok {
				continue
			}
		}
		x, y := xy(q)
		if !open {
			f.MoveTo(x, y)
			open = true
		} else {
			f.LineTo(x, y)
		}
		n++
		last = q.t
	}
	if open && n > 1 {
		f.DrawPath("D")
	}
}

func trimNum(v, st float64) string {
	d := 0
	if st < 1 {
		d = int(math.Ceil(-math.Log10(st)))
	}
	return num(v, d)
}

// keyEvents are drawn as vertical lines across every panel.
var keyEvents = map[string]bool{charting.EventBypassOn: true, charting.EventBypassOff: true, charting.EventCrossClampOn: true, charting.EventCrossClampOff: true,
	charting.EventCirculatoryArrestStart: true, charting.EventCirculatoryArrestEnd: true, charting.EventFullFlow: true, charting.EventWeaningStart: true}

func (d *doc) eventLines(from, to time.Time, y0, h float64) {
	f := d.f
	f.SetDrawColor(120, 120, 120)
	f.SetLineWidth(0.15)
	f.SetDashPattern([]float64{0.6, 0.8}, 0)
	for _, e := range d.cur {
		if ev := e.Detail.Event; ev != nil && keyEvents[ev.Type] && !e.OccurredAt.Before(from) && !e.OccurredAt.After(to) {
			x := d.xOf(e.OccurredAt.UnixMilli(), from, to)
			f.Line(x, y0, x, y0+h)
		}
	}
	f.SetDashPattern(nil, 0)
}

// timeline draws the events on the graphs' time axis, labels stacked in
// rows so none overlaps, and the other entries as lettered ticks.
func (d *doc) timeline(from, to time.Time) {
	f := d.f
	d.need(40)
	y0 := f.GetY() + 1
	d.font(7.5)
	f.SetXY(marginL, y0-2)
	f.CellFormat(40, 3.5, "Event timeline", "", 1, "L", false, 0, "")
	y0 += 3
	d.font(5.5)
	const rows, rh = 6, 3.2
	ends := make([]float64, rows)
	for i := range ends {
		ends[i] = -1
	}
	axisY := y0 + rows*rh + 1
	f.SetDrawColor(0, 0, 0)
	f.SetLineWidth(0.2)
	f.Line(plotL, axisY, plotR, axisY)
	more := 0
	for _, e := range d.cur {
		ev := e.Detail.Event
		if ev == nil || e.OccurredAt.Before(from) || e.OccurredAt.After(to) {
			continue
		}
		x := d.xOf(e.OccurredAt.UnixMilli(), from, to)
		label := d.tm(e.OccurredAt) + " " + human(ev.Type)
		w := f.GetStringWidth(label) + 1
		row := -1
		for r := range rows {
			if ends[r] < x {
				row = r
				break
			}
		}
		f.SetDrawColor(120, 120, 120)
		f.SetLineWidth(0.15)
		if row < 0 {
			more++
			f.Line(x, axisY-1, x, axisY)
			continue
		}
		ly := axisY - float64(rows-row)*rh
		f.Line(x, ly+rh-0.6, x, axisY)
		tx := x
		if tx+w > pageW-marginR {
			tx = pageW - marginR - w
		}
		f.SetXY(tx, ly)
		f.CellFormat(w, rh-0.6, label, "", 0, "L", false, 0, "")
		ends[row] = tx + w
	}
	// other entries: a lettered tick under the axis
	letters := []struct {
		k   string
		has func(charting.EntryDetail) bool
	}{
		{"D", func(x charting.EntryDetail) bool { return x.Drug != nil }},
		{"C", func(x charting.EntryDetail) bool { return x.Cardioplegia != nil }},
		{"F", func(x charting.EntryDetail) bool { return x.Fluid != nil }},
		{"B", func(x charting.EntryDetail) bool { return x.BloodProduct != nil }},
		{"L", func(x charting.EntryDetail) bool { return x.LabResult != nil }},
	}
	lastX := map[string]float64{}
	for _, e := range d.cur {
		if e.OccurredAt.Before(from) || e.OccurredAt.After(to) {
			continue
		}
		for i, l := range letters {
			if !l.has(e.Detail) {
				continue
			}
			x := d.xOf(e.OccurredAt.UnixMilli(), from, to)
			y := axisY + 1 + float64(i)*2.2
			f.Line(x, axisY, x, axisY+0.8)
			if lx, ok := lastX[l.k]; ok && x-lx < 1.6 {
				continue // the same letter just drawn: one mark stands for both
			}
			lastX[l.k] = x
			f.SetXY(x-1, y)
			f.CellFormat(2, 2.4, l.k, "", 0, "C", false, 0, "")
		}
	}
	yl := axisY + 1 + float64(len(letters))*2.2 + 1
	for _, t := range timeTicks(from, to, d.loc) {
		xx := d.xOf(t.UnixMilli(), from, to)
		f.Line(xx, axisY, xx, axisY+0.6)
	}
	f.SetXY(marginL, yl)
	s := "D drug · C cardioplegia · F fluid · B blood product · L lab result (details in the tables below)"
	if more > 0 {
		s += fmt.Sprintf(" · %d more events in the Events table", more)
	}
	f.CellFormat(contentW, 3, s, "", 1, "L", false, 0, "")
	f.SetXY(marginL, yl+4)
}
