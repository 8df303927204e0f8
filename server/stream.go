package server

import (
	"context"
	"errors"
	"io"
	"strconv"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "perfusion/api/perfusion/v1"
	"perfusion/charting"
	"perfusion/store/ingest"
)

// DefaultStreamWindow is how many batches one stream may have submitted and
// not yet acknowledged. A few let a gateway keep sending while earlier
// batches commit (a commit takes a few milliseconds, a batch's round trip
// over a hospital network about as much), without one stream filling the
// shared queue.
const DefaultStreamWindow = 8

// samplesService is the ChartingService with StreamSamples fed into the
// server's shared group committer. The other methods are chartingService's.
type samplesService struct {
	*chartingService
	ingest *ingest.Committer
	window int
	owners *sourceOwners
	// observer is told of every acknowledged batch.
	observer Observer
}

// inflight is one batch a stream has handed on: its ticket, or the error
// that ends the stream at this point.
type inflight struct {
	ticket   *ingest.Ticket
	sourceID string
	seq      int64
	err      error
	// batchErr: err is about this batch (sourceID, seq), so the status
	// names it.
	batchErr bool
	// received is when the batch arrived; samples is its size.
	received time.Time
	samples  int
}

// StreamSamples takes device data: an open, answered with each source's
// resume point, then batches. Batches go to the shared committer, which
// stores many streams' batches in one transaction; each is acknowledged
// only after that transaction committed, in the order the stream sent them.
// A stream may have up to the window's batches awaiting acknowledgement;
// beyond that, and whenever the committer's queue is full, the server stops
// reading the stream, so gRPC flow control slows the sender.
//
// The first failing batch ends the stream with its status, after the
// acknowledgements of the batches before it. Batches sent after it may
// have been stored too; the client resumes from the watermark a new
// stream's open reports, and a resent stored batch is acknowledged as a
// duplicate.
func (s *samplesService) StreamSamples(stream grpc.BidiStreamingServer[pb.StreamSamplesRequest, pb.StreamSamplesResponse]) error {
	ctx := stream.Context()
	who, err := actor(ctx)
	if err != nil {
		return err
	}
	first, err := stream.Recv()
	if errors.Is(err, io.EOF) {
		return nil // the client left before opening: nothing to do
	} else if err != nil {
		return s.h.fail(err)
	}
	caseID, sources, err := openIn(first)
	if err != nil {
		return s.h.fail(err)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	defer s.owners.claim(caseID, sources, cancel)()
	pos, err := s.h.store.SourcePositions(ctx, caseID, sources)
	if err != nil {
		return s.h.fail(err)
	}
	opened := &pb.StreamSamplesResponse{Message: &pb.StreamSamplesResponse_Opened{Opened: &pb.SampleStreamOpened{Positions: positionsOut(pos)}}}
	if err := stream.Send(opened); err != nil {
		return err // the transport failed; its status says why
	}

	// This goroutine acknowledges; another one reads and submits. Reading
	// must not wait for acknowledgements (that is the pipelining), and the
	// handler must be able to return while the reader is blocked in Recv,
	// which only the end of the call unblocks.
	pending := make(chan inflight, s.window)
	stop := make(chan struct{})
	defer close(stop)
	go s.receive(ctx, stream, caseID, who, pending, stop)
	return s.acknowledge(ctx, stream, pending)
}

// receive reads batches and submits them, handing each ticket to the
// acknowledger in order, until the client half-closes, something fails
// (handed on as the last item) or the handler returns (stop).
func (s *samplesService) receive(ctx context.Context, stream grpc.BidiStreamingServer[pb.StreamSamplesRequest, pb.StreamSamplesResponse],
	caseID uuid.UUID, who string, pending chan<- inflight, stop <-chan struct{}) {
	defer close(pending)
	hand := func(f inflight) bool {
		select {
		case pending <- f:
			return true
		case <-stop:
			return false
		}
	}
	for {
		req, err := stream.Recv()
		received := time.Now()
		if errors.Is(err, io.EOF) {
			return
		} else if err != nil {
			hand(inflight{err: err})
			return
		}
		b := req.GetBatch()
		if b == nil {
			hand(inflight{err: &charting.InvalidError{Violations: []charting.FieldViolation{{Field: "batch", Description: "every message after open must be a batch"}}}})
			return
		}
		var p parser
		cb := p.batchIn(caseID, b)
		if err := p.err(); err != nil {
			hand(inflight{err: err, sourceID: b.GetSourceId(), seq: b.GetSequence(), batchErr: true})
			return
		}
		cb.Actor = who
		n := cb.SampleCount() // the committer owns cb once submitted
		t, err := s.ingest.Submit(ctx, cb)
		if err != nil {
			hand(inflight{err: err, sourceID: cb.SourceID, seq: cb.Seq, batchErr: true})
			return
		}
		if !hand(inflight{ticket: t, sourceID: cb.SourceID, seq: cb.Seq, received: received, samples: n}) {
			return
		}
	}
}

// acknowledge waits for each handed-on batch's commit, in order, and
// acknowledges it; the first error ends the stream.
func (s *samplesService) acknowledge(ctx context.Context, stream grpc.BidiStreamingServer[pb.StreamSamplesRequest, pb.StreamSamplesResponse], pending <-chan inflight) error {
	// Two commits may run at once, so a batch's result can carry a
	// watermark computed before an earlier batch of the same source
	// committed. Every watermark was true when computed and the stored one
	// only grows, so the highest seen is reported: a client never sees its
	// resume point move backwards.
	marks := make(map[string]int64)
	for {
		var f inflight
		var more bool
		select {
		case f, more = <-pending:
		case <-ctx.Done():
			return s.streamFail(ctx, ctx.Err())
		}
		if !more {
			return nil
		}
		if f.err != nil {
			return s.batchFail(ctx, f, f.err)
		}
		res, err := f.ticket.Wait(ctx)
		if err == nil {
			err = res.Err
		}
		if err != nil {
			f.batchErr = true
			return s.batchFail(ctx, f, err)
		}
		w := max(res.Watermark, marks[f.sourceID])
		marks[f.sourceID] = w
		ack := &pb.StreamSamplesResponse{Message: &pb.StreamSamplesResponse_Ack{Ack: &pb.SampleBatchAck{
			SourceId: f.sourceID, Sequence: f.seq, Duplicate: res.Duplicate, LastCommittedSequence: w,
		}}}
		if err := stream.Send(ack); err != nil {
			return err
		}
		s.observer.SamplesAcked(f.samples, time.Since(f.received))
	}
}

// batchFail is streamFail naming the batch when the error is about it.
func (s *samplesService) batchFail(ctx context.Context, f inflight, err error) error {
	st := s.streamFail(ctx, err)
	if !f.batchErr {
		return st
	}
	return nameBatch(st, f.sourceID, f.seq)
}

// streamFail maps a stream's error to its status. A commit that failed for
// the server's own reasons (shutting down, the commit's time limit) while
// the client was still there is Unavailable: nothing is wrong with the
// batch, and the client should reconnect and resend.
func (s *samplesService) streamFail(ctx context.Context, err error) error {
	if st, ok := takenOverStatus(context.Cause(ctx)); ok {
		return st
	}
	serverSide := errors.Is(err, ingest.ErrClosed) ||
		(ctx.Err() == nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)))
	if serverSide {
		return status.Error(codes.Unavailable, "the samples could not be committed now; reconnect and resend from the reported position")
	}
	return s.h.fail(err)
}

// openIn checks the stream's first message.
func openIn(req *pb.StreamSamplesRequest) (uuid.UUID, []string, error) {
	var p parser
	open := req.GetOpen()
	if open == nil {
		p.v.Add("open", "the first message of a stream must be open")
		return uuid.Nil, nil, p.err()
	}
	id := p.id("open.case_id", open.GetCaseId(), true)
	for i, src := range open.GetSourceIds() {
		if src == "" || len(src) > charting.MaxSourceIDLen {
			p.v.Add("open.source_ids["+strconv.Itoa(i)+"]", "must be 1 to %d bytes", charting.MaxSourceIDLen)
		}
	}
	return id, open.GetSourceIds(), p.err()
}
