package storetest

import (
	"context"
	"errors"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/store"
)

// clock is a settable server clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

const (
	actor    = "perfusionist-1"
	reviewer = "reviewer-7"
)

func sampleDetails() charting.Details {
	return charting.Details{
		Patient: charting.Patient{MRN: "MRN-TEST-0001", MRNAssigningAuthority: "HOSP", FamilyName: "Testpatient",
			GivenName: "Alex", BirthDate: "1961-04-02", Sex: "female", HeightCm: 170, WeightKg: 70},
		Team: charting.Team{Surgeon: charting.StaffMember{StaffID: "S1", DisplayName: "Dr Surgeon"},
			Perfusionists: []charting.StaffMember{{StaffID: "P1", DisplayName: "Pat Perfusionist"}}},
		Procedure: charting.Procedure{Description: "CABG x3"},
		Circuit:   charting.Circuit{ArterialPump: "centrifugal", Oxygenator: charting.Component{Model: "OXY-1", Lot: "L123"}},
		Prime:     charting.Prime{Components: []charting.PrimeComponent{{Name: "Plasma-Lyte A", VolumeML: 1200}}, RAPVolumeML: 400},
	}
}

// createCase creates a planned case scheduled a minute or two ago: strictly
// before any time the store's clock gives its writes, so a test that moves
// a stored time to the scheduled start always changes it.
func createCase(t *testing.T, s *store.Store, room string) *charting.Case {
	t.Helper()
	c, err := s.CreateCase(context.Background(), actor, store.NewCase{
		Kind: charting.KindCPB, Site: "MAIN", Room: room, ScheduledStart: time.Now().UTC().Truncate(time.Minute).Add(-time.Minute), Details: sampleDetails(),
	})
	if err != nil {
		t.Fatalf("create case: %v", err)
	}
	return c
}

func noteEntry(caseID uuid.UUID, at time.Time, text string) charting.Entry {
	return charting.Entry{ID: uuid.New(), CaseID: caseID, OccurredAt: at, Detail: charting.EntryDetail{Note: &charting.Note{Text: text}}}
}

func eventEntry(caseID uuid.UUID, at time.Time, typ string) charting.Entry {
	return charting.Entry{ID: uuid.New(), CaseID: caseID, OccurredAt: at, Detail: charting.EntryDetail{Event: &charting.Event{Type: typ}}}
}

func drugEntry(caseID uuid.UUID, at time.Time, drug string, dose float64, unit string) charting.Entry {
	return charting.Entry{ID: uuid.New(), CaseID: caseID, OccurredAt: at, Detail: charting.EntryDetail{Drug: &charting.DrugDose{Drug: drug, Dose: dose, Unit: unit, Route: "intravenous"}}}
}

func record(t *testing.T, s *store.Store, e charting.Entry) *charting.Entry {
	t.Helper()
	got, _, err := s.RecordEntry(context.Background(), actor, e)
	if err != nil {
		t.Fatalf("record entry: %v", err)
	}
	return got
}

// batch builds a batch of n one-second samples on two channels, starting
// at startMs, with values derived from seq so every batch is distinct.
func batch(caseID uuid.UUID, source string, seq int64, startMs int64, n int) *charting.SampleBatch {
	flow := charting.Series{Channel: "pump_flow"}
	temp := charting.Series{Channel: "temp_arterial_outlet"}
	for i := 0; i < n; i++ {
		t := startMs + int64(i)*1000
		flow.TimesMs = append(flow.TimesMs, t)
		flow.Values = append(flow.Values, math.Round((4+float64((seq*7+int64(i))%200)/100)*100)/100)
		temp.TimesMs = append(temp.TimesMs, t)
		temp.Values = append(temp.Values, math.Round((28+float64((seq+int64(i))%90)/10)*10)/10)
	}
	return &charting.SampleBatch{CaseID: caseID, SourceID: source, Seq: seq, Series: []charting.Series{flow, temp}}
}

func appendOne(t *testing.T, s *store.Store, b *charting.SampleBatch) store.SampleResult {
	t.Helper()
	r := s.AppendSamples(context.Background(), "gateway-1", []*charting.SampleBatch{b})[0]
	if r.Err != nil {
		t.Fatalf("append batch %s: %v", charting.SampleRef(b.SourceID, b.Seq), r.Err)
	}
	return r
}

func head(t *testing.T, s *store.Store, id uuid.UUID) charting.Head {
	t.Helper()
	c, err := s.GetCase(context.Background(), id)
	if err != nil {
		t.Fatalf("get case: %v", err)
	}
	return c.Head
}

func verifyOK(t *testing.T, s *store.Store, id uuid.UUID) *store.Verification {
	t.Helper()
	v, err := s.VerifyRecord(context.Background(), id)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if !v.OK() {
		t.Fatalf("verify: first bad link %+v", *v.Bad)
	}
	return v
}

func verifyBad(t *testing.T, s *store.Store, id uuid.UUID) *charting.BadLink {
	t.Helper()
	v, err := s.VerifyRecord(context.Background(), id)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if v.OK() {
		t.Fatalf("verify reported OK after tampering (%d links)", v.LinksVerified)
	}
	return v.Bad
}

func wantPrecondition(t *testing.T, what string, err error) {
	t.Helper()
	var pe *charting.PreconditionError
	if !errors.As(err, &pe) {
		t.Fatalf("%s: got %v, want a precondition failure", what, err)
	}
}

func wantInvalid(t *testing.T, what string, err error, field string) {
	t.Helper()
	var ie *charting.InvalidError
	if !errors.As(err, &ie) {
		t.Fatalf("%s: got %v, want invalid input", what, err)
	}
	for _, v := range ie.Violations {
		if v.Field == field {
			return
		}
	}
	t.Fatalf("%s: violations %+v do not name %s", what, ie.Violations, field)
}
