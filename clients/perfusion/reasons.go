package perfusion

import (
	"errors"
	"strconv"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"
)

// ErrSourceTakenOver stops a streamer when another stream opened its case
// and source on the server: two writers share one source id (two gateways
// configured alike, or a copied spool directory). Reconnecting would only
// take the source back and start a tug of war, so the streamer stops; its
// unsent batches stay in the spool.
var ErrSourceTakenOver = errors.New("perfusion: another writer opened this case and source; check that every gateway has its own source id")

// The server's google.rpc.ErrorInfo reasons (see server/stream_owner.go).
const (
	reasonBatchRejected   = "SAMPLE_BATCH_REJECTED"
	reasonSourceTakenOver = "SOURCE_TAKEN_OVER"
)

func errorInfo(err error) *errdetails.ErrorInfo {
	st, ok := status.FromError(err)
	if !ok {
		return nil
	}
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			return ei
		}
	}
	return nil
}

func errorReason(err error) string { return errorInfo(err).GetReason() }

// culpritLocked is the in-flight batch a stream's ending status is about:
// the one the server names, or else the oldest in flight (the server fails
// a stream at its first bad batch, after acknowledging those before it).
func (s *SampleStreamer) culpritLocked(err error) *pending {
	if s.inflight == 0 {
		return nil
	}
	if ei := errorInfo(err); ei.GetReason() == reasonBatchRejected && ei.GetMetadata()["source_id"] == s.sourceID {
		if seq, perr := strconv.ParseInt(ei.GetMetadata()["sequence"], 10, 64); perr == nil {
			for _, q := range s.queue[:s.inflight] {
				if q.local+s.offset == seq {
					return q
				}
			}
		}
	}
	return s.queue[0]
}
