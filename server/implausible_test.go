package server_test

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	pb "perfusion/api/perfusion/v1"
	"perfusion/store"
)

// TestImplausibleReadingsStored streams, over a real connection, a batch
// with a pump flow of 12 L/min (outside 0–10) among normal ones and a
// batch from a monitor whose clock reset to 1970. Both are acknowledged
// and the stream goes on; queries flag the reading and keep it out of the
// bucket statistics; the 1970 samples come back raw over their range but
// neither widen the buckets of an open range nor reach a watcher's
// buckets; ListSources and the watcher name the clock.
func TestImplausibleReadingsStored(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b store.Backend) {
		e := start(t, b)
		caseID := e.createCase("OR-I1").GetCaseId()
		t0 := time.Now().Add(-time.Minute).Truncate(time.Second).UnixMilli()
		real := flowBatch("hlm-1", 1, t0, 10)
		real.Series[0].Values[2] = 7.5 // adult ECMO flow: plausible
		real.Series[0].Values[4] = 12  // out of range: stored, flagged
		reset := flowBatch("mon-1", 1, 0, 10)
		ss := openStream(t, e.charting, caseID, "hlm-1", "mon-1")
		for _, b := range []*pb.SampleBatch{real, reset, flowBatch("hlm-1", 2, t0+10_000, 10)} {
			if ack := ss.send(b); ack.GetDuplicate() || ack.GetLastCommittedSequence() != b.GetSequence() {
				t.Fatalf("ack %+v", ack)
			}
		}
		ss.close()

		raw, err := e.charting.QuerySamples(as(reviewer), &pb.QuerySamplesRequest{CaseId: caseID, Channels: []string{"pump_flow"},
			Start: timestamppb.New(time.UnixMilli(t0)), End: timestamppb.New(time.UnixMilli(t0 + 10_000))})
		if err != nil {
			t.Fatal(err)
		}
		if len(raw.GetRaw()) != 1 || !slices.Equal(raw.GetRaw()[0].GetOutOfRangeIndexes(), []int32{4}) || raw.GetRaw()[0].GetValues()[4] != 12 {
			t.Fatalf("raw %+v: want the 12 L/min reading as sent, flagged at index 4", raw.GetRaw())
		}
		old, err := e.charting.QuerySamples(as(reviewer), &pb.QuerySamplesRequest{CaseId: caseID, Channels: []string{"pump_flow"},
			Start: timestamppb.New(time.UnixMilli(1)), End: timestamppb.New(time.UnixMilli(3_600_000))})
		if err != nil {
			t.Fatal(err)
		}
		if len(old.GetRaw()) != 1 || old.GetRaw()[0].GetSourceId() != "mon-1" || len(old.GetRaw()[0].GetImplausibleTimeIndexes()) != 9 {
			t.Fatalf("raw 1970 range %+v: want mon-1's samples, marked implausibly timed", old.GetRaw())
		}

		ds, err := e.charting.QuerySamples(as(reviewer), &pb.QuerySamplesRequest{CaseId: caseID, Channels: []string{"pump_flow"}, Buckets: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(ds.GetDownsampled()) != 1 || ds.GetDownsampled()[0].GetSourceId() != "hlm-1" {
			t.Fatalf("downsampled %v: want hlm-1 only", ds.GetDownsampled())
		}
		series := ds.GetDownsampled()[0]
		if w := series.GetBucketWidthMs(); w != 1901 {
			t.Errorf("bucket width %d ms, want 1901 (20 s of real data in 10 buckets)", w)
		}
		var oor int64
		for _, bk := range series.GetBuckets() {
			oor += bk.GetOutOfRangeCount()
			if bk.GetMax() > 10 {
				t.Errorf("bucket %+v: the out-of-range reading is in its statistics", bk)
			}
		}
		if oor != 1 {
			t.Errorf("%d out-of-range readings in buckets, want 1", oor)
		}

		srcs, err := e.charting.ListSources(as(reviewer), &pb.ListSourcesRequest{CaseId: caseID})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range srcs.GetSources() {
			want := s.GetSourceId() == "mon-1"
			if s.GetClockImplausible() != want || s.GetLastBatchImplausible() != want {
				t.Errorf("%s: clock implausible %v, want %v", s.GetSourceId(), s.GetClockImplausible(), want)
			}
			if want && (s.GetImplausibleBatches() != 1 || len(s.GetImplausibleSequences()) != 1 || s.GetImplausibleSequences()[0].GetTo() != 1) {
				t.Errorf("mon-1: %+v", s)
			}
		}

		w := watch(t, e.charting, &pb.WatchCaseRequest{CaseId: caseID, BucketWidthMs: 5000})
		head := e.head(caseID)
		w.waitFor(head)
		var clocks []string
		var wOOR int64
		for _, m := range w.stop() {
			for _, bs := range m.GetSamples() {
				for _, bk := range bs.GetBuckets() {
					if bk.GetStartUnixMs() < t0-5000 {
						t.Errorf("watch bucket at %d from %s: before the case", bk.GetStartUnixMs(), bs.GetSourceId())
					}
					if bs.GetChannel() == "pump_flow" {
						wOOR += bk.GetOutOfRangeCount()
					}
				}
			}
			for _, c := range m.GetImplausibleClocks() {
				clocks = append(clocks, c.GetSourceId())
				if c.GetSamples() != 20 || c.GetFirstUnixMs() != 0 {
					t.Errorf("implausible clock %+v: want mon-1's 20 samples from 0", c)
				}
			}
		}
		if !slices.Equal(clocks, []string{"mon-1"}) || wOOR != 1 {
			t.Errorf("watch: implausible clocks %v (want mon-1), %d out-of-range readings (want 1)", clocks, wOOR)
		}
	})
}
