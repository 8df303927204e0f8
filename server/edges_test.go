package server_test

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "perfusion/api/perfusion/v1"
	"perfusion/store"
)

// TestBadInputAtTheEdges sends what a careless gateway, a new user or an
// attacker sent at the record's edges: absurd times, absurd patients, text
// that one store keeps and the other cannot, units nobody can total. Each
// row gets its code and a violation naming the field (and, where the
// message was once misleading, the words a person needs); afterwards the
// record reads back unchanged and verifies. On both stores.
func TestBadInputAtTheEdges(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b store.Backend) {
		f := newFixture(t, b)
		ctx := as(perfusionist)
		now := time.Now()
		epoch := time.Unix(0, 0).UTC()
		yearOne := &timestamppb.Timestamp{Seconds: -62135596800}
		withDetails := func(mod func(*pb.Patient)) func(*pb.CreateCaseRequest) {
			return func(r *pb.CreateCaseRequest) { mod(r.Details.Patient) }
		}
		tests := []struct {
			name  string
			field string
			words string // the message must say this
			call  func() error
		}{
			// Operator times outside the case's window.
			{"entry dated 1970", "entry.occurred_at", "outside the case's time window", func() error {
				_, err := f.e.charting.RecordEntry(ctx, f.entry(func(e *pb.Entry) {
					e.OccurredAt = timestamppb.New(epoch)
					e.Detail = &pb.Entry_Event{Event: &pb.Event{Type: pb.EventType_EVENT_TYPE_BYPASS_ON}}
				}))
				return err
			}},
			{"entry dated year 1", "entry.occurred_at", "0001-01-01T00:00:00Z is not a plausible time", func() error {
				_, err := f.e.charting.RecordEntry(ctx, f.entry(func(e *pb.Entry) { e.OccurredAt = yearOne }))
				return err
			}},
			{"entry two days before the case", "entry.occurred_at", "outside the case's time window", func() error {
				_, err := f.e.charting.RecordEntry(ctx, f.entry(func(e *pb.Entry) { e.OccurredAt = timestamppb.New(now.Add(-50 * time.Hour)) }))
				return err
			}},
			{"correction dated 1970", "replacement.occurred_at", "outside the case's time window", func() error {
				r := noteEntry(f.caseID, "fixed", epoch)
				_, err := f.e.charting.CorrectEntry(ctx, &pb.CorrectEntryRequest{CaseId: f.caseID, EntryId: uuid.NewString(), SupersedesEntryId: f.entryID, Reason: "r", Replacement: r})
				return err
			}},
			{"artifact mark in 1970", "entry.artifact_mark.start", "device-time window", func() error {
				_, err := f.e.charting.RecordEntry(ctx, f.entry(func(e *pb.Entry) {
					e.Detail = &pb.Entry_ArtifactMark{ArtifactMark: &pb.ArtifactMark{Channel: "pump_flow", Start: timestamppb.New(epoch),
						End: timestamppb.New(now.Add(-50 * time.Minute)), Reason: "flush"}}
				}))
				return err
			}},
			{"case scheduled in 9999", "scheduled_start", "scheduling horizon", func() error {
				_, err := f.e.cases.CreateCase(ctx, f.create(func(r *pb.CreateCaseRequest) {
					r.ScheduledStart = timestamppb.New(time.Date(9999, 1, 1, 8, 0, 0, 0, time.UTC))
				}))
				return err
			}},
			{"case scheduled in year 1", "scheduled_start", "not a plausible time", func() error {
				_, err := f.e.cases.CreateCase(ctx, f.create(func(r *pb.CreateCaseRequest) { r.ScheduledStart = yearOne }))
				return err
			}},
			{"patient born in 2099", "details.patient.birth_date", "after the case", func() error {
				_, err := f.e.cases.CreateCase(ctx, f.create(withDetails(func(p *pb.Patient) { p.BirthDate = "2099-01-01" })))
				return err
			}},
			{"patient born in 1850", "details.patient.birth_date", "more than 130 years", func() error {
				_, err := f.e.cases.CreateCase(ctx, f.create(withDetails(func(p *pb.Patient) { p.BirthDate = "1850-01-01" })))
				return err
			}},
			{"update: born after the case", "details.patient.birth_date", "after the case", func() error {
				d := sampleDetails()
				d.Patient.BirthDate = now.AddDate(0, 0, 3).Format(time.DateOnly)
				_, err := f.e.cases.UpdateCaseDetails(ctx, &pb.UpdateCaseDetailsRequest{CaseId: f.caseID, ExpectedDetailsVersion: 1, Details: d, Reason: "r"})
				return err
			}},
			// Patients that cannot exist.
			{"5 cm, 0.001 kg patient", "details.patient.height_cm", "outside", func() error {
				_, err := f.e.cases.CreateCase(ctx, f.create(withDetails(func(p *pb.Patient) { p.HeightCm, p.WeightKg = 5, 0.001 })))
				return err
			}},
			{"infant of 25 kg", "details.patient.weight_kg", "under 1 year", func() error {
				_, err := f.e.cases.CreateCase(ctx, f.create(withDetails(func(p *pb.Patient) {
					p.BirthDate = now.AddDate(0, -3, 0).Format(time.DateOnly)
					p.HeightCm, p.WeightKg = 60, 25
				})))
				return err
			}},
			{"adult of 170 cm and 3 kg", "details.patient.weight_kg", "BMI", func() error {
				_, err := f.e.cases.CreateCase(ctx, f.create(withDetails(func(p *pb.Patient) { p.WeightKg = 3 })))
				return err
			}},
			{"NaN height", "details.patient.height_cm", "not NaN", func() error {
				_, err := f.e.cases.CreateCase(ctx, f.create(withDetails(func(p *pb.Patient) { p.HeightCm = math.NaN() })))
				return err
			}},
			// Numbers and units.
			{"dose in bananas", "entry.drug.unit", "[iU]", func() error {
				_, err := f.e.charting.RecordEntry(ctx, f.entry(func(e *pb.Entry) {
					e.Detail = &pb.Entry_Drug{Drug: &pb.DrugDose{Drug: "heparin", Dose: 3, Unit: "bananas"}}
				}))
				return err
			}},
			{"NaN dose named as NaN", "entry.drug.dose", "not NaN", func() error {
				_, err := f.e.charting.RecordEntry(ctx, f.entry(func(e *pb.Entry) {
					e.Detail = &pb.Entry_Drug{Drug: &pb.DrugDose{Drug: "heparin", Dose: math.NaN(), Unit: "[iU]"}}
				}))
				return err
			}},
			{"infinite volume", "entry.fluid.volume_ml", "finite", func() error {
				_, err := f.e.charting.RecordEntry(ctx, f.entry(func(e *pb.Entry) {
					e.Detail = &pb.Entry_Fluid{Fluid: &pb.Fluid{Kind: pb.FluidKind_FLUID_KIND_CRYSTALLOID, VolumeMl: math.Inf(1)}}
				}))
				return err
			}},
			// Text one store would keep and the other refuse.
			{"NUL in a note", "entry.note.text", "NUL", func() error {
				_, err := f.e.charting.RecordEntry(ctx, f.entry(func(e *pb.Entry) { e.Detail = &pb.Entry_Note{Note: &pb.Note{Text: "a\x00b"}} }))
				return err
			}},
			{"escape character in a drug name", "entry.drug.drug", "control", func() error {
				_, err := f.e.charting.RecordEntry(ctx, f.entry(func(e *pb.Entry) {
					e.Detail = &pb.Entry_Drug{Drug: &pb.DrugDose{Drug: "hep\x1b[2Jarin", Dose: 3, Unit: "mg"}}
				}))
				return err
			}},
			{"NUL in a room", "room", "NUL", func() error {
				_, err := f.e.cases.CreateCase(ctx, f.create(func(r *pb.CreateCaseRequest) { r.Room = "OR\x001" }))
				return err
			}},
			{"line break in an MRN", "details.patient.mrn", "one line", func() error {
				_, err := f.e.cases.CreateCase(ctx, f.create(withDetails(func(p *pb.Patient) { p.Mrn = "123\r456" })))
				return err
			}},
			{"NUL in a site filter", "site", "NUL", func() error {
				_, err := f.e.cases.ListCases(ctx, &pb.ListCasesRequest{Site: "MAIN\x00"})
				return err
			}},
			{"NUL in a signer's name", "signer_display_name", "NUL", func() error {
				_, err := f.e.cases.SignCase(ctx, &pb.SignCaseRequest{CaseId: f.caseID, SignerDisplayName: "P\x00", Meaning: pb.SignatureMeaning_SIGNATURE_MEANING_AUTHORED})
				return err
			}},
			{"NUL in a source id", "batch.source_id", "NUL", func() error {
				return f.streamErr(openMsg(f.caseID), batchMsg(&pb.SampleBatch{SourceId: "hlm\x00", Sequence: 1,
					Series: []*pb.SampleSeries{flowSeries([]int64{f.t0}, []float64{4})}}))
			}},
		}
		for _, tc := range tests {
			t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
				before := f.snapshot(t)
				err := tc.call()
				wantFieldViolation(t, tc.name, err, tc.field)
				if st := wantCode(t, tc.name, err, codes.InvalidArgument); !strings.Contains(st.Message(), tc.words) {
					t.Fatalf("%s: message %q does not say %q", tc.name, st.Message(), tc.words)
				}
				f.assertUnchanged(t, before)
			})
		}
		f.e.assertNoPHI()
	})
}

// TestSignCaseRetried: a sign-off resent over gRPC (its answer lost, say)
// returns the first signature with duplicate set; the head does not move.
func TestSignCaseRetried(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b store.Backend) {
		e := start(t, b)
		id := e.createCase("OR-4").GetCaseId()
		if _, err := e.cases.CloseCase(as(perfusionist), &pb.CloseCaseRequest{CaseId: id}); err != nil {
			t.Fatal(err)
		}
		req := &pb.SignCaseRequest{CaseId: id, Meaning: pb.SignatureMeaning_SIGNATURE_MEANING_AUTHORED, SignerDisplayName: "P"}
		first, err := e.cases.SignCase(as(perfusionist), req)
		if err != nil || first.GetDuplicate() {
			t.Fatalf("sign: %v dup %v", err, first.GetDuplicate())
		}
		again, err := e.cases.SignCase(as(perfusionist), req)
		if err != nil || !again.GetDuplicate() || !proto.Equal(again.GetSignature(), first.GetSignature()) ||
			len(again.GetCase().GetSignatures()) != 1 || again.GetCase().GetLedgerHead().GetSequence() != first.GetCase().GetLedgerHead().GetSequence() {
			t.Fatalf("retried sign: %v, %v", err, again)
		}
		_, err = e.cases.SignCase(as(perfusionist), &pb.SignCaseRequest{CaseId: id, Meaning: pb.SignatureMeaning_SIGNATURE_MEANING_REVIEWED, SignerDisplayName: "P"})
		wantCode(t, "the author reviews", err, codes.FailedPrecondition)
	})
}
