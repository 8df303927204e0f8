package server

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"

	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Error reasons (google.rpc.ErrorInfo) of StreamSamples, so a client can act
// on a failure without parsing its text.
const (
	// ReasonBatchRejected names the batch that ended a stream, in metadata
	// "source_id" and "sequence".
	ReasonBatchRejected = "SAMPLE_BATCH_REJECTED"
	// ReasonSourceTakenOver ends a stream because another stream opened the
	// same case and source; metadata "source_id".
	ReasonSourceTakenOver = "SOURCE_TAKEN_OVER"
	errorDomain           = "perfusion.v1"
)

// errTakenOver is the cancellation cause of a stream whose source another
// stream opened.
type errTakenOver struct{ source string }

func (e errTakenOver) Error() string { return "source " + e.source + " taken over by another stream" }

// sourceOwners records which stream writes each (case, source) on this
// server. One source has one writer: a device gateway that reconnects opens
// a new stream before the server has noticed that the old one is dead, so
// the newest stream always wins and the older one is ended with
// ReasonSourceTakenOver. A live client that receives that reason knows a
// second writer uses its source id — a configuration error to stop on, not
// a network blip to retry — and the server logs every takeover.
//
// The registry is per server process; two writers connected to different
// servers are caught later, when their batches' contents conflict.
type sourceOwners struct {
	log *slog.Logger
	mu  sync.Mutex
	by  map[ownerKey]*ownerSlot
}

type ownerKey struct {
	caseID uuid.UUID
	source string
}

type ownerSlot struct {
	cancel context.CancelCauseFunc
}

func newSourceOwners(log *slog.Logger) *sourceOwners {
	return &sourceOwners{log: log, by: make(map[ownerKey]*ownerSlot)}
}

// claim makes the stream whose context cancel ends the owner of each source,
// ending any previous owner, and returns the release to call when the stream
// ends.
func (o *sourceOwners) claim(caseID uuid.UUID, sources []string, cancel context.CancelCauseFunc) (release func()) {
	slot := &ownerSlot{cancel: cancel}
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, src := range sources {
		k := ownerKey{caseID, src}
		if prev := o.by[k]; prev != nil && prev != slot {
			prev.cancel(errTakenOver{source: src})
			o.log.Warn("sample source taken over by a newer stream; if this repeats, two writers share one source id",
				"case_id", caseID.String(), "source_id", src)
		}
		o.by[k] = slot
	}
	return func() {
		o.mu.Lock()
		defer o.mu.Unlock()
		for _, src := range sources {
			k := ownerKey{caseID, src}
			if o.by[k] == slot {
				delete(o.by, k)
			}
		}
	}
}

// takenOverStatus is the status of a stream ended by a takeover.
func takenOverStatus(cause error) (error, bool) {
	var t errTakenOver
	if !errors.As(cause, &t) {
		return nil, false
	}
	st := status.New(codes.Aborted, "another stream opened sample source "+t.source+" of this case; one source has one writer")
	return withDetails(st, &errdetails.ErrorInfo{Reason: ReasonSourceTakenOver, Domain: errorDomain,
		Metadata: map[string]string{"source_id": t.source}}), true
}

// nameBatch adds the failing batch's source and sequence to a stream's
// status, in its text and as an ErrorInfo, so the gateway (and the person
// reading its log) knows which batch was refused. Source ids and sequence
// numbers identify devices, never patients.
func nameBatch(err error, source string, seq int64) error {
	st, ok := status.FromError(err)
	if !ok || st.Code() == codes.Unavailable || st.Code() == codes.Canceled {
		return err // not about the batch: the server or the call failed
	}
	if len(source) > 64 {
		source = source[:64]
	}
	ref := source + "#" + strconv.FormatInt(seq, 10)
	p := st.Proto()
	p.Message = "sample batch " + ref + ": " + p.Message
	named := status.FromProto(p)
	return withDetails(named, &errdetails.ErrorInfo{Reason: ReasonBatchRejected, Domain: errorDomain,
		Metadata: map[string]string{"source_id": source, "sequence": strconv.FormatInt(seq, 10)}})
}
