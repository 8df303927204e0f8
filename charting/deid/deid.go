// Package deid turns cases into de-identified registry records under the
// HIPAA Safe Harbor method: no names, MRNs, encounter ids, exact dates (the
// year only), ages over 89 (they become "90+"), device identifiers (serial,
// lot, UDI, model) or free text (notes, comments, descriptions) leave the
// service. Clinical times become minutes from the start of bypass. Each case
// is named by a pseudonym, an HMAC-SHA256 of its id under an export key, so
// repeated extracts with the same key line up while the pseudonym reveals
// nothing without the key.
//
// A Record is built field by field from an allow-list: nothing of a case
// reaches it unless a line here copies it, so a new identifying field added
// to the case later cannot leak by default.
package deid

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math"
	"slices"
	"strconv"
	"time"

	"perfusion/charting"
	"perfusion/charting/csvsafe"
)

// MinKeyLen is the shortest export key accepted: 32 bytes, the HMAC-SHA256
// block-size guidance for full strength.
const MinKeyLen = 32

// Pseudonymizer names cases by a keyed hash. The key is a secret of the
// deployment; it is never logged or exported.
type Pseudonymizer struct {
	key []byte
}

// NewPseudonymizer returns a pseudonymizer for key.
func NewPseudonymizer(key []byte) (*Pseudonymizer, error) {
	if len(key) < MinKeyLen {
		return nil, errors.New("deid: the export key must be at least 32 bytes")
	}
	return &Pseudonymizer{key: slices.Clone(key)}, nil
}

// Pseudonym returns the case's stable pseudonym: the first 16 bytes of
// HMAC-SHA256(key, "perfusion.case.v1:" + case id), as hex.
func (p *Pseudonymizer) Pseudonym(c *charting.Case) string {
	m := hmac.New(sha256.New, p.key)
	m.Write([]byte("perfusion.case.v1:"))
	m.Write([]byte(c.ID.String()))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// Event is one timed event, as minutes from bypass start.
type Event struct {
	Type string `json:"type"`
	// Minute from the first bypass_on (negative before it); from the
	// case's first event when no bypass was charted.
	Minute float64 `json:"minute"`
}

// Record is one de-identified case.
type Record struct {
	Case          string  `json:"case"`
	Year          int     `json:"year"`
	Kind          string  `json:"kind"`
	Status        string  `json:"status"`
	Age           string  `json:"age,omitempty"` // whole years at the scheduled start; "90+" above 89
	Sex           string  `json:"sex,omitempty"`
	HeightCm      float64 `json:"height_cm,omitempty"`
	WeightKg      float64 `json:"weight_kg,omitempty"`
	BSAFormula    string  `json:"bsa_formula,omitempty"`
	NadirTempSite string  `json:"nadir_temp_site,omitempty"`
	Definitions   int     `json:"definitions_version"`
	// Population names the patient population whose thresholds the
	// metrics used; empty for the site's own. Metrics of different
	// populations were measured against different thresholds.
	Population string             `json:"metrics_population,omitempty"`
	Metrics    map[string]float64 `json:"metrics"`
	Events     []Event            `json:"events,omitempty"`
}

// Build de-identifies one case. entries are all of the case's entries
// (corrections are applied); metrics are its stored metrics; only names
// in keep are exported (nil keeps all).
func (p *Pseudonymizer) Build(c *charting.Case, entries []charting.Entry, m charting.Metrics, keep []string) Record {
	pt := c.Details.Patient
	r := Record{
		Case: p.Pseudonym(c), Year: c.ScheduledStart.UTC().Year(), Kind: string(c.Kind), Status: string(c.Status),
		Age: Age(pt.BirthDate, c.ScheduledStart), Sex: sexCode(pt.Sex), HeightCm: pt.HeightCm, WeightKg: pt.WeightKg,
		BSAFormula: string(m.BSAFormula), NadirTempSite: m.NadirTempSite, Definitions: m.Version, Population: m.Population,
		Metrics: map[string]float64{},
	}
	for k, v := range m.Values {
		if keep == nil || slices.Contains(keep, k) {
			r.Metrics[k] = v
		}
	}
	cur := charting.CurrentView(entries, false)
	origin := m.BypassStart
	for _, e := range cur {
		if e.Detail.Event == nil {
			continue
		}
		if origin.IsZero() {
			origin = e.OccurredAt
		}
		// Only the enumerated type: comments are free text.
		r.Events = append(r.Events, Event{Type: e.Detail.Event.Type,
			Minute: math.Round(e.OccurredAt.Sub(origin).Minutes()*100) / 100})
	}
	return r
}

// sexCode passes only the dictionary's codes: anything else could be free
// text.
func sexCode(s string) string {
	if slices.Contains([]string{"female", "male", "other", "unknown"}, s) {
		return s
	}
	return ""
}

// Age returns whole years from birth (YYYY-MM-DD) to at, "90+" above 89,
// "" when unknown.
func Age(birth string, at time.Time) string {
	b, err := time.Parse("2006-01-02", birth)
	if err != nil || at.IsZero() || at.Before(b) {
		return ""
	}
	at = at.UTC()
	years := at.Year() - b.Year()
	if at.Month() < b.Month() || (at.Month() == b.Month() && at.Day() < b.Day()) {
		years--
	}
	if years > 89 {
		return "90+"
	}
	return strconv.Itoa(years)
}

// WriteNDJSON writes one record as a JSON line.
func WriteNDJSON(w io.Writer, r Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// CSVWriter writes records as CSV with a fixed column set: the record's
// scalar fields, then one column per metric. Events are NDJSON only.
type CSVWriter struct {
	w       *csvsafe.Writer
	metrics []string
	header  bool
}

// NewCSVWriter writes to w with the given metric columns.
func NewCSVWriter(w io.Writer, metrics []string) *CSVWriter {
	return &CSVWriter{w: csvsafe.NewWriter(w), metrics: metrics}
}

// Write writes one record (the header first, once).
func (c *CSVWriter) Write(r Record) error {
	if !c.header {
		c.header = true
		h := append([]string{"case", "year", "kind", "status", "age", "sex", "height_cm", "weight_kg",
			"bsa_formula", "nadir_temp_site", "definitions_version", "metrics_population"}, c.metrics...)
		if err := c.w.Write(h); err != nil {
			return err
		}
	}
	row := []string{r.Case, strconv.Itoa(r.Year), r.Kind, r.Status, r.Age, r.Sex, num(r.HeightCm, r.HeightCm != 0),
		num(r.WeightKg, r.WeightKg != 0), r.BSAFormula, r.NadirTempSite, strconv.Itoa(r.Definitions), r.Population}
	for _, m := range c.metrics {
		v, ok := r.Metrics[m]
		row = append(row, num(v, ok))
	}
	if err := c.w.Write(row); err != nil {
		return err
	}
	c.w.Flush()
	return c.w.Error()
}

func num(v float64, ok bool) string {
	if !ok {
		return ""
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}
