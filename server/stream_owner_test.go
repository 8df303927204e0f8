package server_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"perfusion/server"
	"perfusion/store"
)

func errorInfo(st *status.Status) *errdetails.ErrorInfo {
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			return ei
		}
	}
	return nil
}

// TestStreamNamesRejectedBatch: the status that ends a stream names the
// batch it is about, in its text and in an ErrorInfo, and keeps the field
// violations; the batches before it are acknowledged and stored.
func TestStreamNamesRejectedBatch(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b store.Backend) {
		e := start(t, b)
		id := e.createCase("OR-4").GetCaseId()
		t0 := time.Now().Add(-time.Hour).Truncate(time.Second).UnixMilli()
		ss := openStream(t, e.charting, id, "hlm-1")
		ss.send(flowBatch("hlm-1", 1, t0, 4))
		ss.send(flowBatch("hlm-1", 2, t0+4000, 4))

		bad := flowBatch("hlm-1", 3, t0+8000, 4)
		bad.Series[0].InvalidIndexes = []int32{99}
		if err := ss.s.Send(batchMsg(bad)); err != nil {
			t.Fatal(err)
		}
		_, err := ss.s.Recv()
		wantFieldViolation(t, "bad batch", err, "batch.series[0].invalid_indexes[0]")
		st := status.Convert(err)
		if !strings.Contains(st.Message(), "sample batch hlm-1#3: ") {
			t.Fatalf("message %q does not name the batch", st.Message())
		}
		ei := errorInfo(st)
		if ei.GetReason() != server.ReasonBatchRejected || ei.GetMetadata()["source_id"] != "hlm-1" || ei.GetMetadata()["sequence"] != "3" {
			t.Fatalf("error info %v, want %s for hlm-1 #3", ei, server.ReasonBatchRejected)
		}

		// Same sequence, different content: AlreadyExists, named too.
		ss = openStream(t, e.charting, id, "hlm-1")
		if err := ss.s.Send(batchMsg(flowBatch("hlm-1", 2, t0+4000, 3))); err != nil {
			t.Fatal(err)
		}
		_, err = ss.s.Recv()
		st = wantCode(t, "conflicting resend", err, codes.AlreadyExists)
		if ei := errorInfo(st); ei.GetMetadata()["sequence"] != "2" || !strings.Contains(st.Message(), "hlm-1#2") {
			t.Fatalf("conflict status %q %v does not name batch 2", st.Message(), ei)
		}
		if got := position(openStream(t, e.charting, id, "hlm-1").opened, "hlm-1"); got != 2 {
			t.Fatalf("position after the rejected batch = %d, want 2", got)
		}
	})
}

// TestSecondWriterTakesOverSource: a second stream opening the same case and
// source ends the first with Aborted and ReasonSourceTakenOver (what a
// reconnecting gateway needs, and how two writers on one id are noticed);
// the second stream goes on, and the server logs the takeover.
func TestSecondWriterTakesOverSource(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b store.Backend) {
		e := start(t, b)
		id := e.createCase("OR-5").GetCaseId()
		other := e.createCase("OR-6").GetCaseId()
		t0 := time.Now().Add(-time.Hour).Truncate(time.Second).UnixMilli()
		first := openStream(t, e.charting, id, "hlm-1", "gas-1")
		first.send(flowBatch("hlm-1", 1, t0, 4))
		// Same source id on another case is another source: no takeover.
		elsewhere := openStream(t, e.charting, other, "hlm-1")

		second := openStream(t, e.charting, id, "hlm-1")
		if got := position(second.opened, "hlm-1"); got != 1 {
			t.Fatalf("second stream's position %d, want 1", got)
		}
		_, err := first.s.Recv()
		st := wantCode(t, "first stream after takeover", err, codes.Aborted)
		if ei := errorInfo(st); ei.GetReason() != server.ReasonSourceTakenOver || ei.GetMetadata()["source_id"] != "hlm-1" {
			t.Fatalf("takeover status %q %v", st.Message(), ei)
		}
		if ack := second.send(flowBatch("hlm-1", 2, t0+4000, 4)); ack.GetLastCommittedSequence() != 2 {
			t.Fatalf("second stream ack %v", ack)
		}
		second.close()
		if ack := elsewhere.send(flowBatch("hlm-1", 1, t0, 4)); ack.GetLastCommittedSequence() != 1 {
			t.Fatalf("other case's stream ack %v", ack)
		}
		elsewhere.close()
		if !strings.Contains(e.logs.String(), "sample source taken over") {
			t.Fatalf("takeover not logged:\n%s", e.logs.String())
		}
	})
}
