package fhir

import (
	"encoding/json"
	"strings"
	"testing"

	"perfusion/charting"
	v2 "perfusion/hl7/v2"
)

// knownCodes lists every (system, code) the bundles may carry, each from
// its source: SNOMED CT and LOINC codes from docs/domain.md, "Interoperability"
// (via charting.Analytes and v2.ProcedureCode), MDC and local codes from
// the catalogue and v2.LocalCodes, FHIR's own code systems from the R4
// specification. A code outside it was invented here.
func knownCodes() map[string]map[string]bool {
	k := map[string]map[string]bool{}
	add := func(sys string, codes ...string) {
		if k[sys] == nil {
			k[sys] = map[string]bool{}
		}
		for _, c := range codes {
			k[sys][c] = true
		}
	}
	for _, kind := range []charting.Kind{charting.KindCPB, charting.KindECMO} {
		c, _ := v2.ProcedureCode(kind)
		add(SystemSNOMED, c.Code)
	}
	add(SystemSNOMED, codeCrossClampPlacement, codeCrossClampRemoval, codeCardioplegia)
	add(SystemLOINC, codeProcedureNote)
	for _, a := range charting.Analytes() {
		for _, c := range a.Codes {
			if c.LOINC != "" {
				add(SystemLOINC, c.LOINC)
			}
		}
	}
	for _, ch := range charting.DefaultCatalogue().Channels() {
		if ch.CodeSystem == "MDC" {
			add(SystemMDC, ch.Code)
		}
	}
	for _, lc := range v2.LocalCodes(nil) {
		add(LocalSystem, lc.Code)
	}
	for _, st := range SignatureTypes {
		add(SystemSignatureType, st.Code)
		add(systemParticipant, st.AgentRole)
	}
	add(systemV3Participant, "DEV")
	// R4 v3-ActEncounterCode (Encounter.class): the inpatient encounter of
	// PV1-2 "I".
	add(systemActCode, "IMP")
	add(systemObsCategory, "laboratory", "procedure")
	add(systemIdentifierType, "MR")
	return k
}

// TestGoldenCodesKnown walks every Coding in the golden bundles: its
// system and code must be known (see knownCodes), and UCUM codes must
// equal the unit text the record uses. The R4 validator checks structure,
// not terminology, so this is where an invented code is caught.
func TestGoldenCodesKnown(t *testing.T) {
	known := knownCodes()
	units := map[string]bool{}
	for _, ch := range charting.DefaultCatalogue().Channels() {
		units[ch.Unit] = true
	}
	for _, a := range charting.Analytes() {
		units[a.Unit] = true
	}
	for _, lc := range v2.LocalCodes(nil) {
		units[lc.Unit] = true
	}
	for _, u := range []string{"[iU]", "mg", "g", "{unit}"} { // drug doses in the reference case
		units[u] = true
	}
	seen := 0
	var walk func(name string, v any)
	walk = func(name string, v any) {
		switch x := v.(type) {
		case map[string]any:
			sys, _ := x["system"].(string)
			code, hasCode := x["code"].(string)
			if hasCode && sys != "" {
				seen++
				switch {
				case sys == ProvenanceTagSystem:
					// An identity, not a terminology code: a urn:uuid.
					if !strings.HasPrefix(code, "urn:uuid:") {
						t.Errorf("%s: Provenance tag %q is not a urn:uuid", name, code)
					}
				case sys == SystemUCUM:
					if !units[code] {
						t.Errorf("%s: unexpected UCUM unit %q", name, code)
					}
				case !known[sys][code]:
					t.Errorf("%s: code %s|%s is not from a known source", name, sys, code)
				}
			}
			for _, c := range x {
				walk(name, c)
			}
		case []any:
			for _, c := range x {
				walk(name, c)
			}
		}
	}
	for name, b := range goldenBundles(t) {
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatal(err)
		}
		walk(name, v)
	}
	if seen < 100 {
		t.Errorf("only %d codings seen; the walk is not looking", seen)
	}
}

// TestStatuses checks required-binding codes the validator does not: the
// statuses and genders this package writes.
func TestStatuses(t *testing.T) {
	allowed := map[string]map[string]bool{
		"Procedure":                {"completed": true},
		"Observation":              {"final": true, "corrected": true},
		"MedicationAdministration": {"completed": true},
		"Composition":              {"final": true},
		"Device":                   {"active": true},
		// R4 EncounterStatus: the document does not know the EHR's state.
		"Encounter":         {"unknown": true},
		"DocumentReference": {"current": true}, // document-reference-status
	}
	for name, b := range goldenBundles(t) {
		var bundle struct {
			Entry []struct {
				Resource map[string]any `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(b, &bundle); err != nil {
			t.Fatal(err)
		}
		for i, e := range bundle.Entry {
			rt, _ := e.Resource["resourceType"].(string)
			if st, ok := e.Resource["status"].(string); ok && !allowed[rt][st] {
				t.Errorf("%s entry %d: %s.status %q", name, i, rt, st)
			}
			if ds, ok := e.Resource["docStatus"].(string); ok && ds != "final" && ds != "amended" {
				t.Errorf("%s entry %d: docStatus %q", name, i, ds) // composition-status
			}
			if g, ok := e.Resource["gender"].(string); ok && g != "female" && g != "male" && g != "other" && g != "unknown" {
				t.Errorf("%s entry %d: gender %q", name, i, g)
			}
		}
	}
}
