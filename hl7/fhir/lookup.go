package fhir

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"perfusion/charting"
)

// Lookup reads patients and their encounters from the EHR's FHIR R4 server
// by MRN: a search on Patient.identifier (system|value, the system the
// site configured for the MRN's assigning authority), then on Encounter
// by subject. Nothing it reads is stored or logged; errors name what
// failed, never what was asked or answered.
type Lookup struct {
	base       string
	client     *http.Client
	systems    map[string]string // assigning authority → identifier system
	encounters string            // identifier system of visit numbers
	tokenFile  string
}

// LookupConfig configures a Lookup.
type LookupConfig struct {
	// BaseURL is the FHIR R4 base (http or https).
	BaseURL string
	// MRNSystems maps assigning authorities to identifier systems, as
	// Options.MRNSystems does for the exports.
	MRNSystems map[string]string
	// EncounterSystem is the identifier system of visit numbers; the
	// encounter id returned is the identifier of this system, else the
	// first one.
	EncounterSystem string
	// BearerTokenFile, when set, holds an OAuth bearer token, read again
	// on every call.
	BearerTokenFile string
	// Client is the HTTP client; nil means one with a 10 s timeout.
	Client *http.Client
}

// Lookup errors.
var (
	ErrPatientNotFound   = errors.New("fhir: the EHR has no patient with this identifier")
	ErrPatientAmbiguous  = errors.New("fhir: the EHR has several patients with this identifier")
	ErrLookupUnavailable = errors.New("fhir: the EHR's FHIR server did not answer")
	ErrUnknownAuthority  = errors.New("fhir: no identifier system is configured for this assigning authority")
)

// NewLookup checks cfg and returns a Lookup.
func NewLookup(cfg LookupConfig) (*Lookup, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("fhir: lookup: the base URL must be http or https")
	}
	c := cfg.Client
	if c == nil {
		c = &http.Client{Timeout: 10 * time.Second}
	}
	return &Lookup{base: strings.TrimRight(cfg.BaseURL, "/"), client: c, systems: cfg.MRNSystems, encounters: cfg.EncounterSystem, tokenFile: cfg.BearerTokenFile}, nil
}

// PatientMatch is what the EHR knows of a patient.
type PatientMatch struct {
	// FHIRID is the Patient resource's id.
	FHIRID string
	// Patient holds the identity (MRN and authority as asked), names,
	// birth date and sex; never body measures (measured for the case).
	Patient charting.Patient
	// Encounters are the patient's visits, most recent first, at most 10.
	Encounters []EncounterSummary
}

// EncounterSummary is one visit of a PatientMatch.
type EncounterSummary struct {
	ID, Status, Class, Location string
	Start, End                  time.Time
}

// maxLookupResponse bounds what is read of one answer.
const maxLookupResponse = 4 << 20

// Patient finds the patient with the MRN of the assigning authority
// (authority "": the only configured system, or none: any system) and
// their encounters.
func (l *Lookup) Patient(ctx context.Context, authority, mrn string) (*PatientMatch, error) {
	if mrn == "" {
		return nil, errors.New("fhir: lookup: an MRN is required")
	}
	system := ""
	switch {
	case authority != "":
		s, ok := l.systems[authority]
		if !ok {
			return nil, ErrUnknownAuthority
		}
		system = s
	case len(l.systems) == 1:
		for a, s := range l.systems {
			authority, system = a, s
		}
	case len(l.systems) > 1:
		return nil, ErrUnknownAuthority
	}
	ident := mrn
	if system != "" {
		ident = system + "|" + mrn
	}
	var bundle searchBundle
	if err := l.get(ctx, "Patient?"+url.Values{"identifier": {ident}}.Encode(), &bundle); err != nil {
		return nil, err
	}
	var pats []patientResource
	for _, e := range bundle.Entry {
		var p patientResource
		if json.Unmarshal(e.Resource, &p) == nil && p.ResourceType == "Patient" && (e.Search.Mode == "" || e.Search.Mode == "match") {
			pats = append(pats, p)
		}
	}
	switch len(pats) {
	case 0:
		return nil, ErrPatientNotFound
	case 1:
	default:
		return nil, ErrPatientAmbiguous
	}
	p := pats[0]
	out := &PatientMatch{FHIRID: p.ID, Patient: charting.Patient{MRN: mrn, MRNAssigningAuthority: authority, BirthDate: p.BirthDate}}
	switch p.Gender {
	case "female", "male", "other", "unknown":
		out.Patient.Sex = p.Gender
	}
	if _, err := time.Parse(time.DateOnly, p.BirthDate); err != nil {
		out.Patient.BirthDate = "" // a partial date (YYYY, YYYY-MM) the record cannot hold
	}
	out.Patient.FamilyName, out.Patient.GivenName = p.name()
	if p.ID == "" {
		return out, nil
	}
	var encs searchBundle
	if err := l.get(ctx, "Encounter?"+url.Values{"subject": {"Patient/" + p.ID}, "_sort": {"-date"}, "_count": {"10"}}.Encode(), &encs); err != nil {
		return nil, err
	}
	for _, e := range encs.Entry {
		var r encounterResource
		if json.Unmarshal(e.Resource, &r) != nil || r.ResourceType != "Encounter" {
			continue
		}
		out.Encounters = append(out.Encounters, r.summary(l.encounters))
	}
	slices.SortStableFunc(out.Encounters, func(a, b EncounterSummary) int { return b.Start.Compare(a.Start) })
	if len(out.Encounters) > 10 {
		out.Encounters = out.Encounters[:10]
	}
	return out, nil
}

func (l *Lookup) get(ctx context.Context, path string, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.base+"/"+path, nil)
	if err != nil {
		return fmt.Errorf("fhir: lookup: %w", err)
	}
	req.Header.Set("Accept", "application/fhir+json")
	if l.tokenFile != "" {
		b, err := os.ReadFile(l.tokenFile)
		if tok := strings.TrimSpace(string(b)); err != nil || tok == "" || strings.ContainsAny(tok, " \r\n\t") {
			return fmt.Errorf("%w: the bearer token file is unreadable or empty", ErrLookupUnavailable)
		} else {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
	}
	resp, err := l.client.Do(req)
	if err != nil {
		// The error names the URL, which holds the MRN: not repeated.
		return fmt.Errorf("%w: the request failed", ErrLookupUnavailable)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxLookupResponse))
	if err != nil {
		return fmt.Errorf("%w: the answer could not be read", ErrLookupUnavailable)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: it answered HTTP %d", ErrLookupUnavailable, resp.StatusCode)
	}
	if err := json.Unmarshal(body, into); err != nil {
		return fmt.Errorf("%w: the answer is not a FHIR JSON Bundle", ErrLookupUnavailable)
	}
	return nil
}

type searchBundle struct {
	ResourceType string `json:"resourceType"`
	Entry        []struct {
		Resource json.RawMessage `json:"resource"`
		Search   struct {
			Mode string `json:"mode"`
		} `json:"search"`
	} `json:"entry"`
}

type humanName struct {
	Use    string   `json:"use"`
	Text   string   `json:"text"`
	Family string   `json:"family"`
	Given  []string `json:"given"`
}

type patientResource struct {
	ResourceType string      `json:"resourceType"`
	ID           string      `json:"id"`
	Name         []humanName `json:"name"`
	Gender       string      `json:"gender"`
	BirthDate    string      `json:"birthDate"`
}

// name picks the official name, else usual, else the first.
func (p patientResource) name() (family, given string) {
	if len(p.Name) == 0 {
		return "", ""
	}
	n := p.Name[0]
	for _, use := range []string{"official", "usual"} {
		if i := slices.IndexFunc(p.Name, func(h humanName) bool { return h.Use == use }); i >= 0 {
			n = p.Name[i]
			break
		}
	}
	return strings.TrimSpace(n.Family), strings.TrimSpace(strings.Join(n.Given, " "))
}

type encounterResource struct {
	ResourceType string `json:"resourceType"`
	ID           string `json:"id"`
	Identifier   []struct {
		System string `json:"system"`
		Value  string `json:"value"`
	} `json:"identifier"`
	Status string `json:"status"`
	Class  struct {
		Code string `json:"code"`
	} `json:"class"`
	Period struct {
		Start string `json:"start"`
		End   string `json:"end"`
	} `json:"period"`
	Location []struct {
		Location struct {
			Display string `json:"display"`
		} `json:"location"`
	} `json:"location"`
}

func (r encounterResource) summary(system string) EncounterSummary {
	e := EncounterSummary{Status: r.Status, Class: r.Class.Code}
	for i, id := range r.Identifier {
		if i == 0 || system != "" && id.System == system {
			e.ID = id.Value
		}
	}
	if len(r.Location) > 0 {
		e.Location = r.Location[0].Location.Display
	}
	e.Start, e.End = parseFHIRTime(r.Period.Start), parseFHIRTime(r.Period.End)
	return e
}

// parseFHIRTime reads a FHIR dateTime (a full instant, or a date), zero when
// it is neither.
func parseFHIRTime(s string) time.Time {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", time.DateOnly} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC()
		}
	}
	return time.Time{}
}
