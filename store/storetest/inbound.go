package storetest

import (
	"context"
	"crypto/sha256"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/store"
)

func inboundOf(t *testing.T, s *store.Store) store.InboundBackend {
	t.Helper()
	ib, err := s.Inbound()
	if err != nil {
		t.Fatalf("inbound: %v", err)
	}
	return ib
}

func journalRow(sender, control, typ string, at time.Time, code string, caseIDs ...uuid.UUID) *store.InboundMessage {
	content := []byte("MSH|^~\\&|EPIC|HOSP|PERFUSION||20260101||" + typ + "|" + control + "|P|2.5.1\rPID|||123^^^HOSP^MR||O'Brien^Pat\r")
	m := &store.InboundMessage{InboundKey: store.InboundKey{Sender: sender, SendingApplication: "EPIC", SendingFacility: "HOSP", ControlID: control},
		MessageType: typ, ReceivedAt: at, Content: content, ContentSHA256: sha256.Sum256(content),
		AckCode: code, Ack: []byte("MSH|^~\\&|PERFUSION\rMSA|" + code + "|" + control + "\r"), ProcessedAt: at, Attempts: 1}
	for _, id := range caseIDs {
		m.Outcome.Changes = append(m.Outcome.Changes, store.InboundChange{CaseID: id, Action: store.InboundDetails, LedgerSeq: 3, Fields: []string{"patient.weight_kg"}})
	}
	return m
}

// testInboundJournal: journal rows are found by the sender's key, a second
// row with the same key is a duplicate, a new processing result replaces
// the old one in place (attempts count up), lists filter by sender, type,
// code, case and time and page by id; the received message itself can be
// neither changed nor deleted by any database user.
func testInboundJournal(t *testing.T, h *Harness) {
	ctx := context.Background()
	s, b, clk := newStore(t, h)
	ib := inboundOf(t, s)
	c := createCase(t, s, "OR-1")
	t0 := clk.now()

	first := journalRow("epic", "C1", "ADT^A08", t0, "AA", c.ID)
	id1, err := ib.RecordInbound(ctx, first, store.InboundWrites{})
	if err != nil || id1 <= 0 {
		t.Fatalf("record: %d %v", id1, err)
	}
	if _, err := ib.RecordInbound(ctx, journalRow("epic", "C1", "ADT^A08", t0, "AA"), store.InboundWrites{}); !errors.Is(err, store.ErrDuplicate) {
		t.Fatalf("same key again: %v, want duplicate", err)
	}
	// Another sender may use the same control id.
	id2, err := ib.RecordInbound(ctx, journalRow("rhapsody", "C1", "SIU^S12", t0.Add(time.Second), "AE"), store.InboundWrites{})
	if err != nil || id2 <= id1 {
		t.Fatalf("other sender: %d %v", id2, err)
	}
	got, err := ib.InboundMessageByKey(ctx, first.InboundKey)
	if err != nil {
		t.Fatalf("by key: %v", err)
	}
	if got.ID != id1 || got.Content != nil || got.ContentSHA256 != first.ContentSHA256 || got.AckCode != "AA" ||
		string(got.Ack) != string(first.Ack) || !got.ReceivedAt.Equal(t0) || len(got.Outcome.Changes) != 1 || got.Outcome.Changes[0].CaseID != c.ID {
		t.Fatalf("read back %+v", got)
	}
	if _, err := ib.InboundMessageByKey(ctx, store.InboundKey{Sender: "epic", SendingApplication: "EPIC", SendingFacility: "HOSP", ControlID: "nope"}); !errors.Is(err, charting.ErrNotFound) {
		t.Fatalf("unknown key: %v", err)
	}

	// A new processing result (a replay).
	got.AckCode, got.Error, got.Attempts, got.ProcessedAt = "AE", "PID-3: required", 2, t0.Add(time.Minute)
	got.Outcome.Replays = append(got.Outcome.Replays, store.InboundReplay{AckCode: "AA", ProcessedAt: t0, By: "admin-1"})
	if id, err := ib.RecordInbound(ctx, got, store.InboundWrites{}); err != nil || id != id1 {
		t.Fatalf("update: %d %v", id, err)
	}
	again, err := ib.InboundMessage(ctx, id1)
	if err != nil || string(again.Content) != string(first.Content) || again.AckCode != "AE" || again.Attempts != 2 || again.Error != "PID-3: required" || len(again.Outcome.Replays) != 1 {
		t.Fatalf("after update: %+v %v", again, err)
	}

	// Lists.
	for i := range 5 {
		if _, err := ib.RecordInbound(ctx, journalRow("epic", "L"+string(rune('0'+i)), "SIU^S14", t0.Add(time.Duration(10+i)*time.Second), "AA"), store.InboundWrites{}); err != nil {
			t.Fatal(err)
		}
	}
	list := func(f store.InboundFilter) []int64 {
		t.Helper()
		if f.Limit == 0 {
			f.Limit = 100
		}
		rows, err := ib.ListInboundMessages(ctx, f)
		if err != nil {
			t.Fatalf("list %+v: %v", f, err)
		}
		var ids []int64
		for _, r := range rows {
			if r.Content != nil {
				t.Fatalf("a listing carried message content")
			}
			ids = append(ids, r.ID)
		}
		return ids
	}
	if ids := list(store.InboundFilter{}); len(ids) != 7 || !slices.IsSortedFunc(ids, func(a, b int64) int { return int(b - a) }) {
		t.Fatalf("all: %v", ids)
	}
	if ids := list(store.InboundFilter{Sender: "rhapsody"}); !slices.Equal(ids, []int64{id2}) {
		t.Fatalf("by sender: %v", ids)
	}
	if ids := list(store.InboundFilter{MessageType: "SIU^S14"}); len(ids) != 5 {
		t.Fatalf("by type: %v", ids)
	}
	if ids := list(store.InboundFilter{AckCode: "AE"}); len(ids) != 2 {
		t.Fatalf("by code: %v", ids)
	}
	if ids := list(store.InboundFilter{CaseID: c.ID}); !slices.Equal(ids, []int64{id1}) {
		t.Fatalf("by case: %v", ids)
	}
	if ids := list(store.InboundFilter{From: t0.Add(11 * time.Second), To: t0.Add(13 * time.Second)}); len(ids) != 2 {
		t.Fatalf("by time: %v", ids)
	}
	all := list(store.InboundFilter{})
	if ids := list(store.InboundFilter{BeforeID: all[2], Limit: 2}); len(ids) != 2 || ids[0] != all[3] {
		t.Fatalf("page after %d: %v", all[2], ids)
	}

	// What came never changes, and is never deleted.
	if err := h.Exec(t, b, `UPDATE inbound_messages SET content = $1 WHERE message_id = $2`, []byte("MSH|x"), id1); err == nil {
		t.Fatal("the database let a received message be rewritten")
	}
	if err := h.Exec(t, b, `DELETE FROM inbound_messages WHERE message_id = $1`, id2); err == nil {
		t.Fatal("the database let a received message be deleted")
	}
	if err := h.Exec(t, b, `DELETE FROM inbound_message_cases`); err == nil {
		t.Fatal("the database let the message-case index be deleted")
	}
}

// testInboundIndex: the patient index and the bookings are replaced by
// newer news; cases are found by the MRN of their current details or of a
// reconciliation, and by encounter, at the sites asked for only.
func testInboundIndex(t *testing.T, h *Harness) {
	ctx := context.Background()
	s, _, clk := newStore(t, h)
	ib := inboundOf(t, s)

	a := createCase(t, s, "OR-1") // MRN-TEST-0001 at MAIN
	d := sampleDetails()
	d.Patient.MRN, d.Procedure.EncounterID = "MRN-OTHER", "V-77"
	b2, err := s.CreateCase(ctx, actor, store.NewCase{Kind: charting.KindCPB, Site: "EAST", Room: "OR-2", ScheduledStart: clk.now().Add(-time.Minute), Details: d})
	if err != nil {
		t.Fatal(err)
	}
	// A case whose details no longer carry the MRN (the current version
	// counts), and one that got it by reconciliation.
	moved := createCase(t, s, "OR-3")
	d3 := sampleDetails()
	d3.Patient.MRN = "MRN-NEW"
	if _, err := s.UpdateCaseDetails(ctx, actor, moved.ID, 1, d3, ""); err != nil {
		t.Fatal(err)
	}
	rec := createCase(t, s, "OR-4")
	if _, err := s.ReconcileIdentity(ctx, actor, rec.ID, store.IdentityUpdate{MRN: "MRN-REC", AssigningAuthority: "HOSP", Reason: "merge"}); err != nil {
		t.Fatal(err)
	}

	ids := func(got []uuid.UUID, err error) []uuid.UUID {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(got, func(x, y uuid.UUID) int { return slices.Compare(x[:], y[:]) })
		return got
	}
	want := func(xs ...uuid.UUID) []uuid.UUID {
		slices.SortFunc(xs, func(x, y uuid.UUID) int { return slices.Compare(x[:], y[:]) })
		return xs
	}
	if got := ids(ib.CasesByMRN(ctx, []string{"MAIN"}, "MRN-TEST-0001")); !slices.Equal(got, want(a.ID, rec.ID)) {
		t.Fatalf("by MRN: %v, want %v and %v", got, a.ID, rec.ID)
	}
	if got := ids(ib.CasesByMRN(ctx, []string{"MAIN"}, "MRN-REC")); !slices.Equal(got, want(rec.ID)) {
		t.Fatalf("by reconciled MRN: %v", got)
	}
	if got := ids(ib.CasesByMRN(ctx, []string{"MAIN"}, "MRN-OTHER")); len(got) != 0 {
		t.Fatalf("another site's case found: %v", got)
	}
	if got := ids(ib.CasesByMRN(ctx, []string{"MAIN", "EAST"}, "MRN-OTHER")); !slices.Equal(got, want(b2.ID)) {
		t.Fatalf("by MRN, two sites: %v", got)
	}
	if got := ids(ib.CasesByEncounter(ctx, []string{"EAST"}, "V-77")); !slices.Equal(got, want(b2.ID)) {
		t.Fatalf("by encounter: %v", got)
	}
	if got := ids(ib.CasesByMRN(ctx, nil, "MRN-OTHER")); len(got) != 0 {
		t.Fatalf("no sites: %v", got)
	}

	row := journalRow("epic", "P1", "ADT^A08", clk.now(), "AA")
	p := store.InboundPatient{AssigningAuthority: "HOSP", MRN: "123", FamilyName: "O'Brien", GivenName: "Pat", WeightKg: 71.5, UpdatedAt: clk.now()}
	bk := store.InboundBooking{Site: "MAIN", AppointmentID: "APPT-1", CaseID: a.ID, UpdatedAt: clk.now()}
	id, err := ib.RecordInbound(ctx, row, store.InboundWrites{Patients: []store.InboundPatient{p}, Bookings: []store.InboundBooking{bk}})
	if err != nil {
		t.Fatal(err)
	}
	gp, err := ib.InboundPatient(ctx, "HOSP", "123")
	if err != nil || gp.FamilyName != "O'Brien" || gp.WeightKg != 71.5 || gp.MessageID != id || !gp.UpdatedAt.Equal(clk.now()) {
		t.Fatalf("patient %+v %v", gp, err)
	}
	gb, err := ib.InboundBooking(ctx, "MAIN", "APPT-1")
	if err != nil || gb.CaseID != a.ID || gb.MessageID != id {
		t.Fatalf("booking %+v %v", gb, err)
	}
	clk.advance(time.Minute)
	p.WeightKg, p.UpdatedAt, bk.CaseID, bk.UpdatedAt = 72, clk.now(), moved.ID, clk.now()
	if _, err := ib.RecordInbound(ctx, journalRow("epic", "P2", "SIU^S13", clk.now(), "AA"), store.InboundWrites{Patients: []store.InboundPatient{p}, Bookings: []store.InboundBooking{bk}}); err != nil {
		t.Fatal(err)
	}
	if gp, err := ib.InboundPatient(ctx, "HOSP", "123"); err != nil || gp.WeightKg != 72 {
		t.Fatalf("patient replaced: %+v %v", gp, err)
	}
	if gb, err := ib.InboundBooking(ctx, "MAIN", "APPT-1"); err != nil || gb.CaseID != moved.ID {
		t.Fatalf("booking moved: %+v %v", gb, err)
	}
	if _, err := ib.InboundPatient(ctx, "HOSP", "999"); !errors.Is(err, charting.ErrNotFound) {
		t.Fatalf("unknown patient: %v", err)
	}
	if _, err := ib.InboundBooking(ctx, "EAST", "APPT-1"); !errors.Is(err, charting.ErrNotFound) {
		t.Fatalf("unknown booking: %v", err)
	}

	// Identity history: the details version that changed the MRN and the
	// reconciliation, in ledger order, and the identity in force.
	hist, cur, err := s.IdentityHistory(ctx, moved.ID)
	if err != nil || len(hist) != 2 || hist[0].MRN != "MRN-TEST-0001" || hist[1].MRN != "MRN-NEW" || hist[1].DetailsVersion != 2 || cur.MRN != "MRN-NEW" {
		t.Fatalf("history of a details change: %+v %+v %v", hist, cur, err)
	}
	hist, cur, err = s.IdentityHistory(ctx, rec.ID)
	if err != nil || len(hist) != 2 || hist[1].Source != "reconciliation" || hist[1].Seq <= hist[0].Seq || cur.MRN != "MRN-REC" || cur.FamilyName != "Testpatient" {
		t.Fatalf("history of a reconciliation: %+v %+v %v", hist, cur, err)
	}
}
