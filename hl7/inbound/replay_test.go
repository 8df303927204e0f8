package inbound_test

import (
	"context"
	"strings"
	"testing"

	"perfusion/hl7/inbound"
	v2 "perfusion/hl7/v2"
	"perfusion/store"
	"perfusion/store/sqlite/sqlitetest"
)

// TestReplay: a message refused under one configuration (an identifier
// without its assigning authority, and no default configured) is applied
// when replayed after the configuration changed; the earlier result stays
// in the row's replays; replaying it again changes nothing.
func TestReplay(t *testing.T) {
	forBackends(t, func(t *testing.T, b store.Backend) {
		ctx := context.Background()
		e := newEnv(t, b)
		c := e.dial()
		start, _ := startAt(7, 30)
		a, _ := c.send(e.fixture("siu_s12.hl7", vars{"START": start}))
		wantAck(t, a, v2.AA, "")
		pc := e.caseOf("MAIN", "A-100^OPTIME")
		adt := strings.Replace(e.fixture("adt_a08.hl7", vars{"WEIGHT": "79.5"}), "MRN-1001^^^HOSP^MR", "MRN-1001^^^^MR", 1)
		a, _ = c.send(adt)
		wantAck(t, a, v2.AE, v2.ErrRequiredFieldMissing)
		row := e.journal()[0]
		if row.AckCode != "AE" || row.MessageType != "ADT^A08" {
			t.Fatalf("journal row %+v", row)
		}

		// The site sets the default authority; an administrator replays.
		h, err := inbound.NewHandler(inbound.Config{Store: e.st, Rooms: rooms(), DefaultAuthority: "HOSP"})
		if err != nil {
			t.Fatal(err)
		}
		got, err := h.Replay(ctx, row.ID, "admin-1")
		if err != nil {
			t.Fatal(err)
		}
		if got.AckCode != "AA" || got.Attempts != 2 || len(got.Outcome.Replays) != 1 || got.Outcome.Replays[0].AckCode != "AE" ||
			got.Outcome.Replays[0].By != "admin-1" || len(got.Outcome.Changes) != 1 || got.Outcome.Changes[0].CaseID != pc.ID {
			t.Fatalf("after replay: %+v", got)
		}
		if w := e.get(pc.ID).Details.Patient.WeightKg; w != 79.5 {
			t.Fatalf("weight %v after the replay", w)
		}
		head := e.get(pc.ID).Head
		again, err := h.Replay(ctx, row.ID, "admin-1")
		if err != nil || again.AckCode != "AA" || again.Attempts != 3 || e.get(pc.ID).Head != head {
			t.Fatalf("second replay: %+v %v", again, err)
		}
		// The sender's resend is now answered with the replay's ACK.
		_, raw := c.send(adt)
		if ack, _ := v2.ParseAck(raw); ack.Code != v2.AA {
			t.Fatalf("resend after the replay: %+v", ack)
		}
		if _, err := h.Replay(ctx, 999999, "admin-1"); err == nil {
			t.Fatal("replay of an unknown message")
		}
	})
}

// TestUnavailableAnswersAR: when the database cannot be reached the
// message is answered AR (resend later), the connection stays open, and
// nothing is claimed to be stored.
func TestUnavailableAnswersAR(t *testing.T) {
	b := sqlitetest.Open(t)
	e := newEnv(t, b)
	c := e.dial()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		a, _ := c.send(e.fixture("adt_a08.hl7", nil))
		wantAck(t, a, v2.AR, v2.ErrApplicationInternal)
	}
}
