package server_test

import (
	"errors"
	"io"
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

// fixture is a case in progress with one entry and one sample batch, used
// by the tables below.
type fixture struct {
	e       *env
	caseID  string
	entryID string
	site    string // cases created by the table use this site
	t0      int64  // start of the fixture's samples
}

func newFixture(t *testing.T, b store.Backend) *fixture {
	e := start(t, b)
	f := &fixture{e: e, site: "BAD-" + uuid.NewString()[:8], t0: time.Now().Add(-time.Hour).Truncate(time.Second).UnixMilli()}
	f.caseID = e.createCase("OR-9").GetCaseId()
	f.entryID = e.recordEntry(noteEntry(f.caseID, "baseline", time.Now().Add(-time.Minute))).GetEntry().GetEntryId()
	ss := openStream(t, e.charting, f.caseID, "hlm-1")
	ss.send(flowBatch("hlm-1", 1, f.t0, 5))
	ss.close()
	return f
}

// snapshot is what must not change when a request is refused: the case's
// head, audit trail and entries read back, the cases at the fixture's site,
// and that the record still verifies.
type snapshot struct {
	id        string
	head      *pb.LedgerHead
	trail     int
	entries   int
	siteCases int
}

func (f *fixture) snapshot(t *testing.T) snapshot {
	t.Helper()
	return f.snapshotOf(t, f.caseID)
}

// snapshotOf records the head and audit trail length of caseID, and the
// number of cases at the fixture's site.
func (f *fixture) snapshotOf(t *testing.T, caseID string) snapshot {
	t.Helper()
	c := f.e.getCase(caseID)
	cases, err := f.e.cases.ListCases(as(reviewer), &pb.ListCasesRequest{Site: f.site})
	if err != nil {
		t.Fatalf("list cases: %v", err)
	}
	entries, err := f.e.charting.ListEntries(as(reviewer), &pb.ListEntriesRequest{CaseId: caseID, IncludeHistory: true})
	if err != nil {
		t.Fatalf("list entries: %v", err)
	}
	return snapshot{id: caseID, head: c.GetLedgerHead(), trail: len(f.e.auditTrail(caseID)), entries: len(entries.GetEntries()),
		siteCases: len(cases.GetCases())}
}

func (f *fixture) assertUnchanged(t *testing.T, before snapshot) {
	t.Helper()
	after := f.snapshotOf(t, before.id)
	if !proto.Equal(before.head, after.head) || before.trail != after.trail || before.entries != after.entries || before.siteCases != after.siteCases {
		t.Fatalf("a refused request changed the record: head %v → %v, trail %d → %d, entries %d → %d, new cases %d → %d",
			before.head, after.head, before.trail, after.trail, before.entries, after.entries, before.siteCases, after.siteCases)
	}
	v, err := f.e.record.VerifyRecord(as(reviewer), &pb.VerifyRecordRequest{CaseId: before.id})
	if err != nil || !v.GetOk() {
		t.Fatalf("after a refused request the record does not verify: %v %v", v, err)
	}
}

// streamErr sends msgs on a new stream and returns the status that ends
// it; nil when the stream ended cleanly.
func (f *fixture) streamErr(msgs ...*pb.StreamSamplesRequest) error {
	s, err := f.e.charting.StreamSamples(as(gateway))
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if err := s.Send(m); err != nil {
			break // the server ended the stream; Recv reports why
		}
	}
	s.CloseSend()
	for {
		if _, err := s.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// batchOf wraps series into a batch message of source hlm-2.
func batchOf(seq int64, series ...*pb.SampleSeries) *pb.StreamSamplesRequest {
	return batchMsg(&pb.SampleBatch{SourceId: "hlm-2", Sequence: seq, Series: series})
}

func flowSeries(times []int64, values []float64) *pb.SampleSeries {
	return &pb.SampleSeries{Channel: "pump_flow", OccurredAtUnixMs: times, Values: values}
}

// entry returns a valid note entry on the fixture's case, changed by mod.
func (f *fixture) entry(mod func(*pb.Entry)) *pb.RecordEntryRequest {
	en := noteEntry(f.caseID, "text", time.Now().Add(-time.Minute))
	if mod != nil {
		mod(en)
	}
	return &pb.RecordEntryRequest{Entry: en}
}

func (f *fixture) create(mod func(*pb.CreateCaseRequest)) *pb.CreateCaseRequest {
	r := &pb.CreateCaseRequest{CaseId: uuid.NewString(), Kind: pb.CaseKind_CASE_KIND_ECMO, Site: f.site, Room: "ICU-1",
		ScheduledStart: timestamppb.Now(), Details: sampleDetails()}
	mod(r)
	return r
}

// TestBadInput sends malformed requests of every kind: each gets
// InvalidArgument with a field violation naming the offending field, and
// the record is unchanged afterwards.
func TestBadInput(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b store.Backend) {
		f := newFixture(t, b)
		ctx := as(perfusionist)
		now := time.Now()

		tests := []struct {
			name  string
			field string
			call  func() error
		}{
			// Entries.
			{"entry: missing", "entry", func() error {
				_, err := f.e.charting.RecordEntry(ctx, &pb.RecordEntryRequest{})
				return err
			}},
			{"entry: bad entry uuid", "entry.entry_id", func() error {
				_, err := f.e.charting.RecordEntry(ctx, f.entry(func(e *pb.Entry) { e.EntryId = "not-a-uuid" }))
				return err
			}},
			{"entry: braced uuid", "entry.entry_id", func() error {
				_, err := f.e.charting.RecordEntry(ctx, f.entry(func(e *pb.Entry) { e.EntryId = "{" + uuid.NewString() + "}" }))
				return err
			}},
			{"entry: bad case uuid", "entry.case_id", func() error {
				_, err := f.e.charting.RecordEntry(ctx, f.entry(func(e *pb.Entry) { e.CaseId = "case-1" }))
				return err
			}},
			{"entry: missing occurred_at", "entry.occurred_at", func() error {
				_, err := f.e.charting.RecordEntry(ctx, f.entry(func(e *pb.Entry) { e.OccurredAt = nil }))
				return err
			}},
			{"entry: future occurred_at", "entry.occurred_at", func() error {
				_, err := f.e.charting.RecordEntry(ctx, f.entry(func(e *pb.Entry) { e.OccurredAt = timestamppb.New(now.Add(time.Hour)) }))
				return err
			}},
			{"entry: invalid timestamp", "entry.occurred_at", func() error {
				_, err := f.e.charting.RecordEntry(ctx, f.entry(func(e *pb.Entry) { e.OccurredAt = &timestamppb.Timestamp{Seconds: 1, Nanos: -5} }))
				return err
			}},
			{"entry: missing detail", "entry.detail", func() error {
				_, err := f.e.charting.RecordEntry(ctx, f.entry(func(e *pb.Entry) { e.Detail = nil }))
				return err
			}},
			{"entry: unspecified event type", "entry.event.type", func() error {
				_, err := f.e.charting.RecordEntry(ctx, f.entry(func(e *pb.Entry) { e.Detail = &pb.Entry_Event{Event: &pb.Event{}} }))
				return err
			}},
			{"entry: unknown event type", "entry.event.type", func() error {
				_, err := f.e.charting.RecordEntry(ctx, f.entry(func(e *pb.Entry) { e.Detail = &pb.Entry_Event{Event: &pb.Event{Type: 999}} }))
				return err
			}},
			{"entry: unknown route", "entry.drug.route", func() error {
				_, err := f.e.charting.RecordEntry(ctx, f.entry(func(e *pb.Entry) {
					e.Detail = &pb.Entry_Drug{Drug: &pb.DrugDose{Drug: "heparin", Dose: 1000, Unit: "[iU]", Route: 42}}
				}))
				return err
			}},
			{"entry: NaN dose", "entry.drug.dose", func() error {
				_, err := f.e.charting.RecordEntry(ctx, f.entry(func(e *pb.Entry) {
					e.Detail = &pb.Entry_Drug{Drug: &pb.DrugDose{Drug: "heparin", Dose: math.NaN(), Unit: "[iU]"}}
				}))
				return err
			}},
			{"entry: missing fluid kind", "entry.fluid.kind", func() error {
				_, err := f.e.charting.RecordEntry(ctx, f.entry(func(e *pb.Entry) { e.Detail = &pb.Entry_Fluid{Fluid: &pb.Fluid{VolumeMl: 100}} }))
				return err
			}},
			{"entry: unknown blood product", "entry.blood_product.type", func() error {
				_, err := f.e.charting.RecordEntry(ctx, f.entry(func(e *pb.Entry) {
					e.Detail = &pb.Entry_BloodProduct{BloodProduct: &pb.BloodProduct{Type: 77, Units: 1}}
				}))
				return err
			}},
			{"entry: lab with wrong unit", "entry.lab_result.unit", func() error {
				_, err := f.e.charting.RecordEntry(ctx, f.entry(func(e *pb.Entry) {
					e.Detail = &pb.Entry_LabResult{LabResult: &pb.LabResult{Analyte: "k", Value: 4.1, Unit: "mg/dL"}}
				}))
				return err
			}},
			{"entry: lab out of range", "entry.lab_result.value", func() error {
				_, err := f.e.charting.RecordEntry(ctx, f.entry(func(e *pb.Entry) {
					e.Detail = &pb.Entry_LabResult{LabResult: &pb.LabResult{Analyte: "ph", Value: 9.2, Unit: "[pH]"}}
				}))
				return err
			}},
			{"entry: unknown lab site", "entry.lab_result.site", func() error {
				_, err := f.e.charting.RecordEntry(ctx, f.entry(func(e *pb.Entry) {
					e.Detail = &pb.Entry_LabResult{LabResult: &pb.LabResult{Analyte: "ph", Value: 7.4, Unit: "[pH]", Site: 9}}
				}))
				return err
			}},
			{"entry: unknown checklist state", "entry.checklist_item.state", func() error {
				_, err := f.e.charting.RecordEntry(ctx, f.entry(func(e *pb.Entry) {
					e.Detail = &pb.Entry_ChecklistItem{ChecklistItem: &pb.ChecklistItem{Section: "pump", Item: "occlusion", State: 5}}
				}))
				return err
			}},
			{"entry: artifact on unknown channel", "entry.artifact_mark.channel", func() error {
				_, err := f.e.charting.RecordEntry(ctx, f.entry(func(e *pb.Entry) {
					e.Detail = &pb.Entry_ArtifactMark{ArtifactMark: &pb.ArtifactMark{Channel: "warp_flux", Start: timestamppb.New(now.Add(-time.Hour)),
						End: timestamppb.New(now.Add(-50 * time.Minute)), Reason: "flush"}}
				}))
				return err
			}},
			{"entry: unknown cardioplegia phase", "entry.cardioplegia.phase", func() error {
				_, err := f.e.charting.RecordEntry(ctx, f.entry(func(e *pb.Entry) {
					e.Detail = &pb.Entry_Cardioplegia{Cardioplegia: &pb.CardioplegiaDose{Solution: "del Nido", VolumeMl: 500, Phase: 3}}
				}))
				return err
			}},
			{"entry: empty note", "entry.note.text", func() error {
				_, err := f.e.charting.RecordEntry(ctx, f.entry(func(e *pb.Entry) { e.Detail = &pb.Entry_Note{Note: &pb.Note{}} }))
				return err
			}},
			{"entry: addendum through RecordEntry", "entry.addendum", func() error {
				_, err := f.e.charting.RecordEntry(ctx, f.entry(func(e *pb.Entry) {
					e.Detail = &pb.Entry_Addendum{Addendum: &pb.Addendum{Text: "x", Reason: "y"}}
				}))
				return err
			}},
			// Corrections.
			{"correct: neither replacement nor void", "replacement", func() error {
				_, err := f.e.charting.CorrectEntry(ctx, &pb.CorrectEntryRequest{CaseId: f.caseID, EntryId: uuid.NewString(), SupersedesEntryId: f.entryID, Reason: "r"})
				return err
			}},
			{"correct: void with a replacement", "replacement", func() error {
				_, err := f.e.charting.CorrectEntry(ctx, &pb.CorrectEntryRequest{CaseId: f.caseID, EntryId: uuid.NewString(), SupersedesEntryId: f.entryID, Reason: "r",
					Void: true, Replacement: noteEntry(f.caseID, "x", now)})
				return err
			}},
			{"correct: bad superseded uuid", "supersedes_entry_id", func() error {
				_, err := f.e.charting.CorrectEntry(ctx, &pb.CorrectEntryRequest{CaseId: f.caseID, EntryId: uuid.NewString(), SupersedesEntryId: "x", Reason: "r", Void: true})
				return err
			}},
			{"correct: missing entry id", "entry_id", func() error {
				_, err := f.e.charting.CorrectEntry(ctx, &pb.CorrectEntryRequest{CaseId: f.caseID, SupersedesEntryId: f.entryID, Reason: "r", Void: true})
				return err
			}},
			{"correct: missing reason", "reason", func() error {
				_, err := f.e.charting.CorrectEntry(ctx, &pb.CorrectEntryRequest{CaseId: f.caseID, EntryId: uuid.NewString(), SupersedesEntryId: f.entryID, Void: true})
				return err
			}},
			{"correct: replacement without time", "replacement.occurred_at", func() error {
				r := noteEntry(f.caseID, "fixed", now)
				r.OccurredAt = nil
				_, err := f.e.charting.CorrectEntry(ctx, &pb.CorrectEntryRequest{CaseId: f.caseID, EntryId: uuid.NewString(), SupersedesEntryId: f.entryID, Reason: "r", Replacement: r})
				return err
			}},
			{"correct: replacement of another kind", "replacement", func() error {
				_, err := f.e.charting.CorrectEntry(ctx, &pb.CorrectEntryRequest{CaseId: f.caseID, EntryId: uuid.NewString(), SupersedesEntryId: f.entryID, Reason: "r",
					Replacement: drugEntry(f.caseID, 1000, now.Add(-time.Minute))})
				return err
			}},
			{"correct: replacement with unknown enum", "replacement.event.type", func() error {
				r := &pb.Entry{OccurredAt: timestamppb.New(now), Detail: &pb.Entry_Event{Event: &pb.Event{Type: 500}}}
				_, err := f.e.charting.CorrectEntry(ctx, &pb.CorrectEntryRequest{CaseId: f.caseID, EntryId: uuid.NewString(), SupersedesEntryId: f.entryID, Reason: "r", Replacement: r})
				return err
			}},
			// Cases.
			{"create: missing kind", "kind", func() error {
				_, err := f.e.cases.CreateCase(ctx, f.create(func(r *pb.CreateCaseRequest) { r.Kind = pb.CaseKind_CASE_KIND_UNSPECIFIED }))
				return err
			}},
			{"create: unknown kind", "kind", func() error {
				_, err := f.e.cases.CreateCase(ctx, f.create(func(r *pb.CreateCaseRequest) { r.Kind = 9 }))
				return err
			}},
			{"create: bad case uuid", "case_id", func() error {
				_, err := f.e.cases.CreateCase(ctx, f.create(func(r *pb.CreateCaseRequest) { r.CaseId = "0000" }))
				return err
			}},
			{"create: nil uuid", "case_id", func() error {
				_, err := f.e.cases.CreateCase(ctx, f.create(func(r *pb.CreateCaseRequest) { r.CaseId = uuid.Nil.String() }))
				return err
			}},
			{"create: missing room", "room", func() error {
				_, err := f.e.cases.CreateCase(ctx, f.create(func(r *pb.CreateCaseRequest) { r.Room = "" }))
				return err
			}},
			{"create: missing scheduled start", "scheduled_start", func() error {
				_, err := f.e.cases.CreateCase(ctx, f.create(func(r *pb.CreateCaseRequest) { r.ScheduledStart = nil }))
				return err
			}},
			{"create: implausible weight", "details.patient.weight_kg", func() error {
				_, err := f.e.cases.CreateCase(ctx, f.create(func(r *pb.CreateCaseRequest) { r.Details.Patient.WeightKg = 900 }))
				return err
			}},
			{"create: bad birth date", "details.patient.birth_date", func() error {
				_, err := f.e.cases.CreateCase(ctx, f.create(func(r *pb.CreateCaseRequest) { r.Details.Patient.BirthDate = "02/04/1961" }))
				return err
			}},
			{"create: unknown sex", "details.patient.sex", func() error {
				_, err := f.e.cases.CreateCase(ctx, f.create(func(r *pb.CreateCaseRequest) { r.Details.Patient.Sex = 12 }))
				return err
			}},
			{"create: unknown pump type", "details.circuit.arterial_pump", func() error {
				_, err := f.e.cases.CreateCase(ctx, f.create(func(r *pb.CreateCaseRequest) { r.Details.Circuit.ArterialPump = 8 }))
				return err
			}},
			{"get: bad uuid", "case_id", func() error {
				_, err := f.e.cases.GetCase(ctx, &pb.GetCaseRequest{CaseId: "x"})
				return err
			}},
			{"update: missing details", "details", func() error {
				_, err := f.e.cases.UpdateCaseDetails(ctx, &pb.UpdateCaseDetailsRequest{CaseId: f.caseID, ExpectedDetailsVersion: 1, Reason: "r"})
				return err
			}},
			{"update: missing expected version", "expected_details_version", func() error {
				_, err := f.e.cases.UpdateCaseDetails(ctx, &pb.UpdateCaseDetailsRequest{CaseId: f.caseID, Details: sampleDetails(), Reason: "r"})
				return err
			}},
			{"update: missing reason once started", "reason", func() error {
				_, err := f.e.cases.UpdateCaseDetails(ctx, &pb.UpdateCaseDetailsRequest{CaseId: f.caseID, ExpectedDetailsVersion: 1, Details: sampleDetails()})
				return err
			}},
			{"sign: missing meaning", "meaning", func() error {
				_, err := f.e.cases.SignCase(ctx, &pb.SignCaseRequest{CaseId: f.caseID, SignerDisplayName: "P"})
				return err
			}},
			{"sign: bad expected head", "expected_ledger_head.hash", func() error {
				_, err := f.e.cases.SignCase(ctx, &pb.SignCaseRequest{CaseId: f.caseID, SignerDisplayName: "P", Meaning: pb.SignatureMeaning_SIGNATURE_MEANING_AUTHORED,
					ExpectedLedgerHead: &pb.LedgerHead{Sequence: 3, Hash: "abc"}})
				return err
			}},
			{"sign: over-long expected head", "expected_ledger_head.hash", func() error {
				_, err := f.e.cases.SignCase(ctx, &pb.SignCaseRequest{CaseId: f.caseID, SignerDisplayName: "P", Meaning: pb.SignatureMeaning_SIGNATURE_MEANING_AUTHORED,
					ExpectedLedgerHead: &pb.LedgerHead{Sequence: 3, Hash: strings.Repeat("ab", 40)}})
				return err
			}},
			{"addendum: missing text", "text", func() error {
				_, err := f.e.cases.AddAddendum(ctx, &pb.AddAddendumRequest{CaseId: f.caseID, AddendumId: uuid.NewString(), Reason: "r"})
				return err
			}},
			{"addendum: bad id", "addendum_id", func() error {
				_, err := f.e.cases.AddAddendum(ctx, &pb.AddAddendumRequest{CaseId: f.caseID, AddendumId: "1", Text: "t", Reason: "r"})
				return err
			}},
			{"list: bad page token", "page_token", func() error {
				_, err := f.e.cases.ListCases(ctx, &pb.ListCasesRequest{PageToken: "not a token"})
				return err
			}},
			{"list: negative page size", "page_size", func() error {
				_, err := f.e.cases.ListCases(ctx, &pb.ListCasesRequest{PageSize: -1})
				return err
			}},
			{"list: unknown status", "status", func() error {
				_, err := f.e.cases.ListCases(ctx, &pb.ListCasesRequest{Status: 17})
				return err
			}},
			// Queries and records.
			{"query: unknown channel", "channels[0]", func() error {
				_, err := f.e.charting.QuerySamples(ctx, &pb.QuerySamplesRequest{CaseId: f.caseID, Channels: []string{"warp_flux"}})
				return err
			}},
			{"query: too many buckets", "buckets", func() error {
				_, err := f.e.charting.QuerySamples(ctx, &pb.QuerySamplesRequest{CaseId: f.caseID, Buckets: 10001})
				return err
			}},
			{"query: end before start", "end", func() error {
				_, err := f.e.charting.QuerySamples(ctx, &pb.QuerySamplesRequest{CaseId: f.caseID, Start: timestamppb.New(now), End: timestamppb.New(now.Add(-time.Hour))})
				return err
			}},
			{"verify: missing case id", "case_id", func() error {
				_, err := f.e.record.VerifyRecord(ctx, &pb.VerifyRecordRequest{})
				return err
			}},
			{"audit: negative after", "after_sequence", func() error {
				_, err := f.e.record.GetAuditTrail(ctx, &pb.GetAuditTrailRequest{CaseId: f.caseID, AfterSequence: -1})
				return err
			}},
			// Sample streams.
			{"stream: batch before open", "open", func() error {
				return f.streamErr(batchMsg(flowBatch("hlm-2", 1, f.t0, 2)))
			}},
			{"stream: bad case uuid", "open.case_id", func() error { return f.streamErr(openMsg("nope")) }},
			{"stream: empty source id in open", "open.source_ids[1]", func() error { return f.streamErr(openMsg(f.caseID, "hlm-2", "")) }},
			{"stream: second open", "batch", func() error { return f.streamErr(openMsg(f.caseID), openMsg(f.caseID)) }},
			{"stream: missing source", "batch.source_id", func() error {
				return f.streamErr(openMsg(f.caseID), batchMsg(&pb.SampleBatch{Sequence: 1, Series: []*pb.SampleSeries{flowSeries([]int64{f.t0}, []float64{4})}}))
			}},
			{"stream: sequence 0", "batch.sequence", func() error {
				return f.streamErr(openMsg(f.caseID), batchOf(0, flowSeries([]int64{f.t0}, []float64{4})))
			}},
			{"stream: no series", "batch.series", func() error { return f.streamErr(openMsg(f.caseID), batchOf(1)) }},
			{"stream: unknown channel", "batch.series[0].channel", func() error {
				return f.streamErr(openMsg(f.caseID), batchOf(1, &pb.SampleSeries{Channel: "warp_flux", OccurredAtUnixMs: []int64{f.t0}, Values: []float64{1}}))
			}},
			{"stream: NaN value", "batch.series[0].values[1]", func() error {
				return f.streamErr(openMsg(f.caseID), batchOf(1, flowSeries([]int64{f.t0, f.t0 + 1000}, []float64{4, math.NaN()})))
			}},
			{"stream: infinite value", "batch.series[0].values[0]", func() error {
				return f.streamErr(openMsg(f.caseID), batchOf(1, flowSeries([]int64{f.t0}, []float64{math.Inf(1)})))
			}},
			// Out-of-range values and far-off device times are stored and
			// flagged, not refused (TestImplausibleReadingsStored).
			{"stream: time before 1970", "batch.series[0].occurred_at_unix_ms[0]", func() error {
				return f.streamErr(openMsg(f.caseID), batchOf(1, flowSeries([]int64{-1000}, []float64{4})))
			}},
			{"stream: non-increasing times", "batch.series[0].occurred_at_unix_ms[1]", func() error {
				return f.streamErr(openMsg(f.caseID), batchOf(1, flowSeries([]int64{f.t0, f.t0}, []float64{4, 4})))
			}},
			{"stream: values length mismatch", "batch.series[0].values", func() error {
				return f.streamErr(openMsg(f.caseID), batchOf(1, flowSeries([]int64{f.t0, f.t0 + 1000}, []float64{4})))
			}},
			{"stream: invalid index out of range", "batch.series[0].invalid_indexes[0]", func() error {
				s := flowSeries([]int64{f.t0}, []float64{4})
				s.InvalidIndexes = []int32{3}
				return f.streamErr(openMsg(f.caseID), batchOf(1, s))
			}},
			{"stream: invalid indexes not increasing", "batch.series[0].invalid_indexes[1]", func() error {
				s := flowSeries([]int64{f.t0, f.t0 + 1000}, []float64{4, 4})
				s.InvalidIndexes = []int32{1, 0}
				return f.streamErr(openMsg(f.caseID), batchOf(1, s))
			}},
			{"stream: channel twice", "batch.series[1].channel", func() error {
				return f.streamErr(openMsg(f.caseID), batchOf(1, flowSeries([]int64{f.t0}, []float64{4}), flowSeries([]int64{f.t0 + 1000}, []float64{4})))
			}},
			{"stream: too many samples", "batch.series", func() error {
				times, values := make([]int64, 10001), make([]float64, 10001)
				for i := range times {
					times[i], values[i] = f.t0+int64(i), 4
				}
				return f.streamErr(openMsg(f.caseID), batchOf(1, flowSeries(times, values)))
			}},
			{"stream: too many series", "batch.series", func() error {
				series := make([]*pb.SampleSeries, 257)
				for i := range series {
					series[i] = flowSeries([]int64{f.t0}, []float64{4})
				}
				return f.streamErr(openMsg(f.caseID), batchOf(1, series...))
			}},
		}
		for _, tc := range tests {
			t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
				before := f.snapshot(t)
				wantFieldViolation(t, tc.name, tc.call(), tc.field)
				f.assertUnchanged(t, before)
			})
		}
		f.e.assertNoPHI()
	})
}

// TestStreamBadBatchKeepsEarlierBatches: an invalid batch ends the stream
// with InvalidArgument; batches acknowledged before it stay stored.
func TestStreamBadBatchKeepsEarlierBatches(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b store.Backend) {
		f := newFixture(t, b)
		ss := openStream(t, f.e.charting, f.caseID, "hlm-1")
		if ack := ss.send(flowBatch("hlm-1", 2, f.t0+5000, 5)); ack.GetLastCommittedSequence() != 2 {
			t.Fatalf("ack = %v", ack)
		}
		before := f.snapshot(t)
		if err := ss.s.Send(batchMsg(&pb.SampleBatch{SourceId: "hlm-1", Sequence: 3, Series: []*pb.SampleSeries{flowSeries([]int64{f.t0 + 20000}, []float64{math.NaN()})}})); err != nil {
			t.Fatalf("send: %v", err)
		}
		_, err := ss.s.Recv()
		wantFieldViolation(t, "a NaN not marked invalid", err, "batch.series[0].values[0]")
		f.assertUnchanged(t, before)
		again := openStream(t, f.e.charting, f.caseID)
		if pos := position(again.opened, "hlm-1"); pos != 2 {
			t.Fatalf("position after a refused batch = %d, want 2", pos)
		}
	})
}

// TestNotFoundAndConflict: an unknown case is NotFound everywhere; reusing
// an id for different content is AlreadyExists; neither stores anything.
func TestNotFoundAndConflict(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b store.Backend) {
		f := newFixture(t, b)
		ctx := as(perfusionist)
		unknown := uuid.NewString()
		calls := map[string]func() error{
			"GetCase": func() error { _, err := f.e.cases.GetCase(ctx, &pb.GetCaseRequest{CaseId: unknown}); return err },
			"RecordEntry": func() error {
				_, err := f.e.charting.RecordEntry(ctx, &pb.RecordEntryRequest{Entry: noteEntry(unknown, "x", time.Now())})
				return err
			},
			"CloseCase": func() error { _, err := f.e.cases.CloseCase(ctx, &pb.CloseCaseRequest{CaseId: unknown}); return err },
			"ListEntries": func() error {
				_, err := f.e.charting.ListEntries(ctx, &pb.ListEntriesRequest{CaseId: unknown})
				return err
			},
			"QuerySamples": func() error {
				_, err := f.e.charting.QuerySamples(ctx, &pb.QuerySamplesRequest{CaseId: unknown})
				return err
			},
			"VerifyRecord": func() error {
				_, err := f.e.record.VerifyRecord(ctx, &pb.VerifyRecordRequest{CaseId: unknown})
				return err
			},
			"GetAuditTrail": func() error {
				_, err := f.e.record.GetAuditTrail(ctx, &pb.GetAuditTrailRequest{CaseId: unknown})
				return err
			},
			"StreamSamples": func() error { return f.streamErr(openMsg(unknown, "hlm-1")) },
			"CorrectEntry": func() error {
				_, err := f.e.charting.CorrectEntry(ctx, &pb.CorrectEntryRequest{CaseId: unknown, EntryId: uuid.NewString(), SupersedesEntryId: uuid.NewString(), Reason: "r", Void: true})
				return err
			},
		}
		for name, call := range calls {
			st := wantCode(t, name, call(), codes.NotFound)
			if strings.Contains(st.Message(), unknown) {
				t.Fatalf("%s: message echoes the id: %q", name, st.Message())
			}
		}

		before := f.snapshot(t)
		en := noteEntry(f.caseID, "first", time.Now().Add(-time.Minute))
		en.EntryId = f.entryID
		_, err := f.e.charting.RecordEntry(ctx, &pb.RecordEntryRequest{Entry: en})
		wantCode(t, "entry id reused for different content", err, codes.AlreadyExists)
		changed := flowBatch("hlm-1", 1, f.t0, 5)
		changed.Series[0].Values[0] = 5.55
		err = f.streamErr(openMsg(f.caseID), batchMsg(changed))
		wantCode(t, "batch resent with different content", err, codes.AlreadyExists)
		f.assertUnchanged(t, before)
	})
}
