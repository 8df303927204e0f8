package inbound_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"perfusion/charting"
	v2 "perfusion/hl7/v2"
	"perfusion/store"
)

// TestScheduleDay: a day of 30 bookings across 10 rooms plans 30 cases;
// S13 moves five (each moved booking is planned again as a new case at its
// new start, the old one says it was replaced), S14 changes the surgeon of
// five (a details version), S15 and S17 cancel five; the schedule is then
// 25 live planned cases, every one at the room and start the EHR says.
func TestScheduleDay(t *testing.T) {
	forBackends(t, func(t *testing.T, b store.Backend) {
		e := newEnv(t, b)
		c := e.dial()
		type booking struct {
			appt, room string
			hh         int
		}
		var day []booking
		for r := 1; r <= 10; r++ {
			for i, hh := range []int{7, 11, 15} {
				day = append(day, booking{fmt.Sprintf("D%02d%d", r, i), fmt.Sprintf("CVOR-%d", r), hh})
			}
		}
		for i, bk := range day {
			start, _ := startAt(bk.hh, 30)
			a, _ := c.send(e.fixture("siu_s12.hl7", vars{"APPT": bk.appt, "ROOM": bk.room, "START": start,
				"MRN": fmt.Sprintf("MRN-%04d", i), "VISIT": fmt.Sprintf("V-%04d", i)}))
			wantAck(t, a, v2.AA, "")
		}
		live, cancelled := e.planned("MAIN")
		if len(live) != 30 || len(cancelled) != 0 {
			t.Fatalf("%d planned, %d cancelled; want 30 planned", len(live), len(cancelled))
		}
		perRoom := map[string]int{}
		for _, pc := range live {
			perRoom[pc.Room]++
		}
		for r := 1; r <= 10; r++ {
			if n := perRoom[fmt.Sprintf("CVOR-%d", r)]; n != 3 {
				t.Fatalf("room CVOR-%d has %d cases", r, n)
			}
		}

		// S13: five bookings move, to 08:15 and, for two, to another room.
		for i := 0; i < 5; i++ {
			bk := day[i*6]
			old := e.caseOf("MAIN", bk.appt+"^OPTIME")
			start, want := startAt(8, 15)
			room := bk.room
			if i < 2 {
				room = "CVOR-9"
			}
			a, _ := c.send(strings.Replace(e.fixture("siu_s12.hl7", vars{"APPT": bk.appt, "ROOM": room, "START": start,
				"MRN": fmt.Sprintf("MRN-%04d", i*6), "VISIT": fmt.Sprintf("V-%04d", i*6)}), "SIU^S12^SIU_S12", "SIU^S13^SIU_S12", 1))
			wantAck(t, a, v2.AA, "")
			now := e.caseOf("MAIN", bk.appt+"^OPTIME")
			if now.ID == old.ID || !now.ScheduledStart.Equal(want) || now.Room != room || now.Status != charting.StatusPlanned {
				t.Fatalf("S13: booking %s held by %s at %s %s", bk.appt, now.ID, now.Room, now.ScheduledStart)
			}
			if now.Details.Patient.MRN != old.Details.Patient.MRN || now.Details.Team.Surgeon != old.Details.Team.Surgeon {
				t.Fatalf("S13: the new case lost the details: %+v", now.Details)
			}
			was := e.get(old.ID)
			if was.Details.Booking == nil || !was.Details.Booking.Cancelled || was.Details.Booking.ReplacedBy != now.ID.String() ||
				was.Details.Booking.Reason != "rescheduled" || was.Room != old.Room || !was.ScheduledStart.Equal(old.ScheduledStart) {
				t.Fatalf("S13: the old case %+v", was.Details.Booking)
			}
		}

		// S14: a new surgeon for five bookings.
		for i := 0; i < 5; i++ {
			bk := day[i*6+1]
			before := e.caseOf("MAIN", bk.appt+"^OPTIME")
			start, _ := startAt(bk.hh, 30)
			msg := e.fixture("siu_s12.hl7", vars{"APPT": bk.appt, "ROOM": bk.room, "START": start, "MRN": fmt.Sprintf("MRN-%04d", i*6+1), "VISIT": fmt.Sprintf("V-%04d", i*6+1)})
			msg = strings.Replace(msg, "SIU^S12^SIU_S12", "SIU^S14^SIU_S12", 1)
			msg = strings.Replace(msg, "AIP|1|A|2001^Heart^Harriet^Q^^Dr", "AIP|1|A|2002^Valve^Victor^^^Dr", 1)
			a, _ := c.send(msg)
			wantAck(t, a, v2.AA, "")
			after := e.caseOf("MAIN", bk.appt+"^OPTIME")
			if after.ID != before.ID || after.DetailsVersion != before.DetailsVersion+1 ||
				after.Details.Team.Surgeon != (charting.StaffMember{StaffID: "2002", DisplayName: "Dr Victor Valve"}) {
				t.Fatalf("S14: v%d→v%d surgeon %+v", before.DetailsVersion, after.DetailsVersion, after.Details.Team.Surgeon)
			}
		}

		// S15 (three) and S17 (two) cancel; a cancel without SCH-2's room
		// is found by its appointment id.
		for i := 0; i < 5; i++ {
			bk := day[i*6+2]
			trig := "S15"
			if i >= 3 {
				trig = "S17"
			}
			a, _ := c.send(e.fixture("siu_s15.hl7", vars{"APPT": bk.appt, "TRIGGER": trig, "MRN": fmt.Sprintf("MRN-%04d", i*6+2)}))
			wantAck(t, a, v2.AA, "")
			got := e.caseOf("MAIN", bk.appt+"^OPTIME")
			want := map[string]string{"S15": "cancelled: Patient request", "S17": "deleted: Patient request"}[trig]
			if got.Status != charting.StatusPlanned || got.Details.Booking == nil || !got.Details.Booking.Cancelled || got.Details.Booking.Reason != want {
				t.Fatalf("%s: %+v", trig, got.Details.Booking)
			}
		}
		// A cancel of a booking never seen: accepted, nothing to do.
		a, _ := c.send(e.fixture("siu_s15.hl7", vars{"APPT": "NEVER-SEEN"}))
		wantAck(t, a, v2.AA, "")

		live, cancelled = e.planned("MAIN")
		if len(live) != 25 || len(cancelled) != 10 {
			t.Fatalf("end of day: %d live, %d cancelled; want 25 and 10 (5 moved, 5 cancelled)", len(live), len(cancelled))
		}
		for _, pc := range append(live, cancelled...) {
			if v, err := e.st.VerifyRecord(context.Background(), pc.ID); err != nil || !v.OK() {
				t.Fatalf("verify %s: %v %v", pc.ID, v, err)
			}
		}
	})
}

// TestChartingCaseUpdates: a booking whose case has started charting is
// never rewritten. An S14 with another surgeon and a corrected patient name
// becomes a details version (with the EHR's reason) and an identity link;
// a move is kept out (AA with a warning when something else applied, AE
// when nothing could); a cancellation is refused with AE naming the case;
// once signed, a schedule change is refused and an ADT identity change is
// an identity link; body measures stay as charted.
func TestChartingCaseUpdates(t *testing.T) {
	forBackends(t, func(t *testing.T, b store.Backend) {
		e := newEnv(t, b)
		ctx := context.Background()
		c := e.dial()
		start, _ := startAt(7, 30)
		a, _ := c.send(e.fixture("siu_s12.hl7", vars{"START": start}))
		wantAck(t, a, v2.AA, "")
		pc := e.caseOf("MAIN", "A-100^OPTIME")
		e.chart(pc.ID)
		charting0 := e.get(pc.ID)

		// S14: new surgeon, the family name corrected.
		msg := e.fixture("siu_s12.hl7", vars{"START": start, "FAMILY": "Doe-Smith"})
		msg = strings.Replace(msg, "SIU^S12^SIU_S12", "SIU^S14^SIU_S12", 1)
		msg = strings.Replace(msg, "AIP|1|A|2001^Heart^Harriet^Q^^Dr", "AIP|1|A|2002^Valve^Victor^^^Dr", 1)
		a, _ = c.send(msg)
		wantAck(t, a, v2.AA, "")
		got := e.get(pc.ID)
		if got.Status != charting.StatusInProgress || got.DetailsVersion != charting0.DetailsVersion+1 || got.Details.Team.Surgeon.StaffID != "2002" ||
			got.Details.Patient.FamilyName != "Doe" {
			t.Fatalf("after S14: %s v%d %+v / %q", got.Status, got.DetailsVersion, got.Details.Team.Surgeon, got.Details.Patient.FamilyName)
		}
		eff, recs, err := e.st.EffectiveIdentity(ctx, got)
		if err != nil || len(recs) != 1 || eff.FamilyName != "Doe-Smith" || eff.MRN != "MRN-1001" || recs[0].Actor != "interface:engine" {
			t.Fatalf("identity link: %+v %+v %v", eff, recs, err)
		}
		links, _ := e.st.AuditTrail(ctx, pc.ID, charting0.Head.Seq, 0)
		if len(links) != 2 || links[0].Kind != charting.LinkIdentity || links[1].Kind != charting.LinkDetails || !strings.Contains(links[1].Reason, "SIU^S14") {
			t.Fatalf("links %+v", links)
		}

		// S13 to another room only: nothing of it can be done: AE.
		moved := strings.Replace(e.fixture("siu_s12.hl7", vars{"START": start, "FAMILY": "Doe-Smith", "ROOM": "CVOR-8"}), "SIU^S12^SIU_S12", "SIU^S13^SIU_S12", 1)
		moved = strings.Replace(moved, "AIP|1|A|2001^Heart^Harriet^Q^^Dr", "AIP|1|A|2002^Valve^Victor^^^Dr", 1)
		head := e.get(pc.ID).Head
		a, _ = c.send(moved)
		wantAck(t, a, v2.AE, v2.ErrApplicationRecordLocked)
		if !strings.Contains(a.Text, pc.ID.String()) || !strings.Contains(a.Text, "room") || strings.Contains(a.Text, "Doe") {
			t.Fatalf("AE text %q", a.Text)
		}
		if now := e.get(pc.ID); now.Head != head || now.Room != "CVOR-3" {
			t.Fatal("a refused move changed the case")
		}
		// S13 with a new room and a new anaesthesiologist: the team change
		// applies, the move is kept out: AA with a warning.
		moved2 := strings.Replace(moved, "AIP|2|A|3002^Sleep^Sam^^^Dr", "AIP|2|A|3003^Gas^Gil^^^Dr", 1)
		a, _ = c.send(e.fresh(moved2))
		if a.Code != v2.AA || a.Severity != v2.SeverityWarning || !strings.Contains(a.Text, "room") {
			t.Fatalf("ACK %+v, want AA with a W naming the room", a)
		}
		if now := e.get(pc.ID); now.Details.Team.Anesthesiologist.StaffID != "3003" || now.Room != "CVOR-3" {
			t.Fatalf("after S13: %+v in %s", now.Details.Team.Anesthesiologist, now.Room)
		}

		// A cancellation of a case being charted: AE, not cancelled.
		a, _ = c.send(e.fixture("siu_s15.hl7", nil))
		wantAck(t, a, v2.AE, v2.ErrApplicationRecordLocked)
		if now := e.get(pc.ID); now.Details.Booking.Cancelled {
			t.Fatal("a case being charted was cancelled")
		}

		// A new weight from the ADT feed: kept out, said in a W.
		a, _ = c.send(e.fixture("adt_a08.hl7", vars{"FAMILY": "Doe-Smith", "WEIGHT": "75"}))
		if a.Code != v2.AA || a.Severity != v2.SeverityWarning || !strings.Contains(a.Text, "weight") {
			t.Fatalf("ACK %+v", a)
		}
		if now := e.get(pc.ID); now.Details.Patient.WeightKg != charting0.Details.Patient.WeightKg {
			t.Fatal("the ADT feed changed the weight of a case being charted")
		}

		// Signed: the schedule cannot change it; a new name is a link.
		if _, err := e.st.CloseCase(ctx, "perfusionist-1", pc.ID); err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := e.st.SignCase(ctx, "perfusionist-1", pc.ID, store.SignRequest{Meaning: charting.MeaningAuthored, DisplayName: "P One"}); err != nil {
			t.Fatal(err)
		}
		signed := e.get(pc.ID)
		s14 := strings.Replace(moved2, "|CVOR-8^^", "|CVOR-3^^", 1)
		s14 = strings.Replace(s14, "SIU^S13^SIU_S12", "SIU^S14^SIU_S12", 1)
		s14 = strings.Replace(s14, "AIP|2|A|3003^Gas^Gil^^^Dr", "AIP|2|A|3004^Nod^Nora^^^Dr", 1)
		a, _ = c.send(e.fresh(s14))
		wantAck(t, a, v2.AE, v2.ErrApplicationRecordLocked)
		if !strings.Contains(a.Text, "signed") {
			t.Fatalf("AE text %q", a.Text)
		}
		a, _ = c.send(e.fixture("adt_a08.hl7", vars{"FAMILY": "Doe-Smythe", "WEIGHT": "75"}))
		if a.Code != v2.AA {
			t.Fatalf("ACK %+v", a)
		}
		now := e.get(pc.ID)
		eff, _, _ = e.st.EffectiveIdentity(ctx, now)
		if now.DetailsVersion != signed.DetailsVersion || len(now.Signatures) != 1 || eff.FamilyName != "Doe-Smythe" {
			t.Fatalf("signed case: v%d (was %d), %d signatures, %q", now.DetailsVersion, signed.DetailsVersion, len(now.Signatures), eff.FamilyName)
		}
		if v, err := e.st.VerifyRecord(ctx, pc.ID); err != nil || !v.OK() {
			t.Fatalf("verify: %+v %v", v, err)
		}
	})
}

// TestMoveBetweenSites: a booking moved to a configured room of another
// site is planned there as a new case and the old one says so; moved to a
// room this server does not keep, its case is cancelled.
func TestMoveBetweenSites(t *testing.T) {
	forBackends(t, func(t *testing.T, b store.Backend) {
		e := newEnv(t, b)
		c := e.dial()
		start, _ := startAt(10, 0)
		a, _ := c.send(e.fixture("siu_s12.hl7", vars{"START": start, "ROOM": "CVOR-1"}))
		wantAck(t, a, v2.AA, "")
		old := e.caseOf("MAIN", "A-100^OPTIME")
		a, _ = c.send(strings.Replace(e.fixture("siu_s12.hl7", vars{"START": start, "ROOM": "CVOR-E", "SITE": "EAST"}), "SIU^S12^SIU_S12", "SIU^S13^SIU_S12", 1))
		wantAck(t, a, v2.AA, "")
		moved := e.caseOf("EAST", "A-100^OPTIME")
		if moved.ID == old.ID || moved.Site != "EAST" || moved.Room != "CVOR-E" {
			t.Fatalf("moved case %s at %s/%s", moved.ID, moved.Site, moved.Room)
		}
		if was := e.get(old.ID).Details.Booking; !was.Cancelled || was.ReplacedBy != moved.ID.String() {
			t.Fatalf("old booking %+v", was)
		}
		// Moved again, to a general theatre this server does not keep.
		a, _ = c.send(strings.Replace(e.fixture("siu_s12.hl7", vars{"START": start, "ROOM": "GEN-9", "SITE": "EAST"}), "SIU^S12^SIU_S12", "SIU^S13^SIU_S12", 1))
		wantAck(t, a, v2.AA, "")
		if bk := e.get(moved.ID).Details.Booking; !bk.Cancelled || !strings.Contains(bk.Reason, "does not keep") {
			t.Fatalf("booking moved away: %+v", bk)
		}
		if live, _ := e.planned("EAST"); len(live) != 0 {
			t.Fatalf("%d live cases at EAST", len(live))
		}
	})
}
