package server_test

import (
	"testing"
	"time"

	pb "perfusion/api/perfusion/v1"
	"perfusion/store"
)

// TestQuerySamplesLTTB asks for LTTB points over a real connection: at most
// the number asked, a subset of the stored valid samples in time order,
// first and last valid samples kept, the one spike kept, invalid readings
// never drawn.
func TestQuerySamplesLTTB(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b store.Backend) {
		e := start(t, b)
		caseID := e.createCase("OR-L1").GetCaseId()
		t0 := time.Now().Add(-time.Hour).Truncate(time.Second).UnixMilli()
		flow := &pb.SampleSeries{Channel: "pump_flow", InvalidIndexes: []int32{0, 599}}
		for i := range 600 {
			flow.OccurredAtUnixMs = append(flow.OccurredAtUnixMs, t0+int64(i)*1000)
			v := 4.5 + float64(i%7)/100
			if i == 333 {
				v = 0.5 // a flow drop the display must show
			}
			flow.Values = append(flow.Values, v)
		}
		ss := openStream(t, e.charting, caseID, "hlm-1")
		ss.send(&pb.SampleBatch{SourceId: "hlm-1", Sequence: 1, Series: []*pb.SampleSeries{flow}})
		ss.close()

		resp, err := e.charting.QuerySamples(as(reviewer), &pb.QuerySamplesRequest{CaseId: caseID, Buckets: 25, Method: pb.DownsampleMethod_DOWNSAMPLE_METHOD_LTTB})
		if err != nil {
			t.Fatalf("query LTTB: %v", err)
		}
		if len(resp.GetRaw()) != 1 || len(resp.GetDownsampled()) != 0 {
			t.Fatalf("LTTB answer: %d raw and %d bucket series, want one raw", len(resp.GetRaw()), len(resp.GetDownsampled()))
		}
		got := resp.GetRaw()[0]
		ts, vs := got.GetOccurredAtUnixMs(), got.GetValues()
		if len(ts) != 25 || len(vs) != 25 || len(got.GetInvalidIndexes()) != 0 || got.GetUnit() != "L/min" {
			t.Fatalf("LTTB series: %d times, %d values, invalid %v, unit %q; want 25 valid points in L/min", len(ts), len(vs), got.GetInvalidIndexes(), got.GetUnit())
		}
		if ts[0] != t0+1000 || ts[24] != t0+598_000 {
			t.Fatalf("LTTB keeps %d … %d, want the first and last valid samples %d … %d", ts[0], ts[24], t0+1000, t0+598_000)
		}
		spike := false
		for k := range ts {
			i := int((ts[k] - t0) / 1000)
			if k > 0 && ts[k] <= ts[k-1] {
				t.Fatalf("LTTB times not ascending at %d", k)
			}
			if (ts[k]-t0)%1000 != 0 || vs[k] != flow.Values[i] {
				t.Fatalf("LTTB point %d (%d, %v) is not a stored sample", k, ts[k], vs[k])
			}
			spike = spike || i == 333
		}
		if !spike {
			t.Fatalf("LTTB lost the flow drop at sample 333: %v", ts)
		}

		// The default method still answers in buckets.
		resp, err = e.charting.QuerySamples(as(reviewer), &pb.QuerySamplesRequest{CaseId: caseID, Buckets: 25, Method: pb.DownsampleMethod_DOWNSAMPLE_METHOD_BUCKETS})
		if err != nil || len(resp.GetDownsampled()) != 1 || len(resp.GetDownsampled()[0].GetBuckets()) != 25 {
			t.Fatalf("bucket query: %v, %v", err, resp)
		}
	})
}

func TestQuerySamplesLTTBBadInput(t *testing.T) {
	e := start(t, sqliteBackend(t))
	caseID := e.createCase("OR-L2").GetCaseId()
	for _, tc := range []struct {
		name  string
		req   *pb.QuerySamplesRequest
		field string
	}{
		{"too few points", &pb.QuerySamplesRequest{CaseId: caseID, Buckets: 2, Method: pb.DownsampleMethod_DOWNSAMPLE_METHOD_LTTB}, "buckets"},
		{"raw with LTTB", &pb.QuerySamplesRequest{CaseId: caseID, Method: pb.DownsampleMethod_DOWNSAMPLE_METHOD_LTTB}, "buckets"},
		{"too many points", &pb.QuerySamplesRequest{CaseId: caseID, Buckets: 10_001, Method: pb.DownsampleMethod_DOWNSAMPLE_METHOD_LTTB}, "buckets"},
		{"unknown method", &pb.QuerySamplesRequest{CaseId: caseID, Buckets: 10, Method: 99}, "method"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.charting.QuerySamples(as(reviewer), tc.req)
			wantFieldViolation(t, tc.name, err, tc.field)
		})
	}
}
