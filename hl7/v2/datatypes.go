package v2

import (
	"errors"
	"math"
	"strconv"
	"time"
)

// Coding system names as HL7 table 0396 spells them, plus the local one.
const (
	SystemLOINC  = "LN"      // LOINC, for lab results
	SystemSNOMED = "SCT"     // SNOMED CT, for the procedure in OBR-4
	SystemMDC    = "MDC"     // IEEE 11073-10101, for device data
	SystemUCUM   = "UCUM"    // units
	SystemHL7357 = "HL70357" // HL7 table 0357, message error codes (ERR-3)
	// SystemLocal names this service's local codes, used where no standard
	// code exists. Every one of them is listed by LocalCodes.
	SystemLocal = "99PERF"
)

// HD is a hierarchic designator: an application, facility or assigning
// authority (MSH-3 to MSH-6, PID-3.4). Either NamespaceID alone (a local
// name) or UniversalID with UniversalIDType (an OID with "ISO", an EUI-64
// with "EUI-64") identifies it.
type HD struct {
	NamespaceID     string // HD-1, a local name
	UniversalID     string // HD-2, e.g. an OID
	UniversalIDType string // HD-3, e.g. ISO, EUI-64, DNS
}

func (h HD) field() Field { return Comps(h.NamespaceID, h.UniversalID, h.UniversalIDType) }

// component renders the HD as subcomponents, for HDs nested in a component
// (CX-4, PL-4).
func (h HD) component() Component { return Subs(h.NamespaceID, h.UniversalID, h.UniversalIDType) }

// EI is an entity identifier: an ID and the authority that assigned it.
// OBX-18 uses it to name the equipment that produced an observation.
type EI struct {
	EntityID        string // EI-1, e.g. a serial number or EUI-64
	NamespaceID     string // EI-2, e.g. the device model
	UniversalID     string // EI-3, e.g. the manufacturer's domain or the EUI-64
	UniversalIDType string // EI-4, e.g. DNS or EUI-64
}

// EUI64 returns the EI IHE PCD prefers for a device with an IEEE EUI-64
// (16 hex digits): the ID in both EI-1 and EI-3, type "EUI-64".
func EUI64(hex string) EI {
	return EI{EntityID: hex, UniversalID: hex, UniversalIDType: "EUI-64"}
}

func (e EI) field() Field { return Comps(e.EntityID, e.NamespaceID, e.UniversalID, e.UniversalIDType) }

// Code is a coded value (CWE): code, display text and coding system.
type Code struct {
	Code   string // CWE-1
	Text   string // CWE-2, the display text
	System string // CWE-3, e.g. LN, SCT, MDC, 99PERF
}

func (c Code) field() Field { return Comps(c.Code, c.Text, c.System) }

// ucum renders a UCUM unit for a summary OBX-6, where UCUM is the primary
// coding: "mmol/L^mmol/L^UCUM".
func ucum(unit string) Field { return Comps(unit, unit, SystemUCUM) }

// ucumAlt renders a UCUM unit for a PCD-01 OBX-6, where the first triplet
// is reserved for an MDC unit code and UCUM is the alternate:
// "^^^Cel^Cel^UCUM".
func ucumAlt(unit string) Field { return Comps("", "", "", unit, unit, SystemUCUM) }

// dtmLayout is DTM to the second with the zone offset IHE PCD requires.
const dtmLayout = "20060102150405-0700"

// FormatDTM formats t as an HL7 DTM to the second with its zone offset,
// in loc (UTC when nil, written +0000). The zero time formats as "".
func FormatDTM(t time.Time, loc *time.Location) string {
	if t.IsZero() {
		return ""
	}
	if loc == nil {
		loc = time.UTC
	}
	return t.In(loc).Format(dtmLayout)
}

// formatDate turns a YYYY-MM-DD date into HL7's YYYYMMDD.
func formatDate(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	d, err := time.Parse("2006-01-02", s)
	if err != nil {
		return "", errors.New("date must be YYYY-MM-DD")
	}
	return d.Format("20060102"), nil
}

// formatNumber writes a finite number in the shortest form that reads back
// to the same float64 (NM allows no exponent, so 'f').
func formatNumber(v float64) (string, error) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "", errors.New("number must be finite")
	}
	if v == 0 {
		v = 0 // no "-0"
	}
	return strconv.FormatFloat(v, 'f', -1, 64), nil
}

// formatAtResolution writes v with as many decimals as the device
// resolution has (0.01 → 2), keeping trailing zeros, because IHE PCD reads
// the digits after the point as the precision of the measurement. A value
// that is not on the resolution's grid is written exactly instead.
func formatAtResolution(v, resolution float64) (string, error) {
	s, err := formatNumber(v)
	if err != nil || resolution <= 0 || resolution >= 1 {
		return s, err
	}
	decimals := int(math.Ceil(-math.Log10(resolution) - 1e-9))
	f := strconv.FormatFloat(v, 'f', decimals, 64)
	if back, _ := strconv.ParseFloat(f, 64); back != v {
		return s, nil
	}
	if v == 0 {
		f = strconv.FormatFloat(0, 'f', decimals, 64) // no "-0.00"
	}
	return f, nil
}
