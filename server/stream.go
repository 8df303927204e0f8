package server

import (
	"errors"
	"io"
	"strconv"

	"github.com/google/uuid"
	"google.golang.org/grpc"

	pb "perfusion/api/perfusion/v1"
	"perfusion/charting"
)

// StreamSamples takes device data: an open, answered with each source's
// resume point, then batches, each acknowledged only after the transaction
// that stored it committed. The first failing batch ends the stream with
// its status; batches acknowledged before it stay stored, and the client
// resumes from the watermark a new stream's open reports.
func (s *chartingService) StreamSamples(stream grpc.BidiStreamingServer[pb.StreamSamplesRequest, pb.StreamSamplesResponse]) error {
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
	pos, err := s.h.store.SourcePositions(ctx, caseID, sources)
	if err != nil {
		return s.h.fail(err)
	}
	opened := &pb.StreamSamplesResponse{Message: &pb.StreamSamplesResponse_Opened{Opened: &pb.SampleStreamOpened{Positions: positionsOut(pos)}}}
	if err := stream.Send(opened); err != nil {
		return err // the transport failed; its status says why
	}
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return s.h.fail(err)
		}
		b := req.GetBatch()
		if b == nil {
			return s.h.fail(&charting.InvalidError{Violations: []charting.FieldViolation{{Field: "batch", Description: "every message after open must be a batch"}}})
		}
		var p parser
		cb := p.batchIn(caseID, b)
		if err := p.err(); err != nil {
			return s.h.fail(err)
		}
		// Each batch commits alone for now; group commit across streams
		// will hand batches to a shared committer here.
		res := s.h.store.AppendSamples(ctx, who, []*charting.SampleBatch{cb})[0]
		if res.Err != nil {
			return s.h.fail(res.Err)
		}
		ack := &pb.StreamSamplesResponse{Message: &pb.StreamSamplesResponse_Ack{Ack: &pb.SampleBatchAck{
			SourceId: cb.SourceID, Sequence: cb.Seq, Duplicate: res.Duplicate, LastCommittedSequence: res.Watermark,
		}}}
		if err := stream.Send(ack); err != nil {
			return err
		}
	}
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
