package inbound_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/export"
	"perfusion/hl7/fhir"
	"perfusion/hl7/mllp"
	v2 "perfusion/hl7/v2"
	"perfusion/store"
)

func hl7Config() export.HL7Config {
	return export.HL7Config{SendingApplication: v2.HD{NamespaceID: "PERFUSION"}, SendingFacility: v2.HD{NamespaceID: "MAIN"},
		ReceivingApplication: v2.HD{NamespaceID: "EHR"}, PointOfCare: "CARDIAC OR"}
}

func fhirOptions() fhir.Options {
	return fhir.Options{MRNSystems: map[string]string{"HOSP": "http://hosp.example.org/fhir/sid/mrn"},
		EncounterSystem: "http://hosp.example.org/fhir/sid/visit", StaffSystem: "http://hosp.example.org/fhir/sid/staff"}
}

// signedByHand charts, closes and signs a case created on the tablet (not
// from the schedule) with the given patient and visit.
func signedByHand(t *testing.T, st *store.Store, p charting.Patient, visit string) (*charting.Case, int64) {
	t.Helper()
	ctx := context.Background()
	d := charting.Details{Patient: p, Procedure: charting.Procedure{Description: "emergency CABG", EncounterID: visit},
		Team: charting.Team{Surgeon: charting.StaffMember{StaffID: "2001", DisplayName: "Dr Harriet Heart"}}}
	c, err := st.CreateCase(ctx, "perfusionist-1", store.NewCase{Kind: charting.KindCPB, Site: "MAIN", Room: "CVOR-1",
		ScheduledStart: time.Now().UTC().Add(-3 * time.Hour).Truncate(time.Minute), Details: d})
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{"bypass_on", "bypass_off"} {
		if _, _, err := st.RecordEntry(ctx, "perfusionist-1", charting.Entry{ID: uuid.New(), CaseID: c.ID, OccurredAt: time.Now().UTC().Add(-2 * time.Hour),
			Detail: charting.EntryDetail{Event: &charting.Event{Type: typ}}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.CloseCase(ctx, "perfusionist-1", c.ID); err != nil {
		t.Fatal(err)
	}
	c, sig, _, err := st.SignCase(ctx, "perfusionist-1", c.ID, store.SignRequest{Meaning: charting.MeaningAuthored, DisplayName: "P One"})
	if err != nil {
		t.Fatal(err)
	}
	return c, sig.Number
}

// TestMergeA40: an A40 moves every case of the prior identifier to the
// surviving one: a planned case by a details version, a signed case by an
// identity link that the ledger covers, the identity history shows and
// the exports carry — the signature is untouched. A later booking that
// still names the prior identifier is planned under the surviving one.
func TestMergeA40(t *testing.T) {
	forBackends(t, func(t *testing.T, b store.Backend) {
		e := newEnv(t, b)
		ctx := context.Background()
		c := e.dial()
		signed, version := signedByHand(t, e.st, charting.Patient{MRN: "MRN-0999", MRNAssigningAuthority: "HOSP", FamilyName: "Doe", GivenName: "J",
			BirthDate: "1958-03-12", Sex: "male"}, "V-0999")
		start, _ := startAt(7, 30)
		a, _ := c.send(e.fixture("siu_s12.hl7", vars{"MRN": "MRN-0999", "START": start}))
		wantAck(t, a, v2.AA, "")
		planned := e.caseOf("MAIN", "A-100^OPTIME")
		sigBefore := e.get(signed.ID).Signatures

		a, _ = c.send(e.fixture("adt_a40.hl7", vars{"MRN": "MRN-1001", "PRIOR": "MRN-0999"}))
		wantAck(t, a, v2.AA, "")

		// The planned case: a details version.
		if p := e.get(planned.ID).Details.Patient; p.MRN != "MRN-1001" || p.MRNAssigningAuthority != "HOSP" {
			t.Fatalf("planned case after A40: %+v", p)
		}
		// The signed case: an identity link, nothing signed changed.
		now := e.get(signed.ID)
		if now.DetailsVersion != signed.DetailsVersion || now.Details.Patient.MRN != "MRN-0999" || len(now.Signatures) != len(sigBefore) || now.Signatures[0] != sigBefore[0] {
			t.Fatalf("the signed case was rewritten: v%d %q", now.DetailsVersion, now.Details.Patient.MRN)
		}
		hist, cur, err := e.st.IdentityHistory(ctx, signed.ID)
		if err != nil || len(hist) != 2 || hist[0].MRN != "MRN-0999" || hist[1].Source != "reconciliation" || hist[1].MRN != "MRN-1001" ||
			hist[1].Actor != "interface:engine" || !strings.Contains(hist[1].Reason, "ADT^A40") || cur.MRN != "MRN-1001" {
			t.Fatalf("identity history %+v, current %+v, %v", hist, cur, err)
		}
		links, _ := e.st.AuditTrail(ctx, signed.ID, 0, 0)
		if l := links[len(links)-1]; l.Kind != charting.LinkIdentity || l.Actor != "interface:engine" {
			t.Fatalf("last link %+v", l)
		}
		if v, err := e.st.VerifyRecord(ctx, signed.ID); err != nil || !v.OK() {
			t.Fatalf("verify: %+v %v", v, err)
		}
		// The exports render the signed version with the surviving MRN.
		r := export.NewRenderer(b, hl7Config(), fhirOptions(), nil)
		v, err := r.Load(ctx, signed.ID, version)
		if err != nil {
			t.Fatal(err)
		}
		msg, err := r.HL7(v)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(msg.Payload), "PID|||MRN-1001^^^HOSP^MR") {
			t.Fatalf("the HL7 export does not carry the surviving MRN:\n%s", msg.Payload)
		}
		bundle, err := r.FHIR(v)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(bundle.Payload), `"MRN-1001"`) || strings.Contains(string(bundle.Payload), "MRN-0999") {
			t.Fatal("the FHIR export does not carry the surviving MRN only")
		}

		// A booking still naming the prior identifier is planned under the
		// surviving one (the patient index remembers the merge).
		a, _ = c.send(e.fixture("siu_s12.hl7", vars{"MRN": "MRN-0999", "APPT": "A-200", "START": start, "ROOM": "CVOR-4"}))
		wantAck(t, a, v2.AA, "")
		if p := e.caseOf("MAIN", "A-200^OPTIME").Details.Patient; p.MRN != "MRN-1001" {
			t.Fatalf("booking after the merge: %+v", p)
		}

		// The merge is in the journal for both cases.
		for _, id := range []uuid.UUID{planned.ID, signed.ID} {
			ms, err := e.ib.ListInboundMessages(ctx, store.InboundFilter{CaseID: id, MessageType: "ADT^A40", Limit: 10})
			if err != nil || len(ms) != 1 {
				t.Fatalf("journal of %s: %d %v", id, len(ms), err)
			}
		}
		// A merge naming no identifier at all: AE.
		a, _ = c.send(strings.Replace(e.fixture("adt_a40.hl7", nil), "MRG|MRN-0999^^^HOSP^MR", "MRG|", 1))
		wantAck(t, a, v2.AE, v2.ErrRequiredFieldMissing)
	})
}

// receiver is the EHR's MLLP endpoint of the delivery worker: it accepts
// everything and keeps what arrived.
type receiver struct {
	srv  *mllp.Server
	mu   sync.Mutex
	msgs []string
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{}
	srv, err := mllp.Start("127.0.0.1:0", func(ctx context.Context, msg []byte) ([]byte, error) {
		m, err := v2.Parse(msg)
		if err != nil {
			return nil, err
		}
		r.mu.Lock()
		r.msgs = append(r.msgs, string(msg))
		r.mu.Unlock()
		ack, err := v2.BuildAck(v2.Header{SendingApplication: v2.HD{NamespaceID: "EHR"}, ControlID: "ACK1", Time: time.Now()}, m, v2.AA, nil)
		if err != nil {
			return nil, err
		}
		return ack.Encode()
	})
	if err != nil {
		t.Fatal(err)
	}
	r.srv = srv
	t.Cleanup(func() { _ = srv.Close() })
	return r
}

// TestLateMRNReleasesHeldDelivery: an emergency case charted and signed
// without an MRN (only its visit number known) is held by the delivery
// worker; the ADT message registering the patient under that visit gives
// it the MRN through an identity link, the held delivery goes out at once
// and the EHR receives the record under the MRN.
func TestLateMRNReleasesHeldDelivery(t *testing.T) {
	forBackends(t, func(t *testing.T, b store.Backend) {
		ctx := context.Background()
		st := store.New(b, store.Config{Outbox: &store.OutboxConfig{Destinations: []store.Destination{store.DestinationMLLP}, MessageID: export.MessageID}})
		e := newEnvStore(t, st)
		signed, version := signedByHand(t, st, charting.Patient{FamilyName: "Unknown", GivenName: "Trauma", Sex: "male", HeightCm: 180, WeightKg: 80}, "V-7777")

		rcv := newReceiver(t)
		tr, err := export.NewMLLPTransport(mllp.SenderConfig{Addr: rcv.srv.Addr().String(), AckTimeout: 5 * time.Second, DialTimeout: time.Second, WriteTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = tr.Close() })
		outbox, err := store.OutboxOf(b)
		if err != nil {
			t.Fatal(err)
		}
		w, err := export.NewWorker(export.WorkerConfig{Outbox: outbox, Renderer: export.NewRenderer(b, hl7Config(), fhirOptions(), nil).WithDocuments(false),
			Transports: map[store.Destination]export.Transport{store.DestinationMLLP: tr}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		if n, err := w.RunOnce(ctx); err != nil || n != 1 {
			t.Fatalf("first attempt: %d %v", n, err)
		}
		d, err := st.GetDelivery(ctx, store.DeliveryID(signed.ID, version, store.DestinationMLLP))
		if err != nil || d.State != store.DeliveryHeld {
			t.Fatalf("delivery %+v %v, want held", d, err)
		}

		// The ADT registration of the visit.
		c := e.dial()
		a, _ := c.send(e.fixture("adt_a08.hl7", vars{"MRN": "MRN-5555", "VISIT": "V-7777", "FAMILY": "Roe", "GIVEN": "Richard", "DOB": "19700101", "WEIGHT": "80"}))
		wantAck(t, a, v2.AA, "")
		eff, recs, err := st.EffectiveIdentity(ctx, e.get(signed.ID))
		if err != nil || len(recs) != 1 || eff.MRN != "MRN-5555" || eff.MRNAssigningAuthority != "HOSP" || eff.FamilyName != "Roe" || eff.BirthDate != "1970-01-01" {
			t.Fatalf("identity %+v (%d links) %v", eff, len(recs), err)
		}
		if d, _ := st.GetDelivery(ctx, d.ID); d.State != store.DeliveryPending {
			t.Fatalf("after the ADT: delivery %s, want pending", d.State)
		}
		if n, err := w.RunOnce(ctx); err != nil || n != 1 {
			t.Fatalf("second attempt: %d %v", n, err)
		}
		if d, _ := st.GetDelivery(ctx, d.ID); d.State != store.DeliveryDelivered {
			t.Fatalf("delivery %s, want delivered", d.State)
		}
		rcv.mu.Lock()
		defer rcv.mu.Unlock()
		if len(rcv.msgs) != 1 || !strings.Contains(rcv.msgs[0], "PID|||MRN-5555^^^HOSP^MR||Roe^Richard") {
			t.Fatalf("the EHR received %d messages: %q", len(rcv.msgs), rcv.msgs)
		}
		// A second message for the visit changes nothing more.
		a, _ = c.send(e.fixture("adt_a08.hl7", vars{"MRN": "MRN-5555", "VISIT": "V-7777", "FAMILY": "Roe", "GIVEN": "Richard", "DOB": "19700101", "WEIGHT": "80"}))
		wantAck(t, a, v2.AA, "")
		if _, recs, _ := st.EffectiveIdentity(ctx, e.get(signed.ID)); len(recs) != 1 {
			t.Fatalf("%d identity links, want still 1", len(recs))
		}
		if _, err := st.GetDelivery(ctx, store.DeliveryID(uuid.New(), 1, store.DestinationMLLP)); !errors.Is(err, charting.ErrNotFound) {
			t.Fatalf("unknown delivery: %v", err)
		}
	})
}
