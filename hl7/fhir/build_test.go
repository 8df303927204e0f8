package fhir

import (
	"maps"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
)

func TestECMOProcedureCode(t *testing.T) {
	rec := refRecord()
	rec.Case.Kind = charting.KindECMO
	b, err := BuildDocument(rec, refOptions())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range b.Entry {
		if p, ok := e.Resource.(*Procedure); ok && p.PartOf == nil {
			if got := p.Code.Coding[0].Code; got != "233573008" {
				t.Errorf("ECMO run coded %s, want 233573008", got)
			}
			return
		}
	}
	t.Fatal("no run Procedure")
}

// TestRejects: inputs the builder must refuse, each with an error that
// names the field and carries no patient data.
func TestRejects(t *testing.T) {
	cases := map[string]func(*Record, *Options){
		"unsigned":           func(r *Record, _ *Options) { r.Case.Signatures = nil },
		"no version":         func(r *Record, _ *Options) { r.Version = 0 },
		"no timestamp":       func(r *Record, _ *Options) { r.Timestamp = zeroTime },
		"end before start":   func(r *Record, _ *Options) { r.BypassEnd = r.BypassStart.Add(-1) },
		"no MRN":             func(r *Record, _ *Options) { r.Case.Details.Patient.MRN = "" },
		"bad sex":            func(r *Record, _ *Options) { r.Case.Details.Patient.Sex = "F" },
		"bad birth date":     func(r *Record, _ *Options) { r.Case.Details.Patient.BirthDate = "14.03.1956" },
		"no staff system":    func(_ *Record, o *Options) { o.StaffSystem = "" },
		"no encounter sys":   func(_ *Record, o *Options) { o.EncounterSystem = "" },
		"unknown analyte":    func(r *Record, _ *Options) { r.Entries[1].Detail.LabResult.Analyte = "troponin" },
		"void entry":         func(r *Record, _ *Options) { r.Entries[0].Void = true },
		"unknown metric":     func(r *Record, _ *Options) { r.Metrics[0].Key = "nope" },
		"duplicate metric":   func(r *Record, _ *Options) { r.Metrics[1].Key = r.Metrics[0].Key },
		"unknown channel":    func(r *Record, _ *Options) { r.Trends[0].Series.Channel = "nope" },
		"unknown source":     func(r *Record, _ *Options) { r.Trends[0].SourceID = "nope" },
		"off grid":           func(r *Record, _ *Options) { r.Trends[0].Series.TimesMs[1]++ },
		"no period":          func(r *Record, _ *Options) { r.Trends[0].PeriodMs = 0 },
		"device without id":  func(r *Record, _ *Options) { r.Devices[0].Identifier.Value = "" },
		"unknown meaning":    func(r *Record, _ *Options) { r.Case.Signatures[0].Meaning = "witnessed" },
		"perfusionist no id": func(r *Record, _ *Options) { r.Case.Details.Team.Perfusionists[0].StaffID = "" },
		"nil case id":        func(r *Record, _ *Options) { r.Case.ID = uuid.Nil },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			rec, opts := refRecord(), refOptions()
			mutate(rec, &opts)
			for _, build := range []func(*Record, Options) (*Bundle, error){BuildDocument, BuildTransaction} {
				_, err := build(rec, opts)
				if err == nil {
					t.Fatal("accepted")
				}
				p := refCase().Details.Patient
				for _, s := range []string{p.MRN, p.FamilyName, p.GivenName, p.BirthDate} {
					if strings.Contains(err.Error(), s) {
						t.Errorf("error %q carries patient data", err)
					}
				}
			}
		})
	}
}

var zeroTime time.Time

// TestLabCodesFollowSite: a lab Observation is coded by analyte and sample
// site as in the v2 summary: glucose molar, a venous pH under the local
// venous code (the dictionary has no venous pH code), never 2744-1.
func TestLabCodesFollowSite(t *testing.T) {
	rec := refRecord()
	g := lab(0x60, "09:15", "glucose", 7.2, "mmol/L", "")
	p := lab(0x61, "09:15", "ph", 7.35, "[pH]", "")
	p.Detail.LabResult.Site = "venous"
	h := lab(0x62, "09:15", "hb", 9.1, "g/dL", "")
	h.Detail.LabResult.Site = "venous"
	rec.Entries = append(rec.Entries, g, p, h)
	b, err := BuildDocument(rec, refOptions())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"glucose": "http://loinc.org|15074-8", "ph/venous": LocalSystem + "|lab_ph_venous", "hb/venous": "http://loinc.org|718-7"}
	got := map[string]string{}
	for _, e := range b.Entry {
		o, ok := e.Resource.(*Observation)
		if !ok || o.ValueQuantity == nil || o.ValueQuantity.Value == nil {
			continue
		}
		c := o.Code.Coding[0]
		switch {
		case *o.ValueQuantity.Value == 7.2 && c.System != LocalSystem:
			got["glucose"] = c.System + "|" + c.Code
		case *o.ValueQuantity.Value == 7.35:
			got["ph/venous"] = c.System + "|" + c.Code
		case *o.ValueQuantity.Value == 9.1:
			got["hb/venous"] = c.System + "|" + c.Code
		}
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s coded %q, want %q", k, got[k], w)
		}
	}
}

// TestSignerStaffID: Provenance agent, signature who and Composition author
// carry the signer's staff id (Signature.StaffID) under the staff
// identifier system, not the login name.
func TestSignerStaffID(t *testing.T) {
	rec := refRecord()
	for i := range rec.Case.Signatures {
		rec.Case.Signatures[i].StaffID = "S-" + rec.Case.Signatures[i].Signer
	}
	b, err := BuildDocument(rec, refOptions())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range b.Entry {
		switch r := e.Resource.(type) {
		case *Provenance:
			for _, ref := range []Reference{r.Agent[0].Who, r.Signature[0].Who} {
				n++
				if ref.Identifier == nil || !strings.HasPrefix(ref.Identifier.Value, "S-") {
					t.Errorf("Provenance signer %+v, want the staff id", ref.Identifier)
				}
			}
		case *Composition:
			n++
			if id := r.Author[0].Identifier; id == nil || !strings.HasPrefix(id.Value, "S-") {
				t.Errorf("Composition author %+v, want the staff id", id)
			}
		}
	}
	if n < 3 {
		t.Fatalf("checked %d signer references", n)
	}
}

// TestProvenanceConditionalCreate: a resend of the transaction (of the
// same version or after an addendum) must not create a signature's
// Provenance again. Each Provenance carries a stable identity (a meta.tag:
// R4 Provenance has no identifier) and is a conditional create on it; no
// entry of the transaction is an unconditional create.
func TestProvenanceConditionalCreate(t *testing.T) {
	tags := func(rec *Record) map[string]string { // tag code → ifNoneExist
		t.Helper()
		b, err := BuildTransaction(rec, refOptions())
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for i, e := range b.Entry {
			if e.Request.Method == "POST" && e.Request.IfNoneExist == "" {
				t.Errorf("entry %d (%s): an unconditional create", i, e.Request.URL)
			}
			p, ok := e.Resource.(*Provenance)
			if !ok {
				continue
			}
			if p.Meta == nil || len(p.Meta.Tag) != 1 || p.Meta.Tag[0].System != ProvenanceTagSystem || p.Meta.Tag[0].Code == "" {
				t.Fatalf("entry %d: Provenance without its identity tag: %+v", i, p.Meta)
			}
			tag := p.Meta.Tag[0]
			want := "_tag=" + url.QueryEscape(tag.System+"|"+tag.Code)
			if e.Request.IfNoneExist != want {
				t.Errorf("entry %d: Provenance ifNoneExist %q, want %q", i, e.Request.IfNoneExist, want)
			}
			if _, dup := out[tag.Code]; dup {
				t.Errorf("entry %d: Provenance tag repeated", i)
			}
			out[tag.Code] = e.Request.IfNoneExist
		}
		return out
	}
	first, again, amended := tags(refRecord()), tags(refRecord()), tags(refAmended())
	if len(first) == 0 || !maps.Equal(first, again) {
		t.Fatalf("Provenance identities differ between two renders of one version: %v, %v", first, again)
	}
	for code, q := range first {
		if amended[code] != q {
			t.Errorf("Provenance %s lost its identity in the amended version", code)
		}
	}
}
