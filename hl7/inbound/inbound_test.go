package inbound_test

import (
	"context"
	"reflect"
	"slices"
	"strings"
	"testing"

	"perfusion/charting"
	v2 "perfusion/hl7/v2"
	"perfusion/store"
)

// TestFixturesOverMLLP: realistic SIU and ADT messages (repetitions,
// escape sequences, Z-segments, segments this receiver does not read) over
// a real MLLP connection plan a case from the schedule and complete its
// patient from the ADT feed; an unknown trigger, an unknown message type,
// another site's room and a message without its optional segments are
// each answered as they should be.
func TestFixturesOverMLLP(t *testing.T) {
	forBackends(t, func(t *testing.T, b store.Backend) {
		e := newEnv(t, b)
		c := e.dial()
		ctx := context.Background()

		startText, start := startAt(7, 30)
		a, _ := c.send(e.fixture("siu_s12.hl7", vars{"START": startText}))
		wantAck(t, a, v2.AA, "")
		live, _ := e.planned("MAIN")
		if len(live) != 1 {
			t.Fatalf("%d planned cases, want 1", len(live))
		}
		pc := live[0]
		d := pc.Details
		switch {
		case pc.Room != "CVOR-3" || pc.Site != "MAIN" || !pc.ScheduledStart.Equal(start) || pc.Kind != charting.KindCPB:
			t.Fatalf("case header %s %s %s %s", pc.Site, pc.Room, pc.ScheduledStart, pc.Kind)
		case d.Patient.MRN != "MRN-1001" || d.Patient.MRNAssigningAuthority != "HOSP":
			t.Fatalf("identifier: %q %q (the MR of PID-3, not the SS)", d.Patient.MRN, d.Patient.MRNAssigningAuthority)
		case d.Patient.FamilyName != "Doe" || d.Patient.GivenName != "John" || d.Patient.BirthDate != "1958-03-12" || d.Patient.Sex != "male":
			t.Fatalf("patient %+v (the legal name, not the nickname)", d.Patient)
		case d.Team.Surgeon != (charting.StaffMember{StaffID: "2001", DisplayName: "Dr Harriet Q Heart"}) ||
			d.Team.Anesthesiologist != (charting.StaffMember{StaffID: "3002", DisplayName: "Dr Sam Sleep"}) ||
			!slices.Equal(d.Team.Perfusionists, []charting.StaffMember{{StaffID: "4003", DisplayName: "Pat Pump"}}):
			t.Fatalf("team %+v", d.Team)
		case d.Procedure.Description != "Coronary artery bypass graft x3 & mitral valve repair" || d.Procedure.EncounterID != "V-2001":
			t.Fatalf("procedure %+v (escape \\T\\ decoded)", d.Procedure)
		case d.Booking == nil || d.Booking.AppointmentID != "A-100^OPTIME" || d.Booking.Sender != "engine" || d.Booking.Cancelled:
			t.Fatalf("booking %+v", d.Booking)
		case pc.CreatedBy != "interface:engine":
			t.Fatalf("created by %q", pc.CreatedBy)
		}

		// The ADT feed completes the patient of the planned case: a
		// details version with the registered name, sex and body measures
		// (the weight sent in grams).
		a, _ = c.send(e.fixture("adt_a01.hl7", nil))
		wantAck(t, a, v2.AA, "")
		got := e.get(pc.ID)
		p := got.Details.Patient
		if got.DetailsVersion != 2 || p.FamilyName != "O’Neil-Müller" || p.GivenName != "Róisín Anne" || p.Sex != "female" ||
			p.BirthDate != "1961-04-02" || p.HeightCm != 162.5 || p.WeightKg != 64.8 || p.BSAM2 == 0 {
			t.Fatalf("after A01: v%d %+v", got.DetailsVersion, p)
		}
		if !reflect.DeepEqual(got.Details.Team, d.Team) || got.Details.Booking == nil {
			t.Fatalf("A01 touched the team or the booking: %+v", got.Details)
		}
		links, err := e.st.AuditTrail(ctx, pc.ID, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		last := links[len(links)-1]
		if last.Kind != charting.LinkDetails || last.Actor != "interface:engine" || !strings.HasPrefix(last.Reason, "EHR: ADT^A01 message CTL") {
			t.Fatalf("last link %+v", last)
		}
		if v, err := e.st.VerifyRecord(ctx, pc.ID); err != nil || !v.OK() {
			t.Fatalf("verify: %+v %v", v, err)
		}

		// What this receiver does not do.
		for _, tc := range []struct {
			msg  string
			code v2.ErrorCode
		}{
			{strings.Replace(e.fixture("adt_a08.hl7", nil), "ADT^A08^ADT_A01", "ADT^A99", 1), v2.ErrUnsupportedEventCode},
			{strings.Replace(e.fixture("siu_s12.hl7", nil), "SIU^S12^SIU_S12", "SIU^S99", 1), v2.ErrUnsupportedEventCode},
			{strings.Replace(e.fixture("adt_a08.hl7", nil), "ADT^A08^ADT_A01", "ORM^O01", 1), v2.ErrUnsupportedMessageType},
			{strings.Replace(e.fixture("adt_a08.hl7", nil), "|P|2.5.1", "|T|2.5.1", 1), v2.ErrUnsupportedProcessingID},
			{strings.Replace(e.fixture("adt_a08.hl7", nil), "|P|2.5.1", "|P|3.0", 1), v2.ErrUnsupportedVersionID},
		} {
			a, _ := c.send(tc.msg)
			wantAck(t, a, v2.AE, tc.code)
		}
		// An ADT event this record keeps nothing of: accepted.
		a, _ = c.send(strings.Replace(e.fixture("adt_a08.hl7", nil), "ADT^A08^ADT_A01", "ADT^A02^ADT_A02", 1))
		wantAck(t, a, v2.AA, "")

		// Another site's room, and a room of a configured site this server
		// does not keep: accepted, nothing planned.
		before := e.caseCount()
		for _, room := range []vars{{"SITE": "WEST", "ROOM": "OR-12", "APPT": "W-1"}, {"SITE": "MAIN", "ROOM": "OR-12", "APPT": "W-2"}} {
			a, _ = c.send(e.fixture("siu_s12.hl7", room))
			wantAck(t, a, v2.AA, "")
		}
		if n := e.caseCount(); n != before {
			t.Fatalf("a booking of a room not kept here planned a case (%d → %d)", before, n)
		}

		// No PID, PV1, TQ1, NTE, AIP: a booking without a patient yet.
		bare := "MSH|^~\\&|OPTIME|HOSP|PERFUSION|HOSP|" + e.defaults()["NOW"] + "||SIU^S12^SIU_S12|" + e.nextCtl() + "|P|2.5.1\r" +
			"SCH||B-7^OPTIME\r" + "RGS|1\r" + "AIS|1||ECMO^VA ECMO cannulation^LOCAL|" + startText + "\r" + "AIL|1||^CVOR-E^^EAST\r"
		a, _ = c.send(bare)
		wantAck(t, a, v2.AA, "")
		ec := e.caseOf("EAST", "B-7^OPTIME")
		if ec.Kind != charting.KindECMO || ec.Details.Patient.MRN != "" || ec.Room != "CVOR-E" {
			t.Fatalf("bare booking: %s %+v", ec.Kind, ec.Details.Patient)
		}

		// The journal has every message, the logs none of the patient data.
		if n := len(e.journal()); n != 11 {
			t.Fatalf("journal: %d rows, want 11", n)
		}
		e.noPHI("MRN-1001", "Doe", "Müller", "Róisín", "19610402", "1961-04-02", "Harriet")
	})
}

// TestResendChangesNothing: every message sent twice (the sender lost the
// ACK) is answered with the same ACK from the journal, and changes
// nothing; the same control id on a different message is refused.
func TestResendChangesNothing(t *testing.T) {
	forBackends(t, func(t *testing.T, b store.Backend) {
		e := newEnv(t, b)
		c := e.dial()
		msgs := []string{
			e.fixture("siu_s12.hl7", nil),
			e.fixture("adt_a01.hl7", nil),
			e.fixture("siu_s12.hl7", vars{"START": func() string { s, _ := startAt(9, 0); return s }()}), // S12 again: a reschedule
			e.fixture("adt_a08.hl7", vars{"WEIGHT": "79"}),
			e.fixture("siu_s15.hl7", vars{"APPT": "A-100"}),
		}
		// A case already charting, for the messages that touch it.
		first := make([][]byte, len(msgs))
		for i, m := range msgs {
			a, raw := c.send(m)
			if a.Code != v2.AA {
				t.Fatalf("message %d: %s %s", i, a.Code, a.Text)
			}
			first[i] = raw
		}
		snapshot := func() map[string]int64 {
			heads := map[string]int64{}
			cs, _, _ := e.st.ListCases(context.Background(), store.CaseFilter{Limit: 500})
			for _, c := range cs {
				heads[c.ID.String()] = c.Head.Seq
			}
			return heads
		}
		before, journal := snapshot(), len(e.journal())
		c2 := e.dial() // the sender reconnected
		for i, m := range msgs {
			_, raw := c2.send(m)
			if string(raw) != string(first[i]) {
				t.Fatalf("resend %d answered\n%q\nnot\n%q", i, raw, first[i])
			}
		}
		if after := snapshot(); !mapsEqual(before, after) {
			t.Fatalf("a resend changed the record: %v → %v", before, after)
		}
		if n := len(e.journal()); n != journal {
			t.Fatalf("journal grew from %d to %d on resends", journal, n)
		}
		// The same MSH-10 with other content: refused, nothing stored.
		changed := strings.Replace(msgs[3], "|79|kg", "|99|kg", 1)
		a, _ := c2.send(changed)
		wantAck(t, a, v2.AE, v2.ErrDuplicateKeyIdentifier)
		if after := snapshot(); !mapsEqual(before, after) || len(e.journal()) != journal {
			t.Fatal("a reused control id changed something")
		}
	})
}

func mapsEqual(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
