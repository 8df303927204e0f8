// Package document renders the perfusion record as a printable PDF: the
// document a department files in the patient's chart (AmSECT Standard 3)
// when it has no electronic link, and the one an MDM^T02 or FHIR
// DocumentReference carries.
//
// It is pure like charting: it takes a loaded record (Input, which
// export.Renderer builds from one consistent snapshot) and returns bytes,
// with no I/O. The same Input always gives the same bytes: the creation
// date is the version's ledger time, nothing is random, maps are never
// iterated into the output, and the font (DejaVu Sans Condensed, embedded
// and subset) ships with the package, so golden files stay stable and a
// resend of a document is byte-identical.
//
// The font is embedded because the core PDF fonts cover only Latin-1 and
// patients' and staff names do not (Żółkiewska); DejaVu's licence
// (Bitstream Vera, DejaVu changes public domain; fonts/LICENSE) allows
// redistribution with the software.
package document

import (
	"bytes"
	_ "embed"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"codeberg.org/go-pdf/fpdf"
	"github.com/google/uuid"

	"perfusion/charting"
)

//go:embed fonts/DejaVuSansCondensed.ttf
var dejavu []byte

// VerifyCommand is how a reader checks the printed ledger head against
// the service and its signed checkpoint log; %s is the case id.
const VerifyCommand = "perfusionctl record verify %s --against-checkpoints"

// Input is a case as it stood at one version, ready to print.
type Input struct {
	// Case holds the details and the signatures up to the version. A case
	// that is not signed prints as a DRAFT on every page.
	Case *charting.Case
	// Version is the ledger sequence of the signature or addendum printed,
	// 0 for a draft.
	Version int64
	// Head is the ledger link the document stands for: the version's own
	// link, or the case's latest for a draft. Its time is the document's
	// creation date.
	Head charting.Link
	// All is every entry at the version, corrections and voids included.
	All []charting.Entry
	// Trends are the device data as regular means (charting.RegularTrends)
	// and PeriodMs their period.
	Trends   []charting.RegularSeries
	PeriodMs int64
	// Metrics are the case's quality metrics with the site's thresholds.
	Metrics charting.Metrics
	// Catalogue names the channels; nil means the default.
	Catalogue *charting.Catalogue
	// Location is the zone times are printed in; nil means UTC.
	Location *time.Location
}

// Draft reports whether the input prints as a draft: the case is not
// signed.
func (in *Input) Draft() bool { return in.Case.Status != charting.StatusSigned }

// page geometry, mm (A4 portrait).
const (
	pageW, pageH = 210.0, 297.0
	marginL      = 12.0
	marginR      = 12.0
	contentW     = pageW - marginL - marginR
	topY         = 24.0 // below the running header
	bottomY      = pageH - 14.0
)

type doc struct {
	f        *fpdf.Fpdf
	in       *Input
	loc      *time.Location
	cat      *charting.Catalogue
	multiDay bool
	cur      []charting.Entry // current view, occurred-at order
	byID     map[uuid.UUID]charting.Entry
	notes    map[uuid.UUID]bool // corrected entries: marked in the tables
}

// Render returns the PDF of in.
func Render(in *Input) ([]byte, error) {
	if in == nil || in.Case == nil {
		return nil, fmt.Errorf("document: no case")
	}
	d := &doc{in: in, loc: in.Location, cat: in.Catalogue}
	if d.loc == nil {
		d.loc = time.UTC
	}
	if d.cat == nil {
		d.cat = charting.DefaultCatalogue()
	}
	d.cur = charting.CurrentView(in.All, false)
	d.byID = map[uuid.UUID]charting.Entry{}
	d.notes = map[uuid.UUID]bool{}
	for _, e := range in.All {
		d.byID[e.ID] = e
		if e.Supersedes != uuid.Nil {
			d.notes[e.ID] = true
		}
	}
	lo, hi := d.span()
	d.multiDay = !lo.IsZero() && (lo.In(d.loc).YearDay() != hi.In(d.loc).YearDay() || hi.Sub(lo) > 20*time.Hour)

	f := fpdf.New("P", "mm", "A4", "")
	d.f = f
	f.SetCatalogSort(true)
	created := in.Head.RecordedAt
	if created.IsZero() {
		created = in.Case.CreatedAt
	}
	f.SetCreationDate(created)
	f.SetModificationDate(created)
	f.SetProducer("perfusion record renderer", false)
	f.SetCreator("perfusion", false)
	f.SetTitle("Perfusion record "+in.Case.ID.String(), true)
	f.SetSubject(fmt.Sprintf("version %d, ledger link %d, hash %s", in.Version, in.Head.Seq, in.Head.Hash), true)
	f.AddUTF8FontFromBytes("dejavu", "", dejavu)
	f.SetMargins(marginL, topY, marginR)
	f.SetAutoPageBreak(false, 0)
	f.AliasNbPages("{nb}")
	f.SetHeaderFunc(d.header)
	f.SetFooterFunc(d.footer)

	f.AddPage()
	d.caseHeader()
	d.graphs()
	d.tables()
	d.quality()
	d.corrections()
	d.addenda()
	d.signatures()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("document: %w", err)
	}
	var buf bytes.Buffer
	if err := f.Output(&buf); err != nil {
		return nil, fmt.Errorf("document: %w", err)
	}
	return buf.Bytes(), nil
}

// ---- text helpers ----

func (d *doc) font(size float64) { d.f.SetFont("dejavu", "", size) }

func (d *doc) color(r, g, b int) { d.f.SetTextColor(r, g, b) }

// tm prints a time: the clock in the print zone, with the date when the
// record spans days.
func (d *doc) tm(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	if d.multiDay {
		return t.In(d.loc).Format("02 Jan 15:04")
	}
	return t.In(d.loc).Format("15:04")
}

func (d *doc) full(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.In(d.loc).Format("2006-01-02 15:04:05 MST")
}

func num(x float64, digits int) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return "—"
	}
	return strconv.FormatFloat(x, 'f', digits, 64)
}

// g prints a number without trailing zeros.
func g(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }

func or(s, def string) string {
	if strings.TrimSpace(s) == "" {
		return def
	}
	return s
}

func human(s string) string { return strings.ReplaceAll(s, "_", " ") }

// unit prints a UCUM unit as people read it.
func unit(u string) string {
	switch u {
	case "Cel":
		return "°C"
	case "mm[Hg]":
		return "mmHg"
	case "[pH]":
		return ""
	case "[iU]":
		return "IU"
	case "ug":
		return "µg"
	case "m2":
		return "m²"
	case "mL/min/m2":
		return "mL/min/m²"
	case "mL/m2":
		return "mL/m²"
	case "1":
		return ""
	}
	u = strings.ReplaceAll(u, "[iU]", "IU")
	u = strings.ReplaceAll(u, "ug", "µg")
	return strings.ReplaceAll(u, "Cel", "°C")
}

func withUnit(v, u string) string {
	if u = unit(u); u == "" {
		return v
	}
	if u == "%" {
		return v + " %"
	}
	return v + " " + u
}

// ---- page furniture ----

func (d *doc) patientLine() string {
	p := d.in.Case.Details.Patient
	name := strings.TrimSpace(strings.ToUpper(p.FamilyName) + ", " + p.GivenName)
	if p.FamilyName == "" && p.GivenName == "" {
		name = "(no name recorded)"
	}
	mrn := or(p.MRN, "no MRN")
	if p.MRNAssigningAuthority != "" && p.MRN != "" {
		mrn += " (" + p.MRNAssigningAuthority + ")"
	}
	return fmt.Sprintf("%s · MRN %s · born %s · case %s", name, mrn, or(p.BirthDate, "—"), d.in.Case.ID)
}

func (d *doc) header() {
	f := d.f
	if d.in.Draft() {
		// A watermark under the page's content and a band above it: a
		// draft must not pass for the signed record, in print or scan.
		f.SetTextColor(245, 200, 200)
		d.font(110)
		f.TransformBegin()
		f.TransformRotate(50, pageW/2, pageH/2)
		w := f.GetStringWidth("DRAFT")
		f.Text(pageW/2-w/2, pageH/2+15, "DRAFT")
		f.TransformEnd()
	}
	d.font(11)
	d.color(0, 0, 0)
	f.SetXY(marginL, 7)
	kind := "Cardiopulmonary bypass"
	if d.in.Case.Kind == charting.KindECMO {
		kind = "ECMO"
	}
	f.CellFormat(contentW*0.7, 5, "PERFUSION RECORD — "+kind, "", 0, "L", false, 0, "")
	d.font(8)
	f.CellFormat(contentW*0.3, 5, fmt.Sprintf("Page %d of {nb}", f.PageNo()), "", 1, "R", false, 0, "")
	f.SetX(marginL)
	f.CellFormat(contentW, 4, d.patientLine(), "", 1, "L", false, 0, "")
	if d.in.Draft() {
		f.SetFillColor(200, 30, 30)
		f.SetTextColor(255, 255, 255)
		d.font(8.5)
		f.SetX(marginL)
		f.CellFormat(contentW, 5, fmt.Sprintf("DRAFT — case %s, not signed: not the legal record; values may still change",
			human(string(d.in.Case.Status))), "", 1, "C", true, 0, "")
		d.color(0, 0, 0)
	} else {
		f.SetDrawColor(0, 0, 0)
		f.SetLineWidth(0.3)
		f.Line(marginL, 19, pageW-marginR, 19)
	}
	f.SetXY(marginL, topY)
}

func (d *doc) footer() {
	f := d.f
	f.SetDrawColor(150, 150, 150)
	f.SetLineWidth(0.2)
	f.Line(marginL, pageH-11, pageW-marginR, pageH-11)
	d.font(6.5)
	d.color(60, 60, 60)
	f.SetXY(marginL, pageH-10.5)
	h := d.in.Head
	var s string
	if d.in.Draft() {
		s = fmt.Sprintf("DRAFT printed from ledger link %d (%s…) of %s", h.Seq, h.Hash.String()[:16], d.full(h.RecordedAt))
	} else {
		s = fmt.Sprintf("Signed record, version %d: ledger link %d, hash %s…, %s", d.in.Version, h.Seq, h.Hash.String()[:16], d.full(h.RecordedAt))
	}
	f.CellFormat(contentW, 3.5, s, "", 1, "L", false, 0, "")
	f.SetX(marginL)
	f.CellFormat(contentW, 3.5, "Verify: "+fmt.Sprintf(VerifyCommand, d.in.Case.ID), "", 0, "L", false, 0, "")
	d.color(0, 0, 0)
}

// need starts a new page unless h mm are left on this one.
func (d *doc) need(h float64) {
	if d.f.GetY()+h > bottomY {
		d.f.AddPage()
	}
}

// section prints a section title.
func (d *doc) section(title string) {
	d.need(16)
	f := d.f
	f.Ln(2)
	f.SetFillColor(225, 230, 238)
	d.font(10)
	d.color(0, 0, 0)
	f.SetX(marginL)
	f.CellFormat(contentW, 6, title, "", 1, "L", true, 0, "")
	f.Ln(1)
}

// para prints wrapped text.
func (d *doc) para(size float64, s string) {
	d.font(size)
	lh := size * 0.45
	for _, line := range d.f.SplitText(s, contentW) {
		d.need(lh)
		d.f.SetX(marginL)
		d.f.CellFormat(contentW, lh, line, "", 1, "L", false, 0, "")
	}
}

// ---- tables ----

type cell struct {
	text   string
	struck bool // a superseded value: printed and struck through
}

type column struct {
	title string
	w     float64 // share of the content width
}

func c(s string) cell { return cell{text: s} }

// table prints rows under a header row that repeats on each page.
func (d *doc) table(cols []column, rows [][]cell) {
	f := d.f
	const size = 7.5
	lh := 3.4
	var total float64
	for _, col := range cols {
		total += col.w
	}
	ws := make([]float64, len(cols))
	for i, col := range cols {
		ws[i] = contentW * col.w / total
	}
	head := func() {
		d.font(size)
		f.SetFillColor(240, 240, 240)
		f.SetX(marginL)
		for i, col := range cols {
			f.CellFormat(ws[i], lh+1, col.title, "B", 0, "L", true, 0, "")
		}
		f.Ln(-1)
	}
	d.need(2*lh + 2)
	head()
	if len(rows) == 0 {
		d.font(size)
		f.SetX(marginL)
		f.CellFormat(contentW, lh+1, "none recorded", "", 1, "L", false, 0, "")
		return
	}
	d.font(size)
	f.SetDrawColor(210, 210, 210)
	f.SetLineWidth(0.1)
	for _, row := range rows {
		lines := make([][]string, len(row))
		n := 1
		for i, cl := range row {
			lines[i] = f.SplitText(cl.text, ws[i]-1.5)
			n = max(n, len(lines[i]))
		}
		h := float64(n)*lh + 0.8
		if f.GetY()+h > bottomY {
			f.AddPage()
			head()
			d.font(size)
		}
		y := f.GetY()
		x := marginL
		for i, cl := range row {
			for j, line := range lines[i] {
				ly := y + 0.4 + float64(j)*lh
				f.SetXY(x, ly)
				f.CellFormat(ws[i], lh, line, "", 0, "L", false, 0, "")
				if cl.struck {
					f.SetDrawColor(0, 0, 0)
					f.SetLineWidth(0.25)
					sw := f.GetStringWidth(line)
					f.Line(x+1, ly+lh/2, x+1+sw, ly+lh/2)
					f.SetDrawColor(210, 210, 210)
					f.SetLineWidth(0.1)
				}
			}
			x += ws[i]
		}
		f.Line(marginL, y+h, marginL+contentW, y+h)
		f.SetXY(marginL, y+h)
	}
}

// kv prints label/value pairs in two columns.
func (d *doc) kv(pairs [][2]string) {
	f := d.f
	const lw, vw = 30.0, contentW/2 - 30.0
	lh := 3.5
	half := (len(pairs) + 1) / 2
	y0 := f.GetY()
	yEnd := y0
	for colIdx := range 2 {
		y := y0
		for _, p := range pairs[colIdx*half : min(len(pairs), (colIdx+1)*half)] {
			x := marginL + float64(colIdx)*contentW/2
			d.font(7.5)
			lines := f.SplitText(p[1], vw-1)
			d.color(90, 90, 90)
			f.SetXY(x, y)
			f.CellFormat(lw, lh, p[0], "", 0, "L", false, 0, "")
			d.color(0, 0, 0)
			for j, l := range lines {
				f.SetXY(x+lw, y+float64(j)*lh)
				f.CellFormat(vw, lh, l, "", 0, "L", false, 0, "")
			}
			y += float64(max(1, len(lines))) * lh
		}
		yEnd = max(yEnd, y)
	}
	f.SetXY(marginL, yEnd+1)
}

// ---- the case header ----

func (d *doc) caseHeader() {
	c := d.in.Case
	det := c.Details
	p := det.Patient
	status := fmt.Sprintf("signed; version %d (ledger link %d)", d.in.Version, d.in.Head.Seq)
	if d.in.Draft() {
		status = "DRAFT: " + human(string(c.Status)) + ", not signed"
	}
	d.section("Patient and case")
	bsa := "—"
	if p.BSAM2 > 0 {
		bsa = fmt.Sprintf("%s m² (%s; %s cm, %s kg)", num(p.BSAM2, 2), or(string(p.BSAFormula), "mosteller"), g(p.HeightCm), g(p.WeightKg))
	}
	sex := or(p.Sex, "—")
	d.kv([][2]string{
		{"Patient", strings.TrimSpace(p.FamilyName + ", " + p.GivenName)},
		{"MRN", or(p.MRN, "not recorded") + paren(p.MRNAssigningAuthority, "")},
		{"Born / sex", or(p.BirthDate, "—") + " / " + sex},
		{"Height / weight", withUnit(g(p.HeightCm), "cm") + " / " + withUnit(g(p.WeightKg), "kg")},
		{"BSA", bsa},
		{"Blood type", or(p.BloodType, "not recorded")},
		{"Allergies", or(strings.Join(p.Allergies, ", "), "none recorded")},
		{"Record status", status},
		{"Case", c.ID.String()},
		{"Kind", map[charting.Kind]string{charting.KindCPB: "cardiopulmonary bypass", charting.KindECMO: "ECMO"}[c.Kind]},
		{"Site / room", c.Site + " / " + or(c.Room, "—")},
		{"Scheduled", d.full(c.ScheduledStart)},
		{"Started / closed", d.full(c.StartedAt) + " / " + d.full(c.ClosedAt)},
		{"Procedure", or(det.Procedure.Description, "—") + paren(det.Procedure.SnomedCode, "SNOMED CT ")},
		{"Encounter", or(det.Procedure.EncounterID, "—")},
	})
	d.section("Team")
	var perf []string
	for _, m := range det.Team.Perfusionists {
		perf = append(perf, staff(m))
	}
	d.kv([][2]string{
		{"Surgeon", staff(det.Team.Surgeon)},
		{"Anaesthesiologist", staff(det.Team.Anesthesiologist)},
		{"Perfusionists", or(strings.Join(perf, "; "), "—")},
	})
	d.section("Circuit and prime")
	ci := det.Circuit
	var cans []string
	for _, k := range ci.Cannulae {
		s := or(k.Site, "site?")
		if k.SizeFr > 0 {
			s += " " + g(k.SizeFr) + " Fr"
		}
		if k.Model != "" {
			s += " " + k.Model
		}
		cans = append(cans, s)
	}
	var prime []string
	for _, pc := range det.Prime.Components {
		prime = append(prime, pc.Name+" "+g(pc.VolumeML)+" mL")
	}
	yes := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	npvi := "—"
	if v, ok := d.in.Metrics.Values["net_prime_volume_index"]; ok {
		npvi = num(v, 0) + " mL/m²"
	}
	d.kv([][2]string{
		{"Arterial pump", or(human(ci.ArterialPump), "—")},
		{"Oxygenator", component(ci.Oxygenator)},
		{"Reservoir", or(human(ci.Reservoir), "—")},
		{"Arterial filter", component(ci.ArterialFilter)},
		{"Cannulae", or(strings.Join(cans, "; "), "—")},
		{"Cardioplegia system", or(ci.CardioplegiaSystem, "—")},
		{"Cell salvage / UF", yes(ci.CellSalvage) + " / " + yes(ci.Ultrafiltration)},
		{"Prime", or(strings.Join(prime, "; "), "—")},
		{"Prime total / RAP", g(det.Prime.TotalVolumeML()) + " mL / " + g(det.Prime.RAPVolumeML) + " mL"},
		{"Net prime vol. index", npvi},
	})
	d.section("BSA and targets")
	th := d.in.Metrics.Thresholds()
	pairs := [][2]string{}
	if p.BSAM2 > 0 {
		pairs = append(pairs,
			[2]string{"Flow at index 2.4", num(2.4*p.BSAM2, 2) + " L/min (normothermic)"},
			[2]string{"Flow at index 1.8", num(1.8*p.BSAM2, 2) + " L/min (hypothermic)"})
	}
	pop := or(d.in.Metrics.Population, "site default")
	pairs = append(pairs,
		[2]string{"DO2i threshold", g(th.DO2iThreshold) + " mL/min/m² (" + pop + ")"},
		[2]string{"MAP", "below " + joinG(th.MAPThresholds, ", ") + " mmHg counted; episodes < " + g(th.MAPEpisodeThreshold) + " mmHg > " + g(th.EpisodeMinutes) + " min"},
		[2]string{"SvO2", "episodes < " + g(th.SvO2Threshold) + " % > " + g(th.EpisodeMinutes) + " min"},
		[2]string{"Temperature", "outlet ≤ " + g(th.ArterialOutletMaxC) + " °C; core ≤ " + g(th.CoreMaxC) + " °C; rewarming ≤ " + g(th.RewarmingMaxCPerMin) + " °C/min"},
		[2]string{"Gradient", "≤ " + g(th.GradientMaxC) + " °C; ≤ " + g(th.GradientWarmMaxC) + " °C from " + g(th.WarmFromC) + " °C"},
		[2]string{"Glucose / pCO2", g(th.GlucoseMin) + "–" + g(th.GlucoseMax) + " mmol/L / " + g(th.PCO2Min) + "–" + g(th.PCO2Max) + " mmHg"},
	)
	d.kv(pairs)
	d.font(6.5)
	d.color(90, 90, 90)
	d.para(6.5, "Flows at index 2.4 and 1.8 L/min/m² are the dictionary's normothermic and hypothermic indices times the BSA above; thresholds are the site's metric settings the quality metrics below were computed with.")
	d.color(0, 0, 0)
}

// paren is " (prefix s)", or nothing when s is empty.
func paren(s, prefix string) string {
	if s == "" {
		return ""
	}
	return " (" + prefix + s + ")"
}

func joinG(xs []float64, sep string) string {
	var s []string
	for _, x := range xs {
		s = append(s, g(x))
	}
	return strings.Join(s, sep)
}

func staff(m charting.StaffMember) string {
	switch {
	case m.DisplayName != "" && m.StaffID != "":
		return m.DisplayName + " (" + m.StaffID + ")"
	case m.DisplayName != "":
		return m.DisplayName
	}
	return or(m.StaffID, "—")
}

func component(c charting.Component) string {
	var s []string
	if c.Model != "" {
		s = append(s, c.Model)
	}
	if c.Lot != "" {
		s = append(s, "lot "+c.Lot)
	}
	if c.UDI != "" {
		s = append(s, "UDI "+c.UDI)
	}
	return or(strings.Join(s, ", "), "—")
}

// span is the time the record covers: the case's start (or first entry)
// to its close (or last datum).
func (d *doc) span() (lo, hi time.Time) {
	upd := func(t time.Time) {
		if t.IsZero() {
			return
		}
		if lo.IsZero() || t.Before(lo) {
			lo = t
		}
		if t.After(hi) {
			hi = t
		}
	}
	for _, e := range d.cur {
		if e.Detail.Addendum == nil {
			upd(e.OccurredAt)
		}
	}
	for _, s := range d.in.Trends {
		if n := len(s.Series.TimesMs); n > 0 {
			upd(time.UnixMilli(s.Series.TimesMs[0]).UTC())
			upd(time.UnixMilli(s.Series.TimesMs[n-1] + d.in.PeriodMs).UTC())
		}
	}
	if lo.IsZero() {
		upd(d.in.Case.StartedAt)
		upd(d.in.Case.ClosedAt)
	}
	return lo, hi
}

// ---- entry tables ----

// flags are the marks of an entry that text, not colour, must carry.
func (d *doc) flags(e charting.Entry) string {
	var s []string
	if d.notes[e.ID] {
		s = append(s, "corrected (see Corrections)")
	}
	if e.Late {
		s = append(s, "late: recorded "+d.tm(e.RecordedAt))
	}
	return strings.Join(s, "; ")
}

// summary is one line saying what an entry holds.
func summary(e charting.Entry) string {
	if e.Void {
		return "void"
	}
	x := e.Detail
	switch {
	case x.Event != nil:
		return human(x.Event.Type) + or(" — "+x.Event.Comment, "")
	case x.Drug != nil:
		return fmt.Sprintf("%s %s %s %s", x.Drug.Drug, g(x.Drug.Dose), unit(x.Drug.Unit), x.Drug.Route)
	case x.Fluid != nil:
		return fmt.Sprintf("%s %s %s mL", human(x.Fluid.Kind), x.Fluid.Name, g(x.Fluid.VolumeML))
	case x.BloodProduct != nil:
		return fmt.Sprintf("%s %d unit(s) %s mL", strings.ToUpper(x.BloodProduct.Type), x.BloodProduct.Units, g(x.BloodProduct.VolumeML))
	case x.LabResult != nil:
		return fmt.Sprintf("%s %s (%s)", labName(x.LabResult.Analyte), withUnit(g(x.LabResult.Value), x.LabResult.Unit), or(x.LabResult.Site, "site not recorded"))
	case x.ChecklistItem != nil:
		return fmt.Sprintf("checklist %s: %s %s", x.ChecklistItem.Section, x.ChecklistItem.Item, human(x.ChecklistItem.State))
	case x.Note != nil:
		return "note: " + x.Note.Text
	case x.ArtifactMark != nil:
		return fmt.Sprintf("artifact %s %s–%s: %s", x.ArtifactMark.Channel, x.ArtifactMark.Start.Format("15:04"), x.ArtifactMark.End.Format("15:04"), x.ArtifactMark.Reason)
	case x.Cardioplegia != nil:
		return fmt.Sprintf("cardioplegia %s %s mL %s", x.Cardioplegia.Solution, g(x.Cardioplegia.VolumeML), x.Cardioplegia.Route)
	case x.Addendum != nil:
		return "addendum: " + x.Addendum.Text
	}
	return "—"
}

func labName(a string) string {
	if an, ok := charting.Analytes()[a]; ok {
		return an.Name
	}
	return a
}

func (d *doc) tables() {
	var events, drugs, cpg, fluids, blood, labs, checks, marks, notes [][]cell
	for _, e := range d.cur {
		x := e.Detail
		t, fl := c(d.tm(e.OccurredAt)), c(d.flags(e))
		by := c(e.Author)
		switch {
		case x.Event != nil:
			events = append(events, []cell{t, c(human(x.Event.Type)), c(x.Event.Comment), by, fl})
		case x.Drug != nil:
			drugs = append(drugs, []cell{t, c(x.Drug.Drug), c(withUnit(g(x.Drug.Dose), x.Drug.Unit)), c(or(x.Drug.Route, "—")), by, fl})
		case x.Cardioplegia != nil:
			k := x.Cardioplegia
			temp := "—"
			if k.TemperatureC > 0 {
				temp = g(k.TemperatureC) + " °C"
			}
			cpg = append(cpg, []cell{t, c(k.Solution), c(g(k.VolumeML) + " mL"), c(or(k.Route, "—")), c(temp), c(or(k.Phase, "—")), fl})
		case x.Fluid != nil:
			fluids = append(fluids, []cell{t, c(human(x.Fluid.Kind)), c(or(x.Fluid.Name, "—")), c(g(x.Fluid.VolumeML) + " mL"), by, fl})
		case x.BloodProduct != nil:
			b := x.BloodProduct
			blood = append(blood, []cell{t, c(strings.ToUpper(b.Type)), c(strconv.Itoa(int(b.Units))), c(g(b.VolumeML) + " mL"), c(or(b.Route, "—")), fl})
		case x.LabResult != nil:
			l := x.LabResult
			labs = append(labs, []cell{t, c(labName(l.Analyte)), c(withUnit(g(l.Value), l.Unit)), c(or(l.Site, "—")),
				c(human(or(l.TemperatureCorrection, "—"))), c(or(l.Device, "—")), fl})
		case x.ChecklistItem != nil:
			checks = append(checks, []cell{t, c(x.ChecklistItem.Section), c(x.ChecklistItem.Item), c(human(x.ChecklistItem.State)), by, fl})
		case x.ArtifactMark != nil:
			m := x.ArtifactMark
			marks = append(marks, []cell{t, c(m.Channel), c(or(m.SourceID, "all sources")), c(d.tm(m.Start) + "–" + d.tm(m.End)), c(m.Reason), fl})
		case x.Note != nil:
			notes = append(notes, []cell{t, c(x.Note.Text), by, fl})
		}
	}
	d.section("Events")
	d.table([]column{{"Time", 1.2}, {"Event", 2.4}, {"Comment", 3}, {"By", 1.6}, {"Marks", 2}}, events)
	d.section("Drugs")
	d.table([]column{{"Time", 1.2}, {"Drug", 2.6}, {"Dose", 1.6}, {"Route", 1.4}, {"By", 1.6}, {"Marks", 2}}, drugs)
	d.section("Cardioplegia")
	d.table([]column{{"Time", 1.2}, {"Solution", 2}, {"Volume", 1.2}, {"Route", 1.4}, {"Temperature", 1.2}, {"Phase", 1.4}, {"Marks", 2}}, cpg)
	d.section("Fluids")
	d.table([]column{{"Time", 1.2}, {"Kind", 2.2}, {"Name", 2.4}, {"Volume", 1.2}, {"By", 1.6}, {"Marks", 2}}, fluids)
	d.section("Blood products")
	d.table([]column{{"Time", 1.2}, {"Product", 1.6}, {"Units", 0.8}, {"Volume", 1.2}, {"Route", 1.4}, {"Marks", 2}}, blood)
	d.section("Labs")
	d.table([]column{{"Time", 1.1}, {"Analyte", 2.4}, {"Value", 1.5}, {"Site", 1.3}, {"Temp. corr.", 1.2}, {"Device", 2}, {"Marks", 2}}, labs)
	d.section("Checklist")
	d.table([]column{{"Time", 1.2}, {"Section", 2}, {"Item", 3}, {"State", 1.4}, {"By", 1.6}, {"Marks", 1.8}}, checks)
	d.section("Artifact marks")
	d.table([]column{{"Marked", 1.2}, {"Channel", 2}, {"Source", 1.4}, {"Period", 1.8}, {"Reason", 3}, {"Marks", 1.6}}, marks)
	d.section("Notes")
	d.table([]column{{"Time", 1.2}, {"Note", 7}, {"By", 1.6}, {"Marks", 1.8}}, notes)
}

// ---- metrics ----

func (d *doc) quality() {
	m := d.in.Metrics
	d.section("Quality metrics")
	var rows [][]cell
	for _, def := range charting.MetricDefinitions(m.Config) {
		v, ok := m.Values[def.Name]
		if !ok {
			continue
		}
		val := withUnit(num(v, decimalsFor(v)), def.Unit)
		switch def.Name {
		case "full_flow_window_source":
			val = map[float64]string{0: "none", 1: "charted events", 2: "flow rule", 3: "minutes rule"}[v]
		case "nadir_temp_c":
			val += " (" + human(strings.TrimPrefix(m.NadirTempSite, "temp_")) + ")"
		}
		if at, ok := m.At[def.Name]; ok {
			val += " at " + d.tm(at)
		}
		rows = append(rows, []cell{c(human(def.Name)), c(val), c(human(string(def.Window))), c(def.Description)})
	}
	d.table([]column{{"Metric", 2.6}, {"Value", 2.2}, {"Window", 1}, {"Definition", 6}}, rows)
	d.section("Full-flow window")
	var runs [][]cell
	for i, r := range m.Runs {
		from, to := "—", "—"
		if !r.FullFlowFrom.IsZero() {
			from, to = d.tm(r.FullFlowFrom), d.tm(r.FullFlowTo)
		}
		src := "charted bypass_on/off"
		if !r.Charted {
			src = "span of device data"
		}
		runs = append(runs, []cell{c(strconv.Itoa(i + 1)), c(d.tm(r.On) + "–" + d.tm(r.Off)), c(src), c(from + "–" + to),
			c(human(string(r.FromSource)) + " / " + human(string(r.ToSource))), c(num(r.FullFlowMinutes, 0) + " min")})
	}
	d.table([]column{{"Run", 0.6}, {"On–off", 2}, {"Run from", 2}, {"Full flow", 2}, {"Start / end found by", 2.6}, {"Minutes", 1}}, runs)
	d.color(90, 90, 90)
	d.para(6.5, fmt.Sprintf("DO2i, MAP and SvO2 metrics cover full-flow bypass only (less charted circulatory arrest); temperatures, haematocrit and labs cover every bypass run. Metric definitions version %d.", m.Version))
	d.color(0, 0, 0)
}

func decimalsFor(v float64) int {
	if v == math.Trunc(v) {
		return 0
	}
	if math.Abs(v) >= 100 {
		return 0
	}
	return 2
}

// ---- corrections, addenda, signatures ----

func (d *doc) corrections() {
	d.section("Corrections")
	var rows [][]cell
	all := slices.Clone(d.in.All)
	slices.SortStableFunc(all, func(a, b charting.Entry) int { return a.RecordedAt.Compare(b.RecordedAt) })
	for _, e := range all {
		if e.Supersedes == uuid.Nil {
			continue
		}
		old, ok := d.byID[e.Supersedes]
		was := "(entry " + e.Supersedes.String() + ")"
		if ok {
			was = d.tm(old.OccurredAt) + " " + summary(old)
		}
		now := d.tm(e.OccurredAt) + " " + summary(e)
		if e.Void {
			now = "VOIDED"
		}
		rows = append(rows, []cell{c(d.tm(e.RecordedAt)), {text: was, struck: true}, c(now), c(or(e.Reason, "—")), c(e.Author)})
	}
	d.table([]column{{"Corrected", 1.2}, {"Superseded value (struck through)", 3.4}, {"Now", 3.4}, {"Reason", 2.6}, {"By", 1.4}}, rows)
	d.color(90, 90, 90)
	d.para(6.5, "A correction never removes the value it replaces: the superseded value stays in the record and on this page, struck through, with who corrected it, when and why.")
	d.color(0, 0, 0)
}

func (d *doc) addenda() {
	d.section("Addenda")
	var rows [][]cell
	for _, e := range d.cur {
		if a := e.Detail.Addendum; a != nil {
			rows = append(rows, []cell{c(d.full(e.RecordedAt)), c(a.Text), c(a.Reason), c(e.Author)})
		}
	}
	d.table([]column{{"Added", 2}, {"Addendum", 5}, {"Reason", 3}, {"By", 1.6}}, rows)
}

func (d *doc) signatures() {
	d.section("Signatures")
	sigs := d.in.Case.Signatures
	if d.in.Draft() {
		sigs = nil
	}
	if len(sigs) == 0 {
		d.para(8, "none: the record is not signed")
	}
	for i, s := range sigs {
		// One block per signature, the hash on a line of its own so it is
		// never broken across lines.
		d.need(12)
		d.para(8.5, fmt.Sprintf("%d. %s (%s) — %s — %s", i+1, s.DisplayName, s.Signer, s.Meaning, d.full(s.SignedAt)))
		d.color(60, 60, 60)
		d.para(7.5, fmt.Sprintf("      covers ledger link %d, hash %s", s.CoversSeq, s.CoversHash))
		d.color(0, 0, 0)
		d.f.Ln(1)
	}
	d.section("Ledger head and verification")
	h := d.in.Head
	what := fmt.Sprintf("This document is version %d of the record: it shows the record as it stood at ledger link %d (%s, %s).",
		d.in.Version, h.Seq, human(string(h.Kind)), d.full(h.RecordedAt))
	if d.in.Draft() {
		what = fmt.Sprintf("DRAFT: this document shows an unsigned record as it stood at ledger link %d (%s). It is not the legal record.",
			h.Seq, d.full(h.RecordedAt))
	}
	d.para(8, what)
	d.f.Ln(1)
	d.para(8, "Ledger head hash (SHA-256):")
	d.para(9, h.Hash.String())
	d.f.Ln(1)
	d.para(8, "Every write to the record is a link of a hash chain. To check that the record held by the service still ends in this link, and that the chain matches the service's signed checkpoint log, run:")
	d.para(9, fmt.Sprintf(VerifyCommand, d.in.Case.ID))
	d.para(8, fmt.Sprintf("and compare link %d's hash with the one printed above.", h.Seq))
}
