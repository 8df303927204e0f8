package server

import (
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/reflect/protoreflect"

	pb "perfusion/api/perfusion/v1"
	"perfusion/charting"
	"perfusion/store"
)

// checkTable fails unless t maps every non-zero value of the proto enum to
// a distinct string and back, and nothing else.
func checkTable[E ~int32](t *testing.T, name string, desc protoreflect.EnumDescriptor, table *enumTable[E]) []string {
	t.Helper()
	vals := desc.Values()
	if len(table.names) != vals.Len()-1 || len(table.values) != len(table.names) {
		t.Fatalf("%s: table has %d names, %d strings; enum has %d non-zero values", name, len(table.names), len(table.values), vals.Len()-1)
	}
	var strs []string
	for i := 0; i < vals.Len(); i++ {
		v := E(vals.Get(i).Number())
		var p parser
		s := table.parse(&p, "f", v)
		switch {
		case v == 0 && s != "":
			t.Fatalf("%s: UNSPECIFIED maps to %q", name, s)
		case v != 0 && (s == "" || p.err() != nil):
			t.Fatalf("%s: %s has no string", name, vals.Get(i).Name())
		case table.enum(s) != v:
			t.Fatalf("%s: %q maps back to %d, not %d", name, s, table.enum(s), v)
		}
		if s != "" {
			strs = append(strs, s)
		}
	}
	var p parser
	table.parse(&p, "f", E(vals.Len()+100))
	if p.err() == nil {
		t.Fatalf("%s: an unknown number is accepted", name)
	}
	if table.enum("no such value") != 0 {
		t.Fatalf("%s: an unknown string maps to a value", name)
	}
	slices.Sort(strs)
	return strs
}

// TestEnumTables: every proto enum value has a stored string; the lists
// charting validates against agree with the tables.
func TestEnumTables(t *testing.T) {
	sorted := func(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }
	same := func(name string, got, want []string) {
		if !slices.Equal(got, sorted(want)) {
			t.Fatalf("%s: table strings %v, charting lists %v", name, got, sorted(want))
		}
	}
	checkTable(t, "CaseKind", pb.CaseKind(0).Descriptor(), caseKinds)
	checkTable(t, "CaseStatus", pb.CaseStatus(0).Descriptor(), caseStatuses)
	checkTable(t, "Sex", pb.Sex(0).Descriptor(), sexes)
	checkTable(t, "BsaFormula", pb.BsaFormula(0).Descriptor(), bsaFormulas)
	checkTable(t, "PumpType", pb.PumpType(0).Descriptor(), pumpTypes)
	checkTable(t, "ReservoirType", pb.ReservoirType(0).Descriptor(), reservoirTypes)
	checkTable(t, "SignatureMeaning", pb.SignatureMeaning(0).Descriptor(), signatureMeanings)
	same("EventType", checkTable(t, "EventType", pb.EventType(0).Descriptor(), eventTypes), charting.EventTypes)
	same("Route", checkTable(t, "Route", pb.Route(0).Descriptor(), routes), []string{"intravenous", "circuit", "other"})
	same("FluidKind", checkTable(t, "FluidKind", pb.FluidKind(0).Descriptor(), fluidKinds), charting.FluidKinds)
	same("BloodProductType", checkTable(t, "BloodProductType", pb.BloodProductType(0).Descriptor(), bloodProductTypes), charting.BloodProductTypes)
	checkTable(t, "SampleSite", pb.SampleSite(0).Descriptor(), sampleSites)
	checkTable(t, "TemperatureCorrection", pb.TemperatureCorrection(0).Descriptor(), temperatureCorrections)
	checkTable(t, "ChecklistItemState", pb.ChecklistItemState(0).Descriptor(), checklistStates)
	checkTable(t, "CardioplegiaRoute", pb.CardioplegiaRoute(0).Descriptor(), cardioplegiaRoutes)
	checkTable(t, "CardioplegiaPhase", pb.CardioplegiaPhase(0).Descriptor(), cardioplegiaPhases)
	checkTable(t, "VerificationProblem", pb.VerificationProblem(0).Descriptor(), verificationProblems)
}

// TestPageTokenRoundTrip: a token decodes to the cursor it encodes;
// anything else is refused.
func TestPageTokenRoundTrip(t *testing.T) {
	c := &store.CaseCursor{ScheduledStart: time.Date(2026, 3, 4, 5, 6, 7, 891011000, time.UTC), ID: uuid.New()}
	var p parser
	got := p.pageToken("page_token", encodePageToken(c))
	if p.err() != nil || got == nil || !got.ScheduledStart.Equal(c.ScheduledStart) || got.ID != c.ID {
		t.Fatalf("round trip: %v, %+v", p.err(), got)
	}
	if encodePageToken(nil) != "" {
		t.Fatalf("last page has a token")
	}
	for _, bad := range []string{"x", "AAAA", encodePageToken(c) + "A", "!" + encodePageToken(c)[1:]} {
		var p parser
		if p.pageToken("page_token", bad); p.err() == nil {
			t.Fatalf("token %q accepted", bad)
		}
	}
}

// TestSampleConversion: invalid indexes become a mask and back.
func TestSampleConversion(t *testing.T) {
	var p parser
	b := p.batchIn(uuid.New(), &pb.SampleBatch{SourceId: "s", Sequence: 1, Series: []*pb.SampleSeries{
		{Channel: "pump_flow", OccurredAtUnixMs: []int64{1, 2, 3, 4}, Values: []float64{1, 0, 2, 0}, InvalidIndexes: []int32{1, 3}},
		{Channel: "map", OccurredAtUnixMs: []int64{1}, Values: []float64{70}},
	}})
	if p.err() != nil {
		t.Fatal(p.err())
	}
	if !slices.Equal(b.Series[0].Invalid, []bool{false, true, false, true}) || b.Series[1].Invalid != nil {
		t.Fatalf("masks = %v, %v", b.Series[0].Invalid, b.Series[1].Invalid)
	}
	if got := invalidOut(b.Series[0].Invalid); !slices.Equal(got, []int32{1, 3}) {
		t.Fatalf("indexes back = %v", got)
	}
}
