package fhir_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"perfusion/hl7/fhir"
)

// ehr is a FHIR R4 server answering Patient and Encounter searches from
// fixed resources, recording what was asked.
type ehr struct {
	srv     *httptest.Server
	mu      sync.Mutex
	queries []string
	auth    []string
	status  int
}

const patientBundle = `{"resourceType":"Bundle","type":"searchset","total":1,"entry":[
 {"fullUrl":"https://ehr.example/r4/Patient/p-42","search":{"mode":"match"},"resource":{"resourceType":"Patient","id":"p-42",
  "identifier":[{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR"}]},"system":"https://hosp.example/sid/mrn","value":"MRN-42"}],
  "name":[{"use":"nickname","given":["Bob"]},{"use":"official","family":"O'Brien","given":["Robert","James"]}],
  "gender":"male","birthDate":"1958-06-01"}},
 {"search":{"mode":"include"},"resource":{"resourceType":"Organization","id":"o-1"}}]}`

const encounterBundle = `{"resourceType":"Bundle","type":"searchset","entry":[
 {"resource":{"resourceType":"Encounter","id":"e-1","identifier":[{"system":"https://hosp.example/sid/other","value":"X-1"},{"system":"https://hosp.example/sid/visit","value":"V-100"}],
  "status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},"period":{"start":"2026-01-10T09:00:00+01:00","end":"2026-01-10T10:00:00+01:00"}}},
 {"resource":{"resourceType":"Encounter","id":"e-2","identifier":[{"system":"https://hosp.example/sid/visit","value":"V-200"}],
  "status":"in-progress","class":{"code":"IMP"},"period":{"start":"2026-12-06"},"location":[{"location":{"display":"Cardiac ICU bed 4"}}]}}]}`

func newEHR(t *testing.T, patients string) *ehr {
	e := &ehr{status: http.StatusOK}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.queries = append(e.queries, r.URL.Path+"?"+r.URL.RawQuery)
		e.auth = append(e.auth, r.Header.Get("Authorization"))
		st := e.status
		e.mu.Unlock()
		if r.Method != http.MethodGet || r.Header.Get("Accept") != "application/fhir+json" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/fhir+json")
		w.WriteHeader(st)
		switch {
		case strings.HasSuffix(r.URL.Path, "/Patient"):
			_, _ = w.Write([]byte(patients))
		case strings.HasSuffix(r.URL.Path, "/Encounter"):
			_, _ = w.Write([]byte(encounterBundle))
		}
	}))
	t.Cleanup(e.srv.Close)
	return e
}

func TestLookupPatient(t *testing.T) {
	ehr := newEHR(t, patientBundle)
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("tok-123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := fhir.NewLookup(fhir.LookupConfig{BaseURL: ehr.srv.URL + "/r4/", MRNSystems: map[string]string{"HOSP": "https://hosp.example/sid/mrn"},
		EncounterSystem: "https://hosp.example/sid/visit", BearerTokenFile: tok})
	if err != nil {
		t.Fatal(err)
	}
	m, err := l.Patient(context.Background(), "", "MRN-42")
	if err != nil {
		t.Fatal(err)
	}
	p := m.Patient
	if m.FHIRID != "p-42" || p.MRN != "MRN-42" || p.MRNAssigningAuthority != "HOSP" || p.FamilyName != "O'Brien" || p.GivenName != "Robert James" ||
		p.BirthDate != "1958-06-01" || p.Sex != "male" || p.HeightCm != 0 {
		t.Fatalf("patient %+v", m)
	}
	if len(m.Encounters) != 2 || m.Encounters[0].ID != "V-200" || m.Encounters[0].Location != "Cardiac ICU bed 4" || m.Encounters[0].Class != "IMP" ||
		m.Encounters[1].ID != "V-100" || m.Encounters[1].Start.Hour() != 8 || m.Encounters[1].End.IsZero() {
		t.Fatalf("encounters %+v", m.Encounters)
	}
	if len(ehr.queries) != 2 || ehr.queries[0] != "/r4/Patient?identifier=https%3A%2F%2Fhosp.example%2Fsid%2Fmrn%7CMRN-42" ||
		!strings.HasPrefix(ehr.queries[1], "/r4/Encounter?") || !strings.Contains(ehr.queries[1], "subject=Patient%2Fp-42") || ehr.auth[0] != "Bearer tok-123" {
		t.Fatalf("asked %q with %q", ehr.queries, ehr.auth)
	}

	if _, err := l.Patient(context.Background(), "OTHER", "MRN-42"); !errors.Is(err, fhir.ErrUnknownAuthority) {
		t.Fatalf("unknown authority: %v", err)
	}
	for body, want := range map[string]error{
		`{"resourceType":"Bundle","type":"searchset","total":0}`: fhir.ErrPatientNotFound,
		`{"resourceType":"Bundle","type":"searchset","entry":[{"resource":{"resourceType":"Patient","id":"a"}},{"resource":{"resourceType":"Patient","id":"b"}}]}`: fhir.ErrPatientAmbiguous,
		`<html>not FHIR</html>`: fhir.ErrLookupUnavailable,
	} {
		l2, _ := fhir.NewLookup(fhir.LookupConfig{BaseURL: newEHR(t, body).srv.URL, MRNSystems: map[string]string{"HOSP": "s"}})
		if _, err := l2.Patient(context.Background(), "HOSP", "MRN-42"); !errors.Is(err, want) {
			t.Fatalf("%s: %v, want %v", body, err, want)
		}
	}
	down := newEHR(t, patientBundle)
	down.status = http.StatusServiceUnavailable
	l3, _ := fhir.NewLookup(fhir.LookupConfig{BaseURL: down.srv.URL})
	_, err = l3.Patient(context.Background(), "", "MRN-42")
	if !errors.Is(err, fhir.ErrLookupUnavailable) || strings.Contains(err.Error(), "MRN-42") {
		t.Fatalf("server down: %v", err)
	}
	down.srv.Close()
	if _, err := l3.Patient(context.Background(), "", "MRN-42"); !errors.Is(err, fhir.ErrLookupUnavailable) || strings.Contains(err.Error(), "MRN-42") {
		t.Fatalf("server gone: %v", err)
	}
}
