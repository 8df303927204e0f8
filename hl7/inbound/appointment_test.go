package inbound_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"perfusion/charting"
	"perfusion/hl7/inbound"
	"perfusion/store"
)

func appointmentJSON(version, status, start, room string) string {
	return `{"resourceType":"Appointment","id":"apt-7","meta":{"versionId":"` + version + `"},
  "identifier":[{"system":"urn:epic:appt","value":"OR-APPT-7"}],
  "status":"` + status + `","cancelationReason":{"text":"Patient unwell"},
  "serviceType":[{"coding":[{"system":"http://snomed.info/sct","code":"233573008","display":"Extracorporeal membrane oxygenation"}],"text":"VA ECMO cannulation"}],
  "start":"` + start + `",
  "participant":[
    {"actor":{"reference":"Patient/p1","identifier":{"system":"urn:hosp:mrn","value":"MRN-4242"},"display":"Doe, Jane"},"status":"accepted"},
    {"type":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ParticipationType","code":"PPRF"}]}],"actor":{"reference":"Practitioner/s1","identifier":{"value":"2001"},"display":"Dr Harriet Heart"},"status":"accepted"},
    {"type":[{"text":"Perfusionist"}],"actor":{"reference":"Practitioner/x","identifier":{"value":"4003"},"display":"Pat Pump"},"status":"accepted"},
    {"actor":{"reference":"Location/l1","display":"` + room + `"},"status":"accepted"}]}`
}

// TestFHIRAppointment: an R4 Appointment is the twin of SIU: booked plans
// an ECMO case (SNOMED CT 233573008) with the patient's MRN read by its
// identifier system, the surgeon (PPRF) and the perfusionist; the same
// version again changes nothing; a new start plans it again; cancelled
// cancels it; bad content is AE in the journal, a reused version with
// other content is refused.
func TestFHIRAppointment(t *testing.T) {
	forBackends(t, func(t *testing.T, b store.Backend) {
		ctx := context.Background()
		e := newEnv(t, b, func(c *inbound.Config, _ *inbound.ListenerConfig) {
			c.MRNSystems = map[string]string{"HOSP": "urn:hosp:mrn"}
		})
		start := time.Now().Add(30 * time.Hour).UTC().Truncate(time.Minute)
		row, err := e.h.SubmitAppointment(ctx, "epic-fhir", "MAIN", []byte(appointmentJSON("1", "booked", start.Format(time.RFC3339), "CVOR-2")))
		if err != nil || row.AckCode != "AA" || row.MessageType != inbound.AppointmentMessageType || row.ControlID != "Appointment/apt-7/_history/1" {
			t.Fatalf("submit: %+v %v", row, err)
		}
		c := e.caseOf("MAIN", "OR-APPT-7")
		d := c.Details
		if c.Kind != charting.KindECMO || c.Room != "CVOR-2" || !c.ScheduledStart.Equal(start) || d.Patient.MRN != "MRN-4242" || d.Patient.MRNAssigningAuthority != "HOSP" ||
			d.Team.Surgeon.StaffID != "2001" || len(d.Team.Perfusionists) != 1 || d.Procedure.SnomedCode != "233573008" || c.CreatedBy != "interface:epic-fhir" {
			t.Fatalf("case %s %s %s %+v", c.Kind, c.Room, c.ScheduledStart, d)
		}
		again, err := e.h.SubmitAppointment(ctx, "epic-fhir", "MAIN", []byte(appointmentJSON("1", "booked", start.Format(time.RFC3339), "CVOR-2")))
		if err != nil || again.ID != row.ID || e.get(c.ID).Head != c.Head {
			t.Fatalf("resubmission: %+v %v", again, err)
		}
		if _, err := e.h.SubmitAppointment(ctx, "epic-fhir", "MAIN", []byte(appointmentJSON("1", "booked", start.Format(time.RFC3339), "CVOR-3"))); !errors.Is(err, inbound.ErrAppointmentReused) {
			t.Fatalf("reused version: %v", err)
		}
		later := start.Add(2 * time.Hour)
		v2row, err := e.h.SubmitAppointment(ctx, "epic-fhir", "MAIN", []byte(appointmentJSON("2", "booked", later.Format(time.RFC3339), "CVOR-2")))
		if err != nil || v2row.AckCode != "AA" {
			t.Fatalf("v2: %+v %v", v2row, err)
		}
		moved := e.caseOf("MAIN", "OR-APPT-7")
		if moved.ID == c.ID || !moved.ScheduledStart.Equal(later) || !e.get(c.ID).Details.Booking.Cancelled {
			t.Fatalf("moved %s at %s", moved.ID, moved.ScheduledStart)
		}
		v3, err := e.h.SubmitAppointment(ctx, "epic-fhir", "MAIN", []byte(appointmentJSON("3", "cancelled", later.Format(time.RFC3339), "CVOR-2")))
		if err != nil || v3.AckCode != "AA" {
			t.Fatalf("v3: %+v %v", v3, err)
		}
		if bk := e.get(moved.ID).Details.Booking; !bk.Cancelled || bk.Reason != "cancelled: Patient unwell" {
			t.Fatalf("cancelled booking %+v", bk)
		}
		// Bad content: journaled AE, nothing changed.
		for name, raw := range map[string]string{
			"not JSON":       "{not json",
			"not an appt":    `{"resourceType":"Patient","id":"x","meta":{"versionId":"1"}}`,
			"no start":       strings.Replace(appointmentJSON("9", "booked", "", "CVOR-2"), `"start":"",`, "", 1),
			"unknown system": strings.Replace(appointmentJSON("10", "booked", start.Format(time.RFC3339), "CVOR-2"), "urn:hosp:mrn", "urn:other", 1),
		} {
			r, err := e.h.SubmitAppointment(ctx, "epic-fhir", "MAIN", []byte(raw))
			if err != nil || r.AckCode != "AE" || r.Error == "" || len(r.Outcome.Changes) != 0 {
				t.Fatalf("%s: %+v %v", name, r, err)
			}
			if code, errCode, _ := inbound.AppointmentAck(r); code != "AE" || errCode == "" {
				t.Fatalf("%s: ack line %q", name, r.Ack)
			}
		}
		if _, err := e.h.SubmitAppointment(ctx, "epic-fhir", "WEST", []byte(appointmentJSON("1", "booked", start.Format(time.RFC3339), "CVOR-2"))); err == nil {
			t.Fatal("an appointment for a site this server keeps no schedule of was taken")
		}
		// A replay of a journaled Appointment.
		rep, err := e.h.Replay(ctx, row.ID, "admin-1")
		if err != nil || rep.Attempts != 2 || rep.AckCode != "AA" {
			t.Fatalf("replay: %+v %v", rep, err)
		}
		e.noPHI("MRN-4242", "Doe, Jane")
	})
}
