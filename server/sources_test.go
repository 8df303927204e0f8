package server_test

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"

	pb "perfusion/api/perfusion/v1"
	"perfusion/store"
)

// TestListSources streams from a gateway whose clock is 10 minutes behind
// the server's, over a real connection, and reads the lag back.
func TestListSources(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b store.Backend) {
		e := start(t, b)
		caseID := e.createCase("OR-S1").GetCaseId()
		const behind = 10 * time.Minute
		ss := openStream(t, e.charting, caseID, "hlm-1")
		for seq := int64(1); seq <= 3; seq++ {
			// Five 1-s samples whose newest is "now" on the device's clock.
			ss.send(flowBatch("hlm-1", seq, time.Now().Add(-behind-4*time.Second).UnixMilli(), 5))
		}
		ss.close()

		resp, err := e.charting.ListSources(as(reviewer), &pb.ListSourcesRequest{CaseId: caseID})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetSources()) != 1 {
			t.Fatalf("sources %v, want hlm-1 only", resp.GetSources())
		}
		src := resp.GetSources()[0]
		// The lag is the clock's 10 minutes plus the few milliseconds it
		// took to send and commit a batch.
		if lag := time.Duration(src.GetMinReceiptLagMs()) * time.Millisecond; lag < behind || lag > behind+5*time.Second {
			t.Errorf("min receipt lag %s, want 10 min and a little", lag)
		}
		if src.GetLastReceiptLagMs() < src.GetMinReceiptLagMs() {
			t.Errorf("last lag %d below the minimum %d", src.GetLastReceiptLagMs(), src.GetMinReceiptLagMs())
		}
		if src.GetSourceId() != "hlm-1" || src.GetBatches() != 3 || src.GetAcknowledgedThrough() != 3 || src.GetSamples() != 3*5*int64(len(flowBatch("x", 1, 0, 5).GetSeries())) {
			t.Errorf("source %+v", src)
		}
		if span := src.GetLastSampleAt().AsTime().Sub(src.GetFirstSampleAt().AsTime()); span < 4*time.Second || span > 10*time.Second {
			t.Errorf("device time span %s", span)
		}
		if d := time.Since(src.GetLastReceivedAt().AsTime()); d < 0 || d > time.Minute {
			t.Errorf("last received %s ago", d)
		}

		_, err = e.charting.ListSources(as(reviewer), &pb.ListSourcesRequest{})
		wantFieldViolation(t, "no case id", err, "case_id")
		_, err = e.charting.ListSources(as(reviewer), &pb.ListSourcesRequest{CaseId: uuid.NewString()})
		wantCode(t, "unknown case", err, codes.NotFound)
	})
}
