package charting

import (
	"sort"
	"testing"
)

// dictionaryLOINC is the LOINC table of the data dictionary
// (docs/domain.md, "Interoperability") with its marks: true [R] read in a source,
// false [V] to verify. 15074-8 (glucose, molar) is named by issue 18 and
// is not yet in that table; it is [V] here.
var dictionaryLOINC = map[string]bool{
	"2744-1": true, "2019-8": true, "2703-7": true, "1959-6": true, "1960-4": false,
	"1925-7": true, "11555-0": true, "2708-6": true, "19224-5": true, "2711-0": true,
	"4544-3": false, "20570-8": false, "718-7": false, "30313-1": true, "6298-4": false,
	"2823-3": true, "2947-0": true, "47596-2": true, "1994-3": false, "2339-0": false,
	"32693-4": false, "2518-9": false, "3184-9": true, "15074-8": false,
}

// TestAnalyteCodesBySite is the table of every analyte × sample site: the
// code it goes out with ("" = a local code, the dictionary having none for
// the site) and its unit. A venous sample never carries an arterial code;
// glucose in mmol/L carries the molar code.
func TestAnalyteCodesBySite(t *testing.T) {
	type row struct{ art, ven, mv, capi, none, unit string }
	want := map[string]row{
		"ph":      {"2744-1", "", "", "", "2744-1", "[pH]"},
		"pco2":    {"2019-8", "", "", "", "2019-8", "mm[Hg]"},
		"po2":     {"2703-7", "", "", "", "2703-7", "mm[Hg]"},
		"hco3":    {"1960-4", "1959-6", "1959-6", "1959-6", "1960-4", "mmol/L"},
		"be":      {"1925-7", "11555-0", "11555-0", "11555-0", "1925-7", "mmol/L"},
		"sao2":    {"2708-6", "2711-0", "19224-5", "", "2708-6", "%"},
		"svo2":    {"2708-6", "2711-0", "19224-5", "", "19224-5", "%"},
		"hct":     {"20570-8", "20570-8", "20570-8", "20570-8", "20570-8", "%"},
		"hb":      {"30313-1", "718-7", "718-7", "718-7", "718-7", "g/dL"},
		"k":       {"6298-4", "6298-4", "6298-4", "6298-4", "6298-4", "mmol/L"},
		"na":      {"2947-0", "2947-0", "2947-0", "2947-0", "2947-0", "mmol/L"},
		"ica":     {"47596-2", "47596-2", "47596-2", "47596-2", "47596-2", "mmol/L"},
		"glucose": {"15074-8", "15074-8", "15074-8", "15074-8", "15074-8", "mmol/L"},
		"lactate": {"2518-9", "32693-4", "32693-4", "32693-4", "32693-4", "mmol/L"},
		"act":     {"3184-9", "3184-9", "3184-9", "3184-9", "3184-9", "s"},
	}
	arterial := map[string]bool{"2744-1": true, "2019-8": true, "2703-7": true, "1960-4": true, "1925-7": true,
		"2708-6": true, "30313-1": true, "2518-9": true}
	got := Analytes()
	if len(got) != len(want) {
		t.Errorf("%d analytes, the table has %d", len(got), len(want))
	}
	for key, w := range want {
		a, ok := got[key]
		if !ok {
			t.Errorf("%s: not in the catalogue", key)
			continue
		}
		if a.Unit != w.unit {
			t.Errorf("%s: unit %q, want %q", key, a.Unit, w.unit)
		}
		if len(a.Codes) != len(SampleSites) {
			t.Errorf("%s: codes for %d sites, want %d", key, len(a.Codes), len(SampleSites))
		}
		for site, code := range map[string]string{"arterial": w.art, "venous": w.ven, "mixed_venous": w.mv, "capillary": w.capi, "": w.none} {
			c, ok := a.Code(site)
			if !ok {
				t.Errorf("%s/%s: no code", key, site)
				continue
			}
			if c.LOINC != code {
				t.Errorf("%s/%s: LOINC %q, want %q", key, site, c.LOINC, code)
			}
			if c.Name == "" {
				t.Errorf("%s/%s: no display name", key, site)
			}
			if site != "arterial" && site != "" && arterial[c.LOINC] {
				t.Errorf("%s/%s: a %s sample under the arterial code %s", key, site, site, c.LOINC)
			}
			if c.LOINC == "" {
				continue
			}
			mark, ok := dictionaryLOINC[c.LOINC]
			if !ok {
				t.Errorf("%s/%s: %s is not in the data dictionary", key, site, c.LOINC)
			}
			if c.Verified != mark {
				t.Errorf("%s/%s: %s verified=%v, the dictionary marks it [R]=%v", key, site, c.LOINC, c.Verified, mark)
			}
		}
	}
	// The mass-per-volume glucose code must not come back with a molar unit.
	for _, a := range got {
		for site, c := range a.Codes {
			if c.LOINC == "2339-0" && a.Unit == "mmol/L" {
				t.Errorf("%s/%s: 2339-0 is glucose mass/volume, the unit is mmol/L", a.Key, site)
			}
		}
	}
	// Local codes of sites without a dictionary code are distinct.
	seen := map[string]bool{}
	keys := make([]string, 0, len(got))
	for k := range got {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, site := range SampleSites {
			lc := got[k].LocalCode(site)
			if seen[lc] {
				t.Errorf("local code %s twice", lc)
			}
			seen[lc] = true
		}
	}
}
