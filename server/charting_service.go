package server

import (
	"context"
	"strings"
	"time"

	pb "perfusion/api/perfusion/v1"
	"perfusion/charting"
	"perfusion/store"
)

// chartingService implements perfusionv1.ChartingService. StreamSamples is
// in stream.go.
type chartingService struct {
	pb.UnimplementedChartingServiceServer
	h *handlers
	// watchPoll is Config.WatchPoll (watch_service.go).
	watchPoll time.Duration
	// stopping closes when Shutdown begins: WatchCase streams, which
	// never end on their own, end then so the graceful stop can finish.
	stopping <-chan struct{}
}

// RecordEntry records an operator entry, idempotent on entry_id.
func (s *chartingService) RecordEntry(ctx context.Context, req *pb.RecordEntryRequest) (*pb.RecordEntryResponse, error) {
	who, err := actor(ctx)
	if err != nil {
		return nil, err
	}
	var p parser
	p.require("entry", req.GetEntry() != nil)
	e := p.entryIn("entry.", req.GetEntry(), "entry.case_id")
	if err := p.err(); err != nil {
		return nil, s.h.fail(err)
	}
	stored, dup, err := s.h.store.RecordEntry(ctx, who, e)
	if err != nil {
		return nil, s.h.fail(err)
	}
	return &pb.RecordEntryResponse{Entry: entryOut(stored), Duplicate: dup}, nil
}

// CorrectEntry supersedes an entry with a replacement, or voids it.
func (s *chartingService) CorrectEntry(ctx context.Context, req *pb.CorrectEntryRequest) (*pb.CorrectEntryResponse, error) {
	who, err := actor(ctx)
	if err != nil {
		return nil, err
	}
	var p parser
	c := store.Correction{
		CaseID:     p.id("case_id", req.GetCaseId(), true),
		EntryID:    p.id("entry_id", req.GetEntryId(), true),
		Supersedes: p.id("supersedes_entry_id", req.GetSupersedesEntryId(), true),
		Reason:     req.GetReason(),
	}
	switch r := req.GetReplacement(); {
	case req.GetVoid() && r != nil:
		p.v.Add("replacement", "a void carries no replacement")
	case !req.GetVoid() && r == nil:
		// The store reads a missing replacement as a void; a client that
		// forgot the replacement must not void an entry by accident.
		p.v.Add("replacement", "required unless void is set")
	case r != nil:
		// Only the replacement's time and detail are read: its ids are the
		// request's own.
		c.Replacement = &charting.Entry{OccurredAt: p.time("replacement.occurred_at", r.GetOccurredAt()), Detail: p.detailIn("replacement.", r)}
	}
	if err := p.err(); err != nil {
		return nil, s.h.fail(renameFields(err, correctionFields))
	}
	stored, dup, err := s.h.store.CorrectEntry(ctx, who, c)
	if err != nil {
		return nil, s.h.fail(renameFields(err, correctionFields))
	}
	return &pb.CorrectEntryResponse{Entry: entryOut(stored), Duplicate: dup}, nil
}

// correctionFields maps the domain's entry field names to
// CorrectEntryRequest's: the ids are top-level, the rest belongs to the
// replacement.
func correctionFields(f string) string {
	switch {
	case f == "entry.entry_id":
		return "entry_id"
	case f == "entry.case_id":
		return "case_id"
	case f == "entry.detail":
		return "replacement"
	case strings.HasPrefix(f, "entry."):
		return "replacement." + strings.TrimPrefix(f, "entry.")
	}
	return f
}

// ListEntries returns the current view of a case's entries, or the history.
func (s *chartingService) ListEntries(ctx context.Context, req *pb.ListEntriesRequest) (*pb.ListEntriesResponse, error) {
	var p parser
	id := p.id("case_id", req.GetCaseId(), true)
	if err := p.err(); err != nil {
		return nil, s.h.fail(err)
	}
	entries, err := s.h.store.ListEntries(ctx, id, req.GetIncludeHistory())
	if err != nil {
		return nil, s.h.fail(err)
	}
	out := &pb.ListEntriesResponse{Entries: make([]*pb.Entry, 0, len(entries))}
	for i := range entries {
		out.Entries = append(out.Entries, entryOut(&entries[i]))
	}
	return out, nil
}

// ListSources summarises a case's device sources, with their clock lag.
func (s *chartingService) ListSources(ctx context.Context, req *pb.ListSourcesRequest) (*pb.ListSourcesResponse, error) {
	var p parser
	id := p.id("case_id", req.GetCaseId(), true)
	if err := p.err(); err != nil {
		return nil, s.h.fail(err)
	}
	sums, err := s.h.store.SourceSummaries(ctx, id)
	if err != nil {
		return nil, s.h.fail(err)
	}
	out := &pb.ListSourcesResponse{Sources: make([]*pb.SourceSummary, 0, len(sums))}
	for _, m := range sums {
		out.Sources = append(out.Sources, &pb.SourceSummary{SourceId: m.SourceID, Batches: m.Batches, Samples: m.Samples,
			AcknowledgedThrough: m.AcknowledgedThrough, FirstSampleAt: ts(time.UnixMilli(m.FirstSampleMs)),
			LastSampleAt: ts(time.UnixMilli(m.LastSampleMs)), LastReceivedAt: ts(m.LastReceived),
			MinReceiptLagMs: m.MinReceiptLagMs, LastReceiptLagMs: m.LastReceiptLagMs,
			ClockImplausible: m.ClockImplausible, ImplausibleBatches: m.ImplausibleBatches, ImplausibleSamples: m.ImplausibleSamples,
			ImplausibleSequences: seqRangesOut(m.ImplausibleSeqs), LastBatchImplausible: m.LastImplausible})
	}
	return out, nil
}

// QuerySamples returns device data raw or in buckets.
func (s *chartingService) QuerySamples(ctx context.Context, req *pb.QuerySamplesRequest) (*pb.QuerySamplesResponse, error) {
	var p parser
	q := store.SampleQuery{
		CaseID:   p.id("case_id", req.GetCaseId(), true),
		Channels: req.GetChannels(),
		SourceID: req.GetSourceId(),
		Buckets:  int(req.GetBuckets()),
	}
	if t := p.time("start", req.GetStart()); !t.IsZero() {
		q.FromMs = t.UnixMilli()
	}
	if t := p.time("end", req.GetEnd()); !t.IsZero() {
		q.ToMs = t.UnixMilli()
	}
	switch req.GetMethod() {
	case pb.DownsampleMethod_DOWNSAMPLE_METHOD_UNSPECIFIED, pb.DownsampleMethod_DOWNSAMPLE_METHOD_BUCKETS:
	case pb.DownsampleMethod_DOWNSAMPLE_METHOD_LTTB:
		if q.Buckets < 3 || q.Buckets > store.MaxBuckets {
			p.v.Add("buckets", "must be 3 to %d points per series with method LTTB", store.MaxBuckets)
		}
	default:
		p.v.Add("method", "unknown downsampling method %d", req.GetMethod())
	}
	if err := p.err(); err != nil {
		return nil, s.h.fail(err)
	}
	if req.GetMethod() == pb.DownsampleMethod_DOWNSAMPLE_METHOD_LTTB {
		out, err := s.queryLTTB(ctx, q)
		if err != nil {
			return nil, s.h.fail(err)
		}
		return out, nil
	}
	r, err := s.h.store.QuerySamples(ctx, q)
	if err != nil {
		return nil, s.h.fail(err)
	}
	return samplesOut(s.h.store.Catalogue(), r), nil
}

func seqRangesOut(rs []store.SeqRange) []*pb.SequenceRange {
	out := make([]*pb.SequenceRange, 0, len(rs))
	for _, r := range rs {
		out = append(out, &pb.SequenceRange{From: r.From, To: r.To})
	}
	return out
}
