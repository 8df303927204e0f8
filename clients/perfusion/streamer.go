package perfusion

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "perfusion/api/perfusion/v1"
)

// Defaults of StreamerOptions.
const (
	// DefaultMaxBatchSamples is the default StreamerOptions.MaxBatchSamples.
	DefaultMaxBatchSamples = 4096
	// DefaultFlushInterval is the default StreamerOptions.FlushInterval.
	DefaultFlushInterval = time.Second
	// DefaultWindow is the default StreamerOptions.Window.
	DefaultWindow = 32
	// DefaultAckTimeout is the default StreamerOptions.AckTimeout.
	DefaultAckTimeout = 30 * time.Second
	// DefaultSegmentBytes is the default StreamerOptions.SegmentBytes.
	DefaultSegmentBytes = 4 << 20
	// DefaultMaxReconnectDelay is the default
	// StreamerOptions.MaxReconnectDelay.
	DefaultMaxReconnectDelay = 2 * time.Second
)

// ErrClosed is returned by a SampleStreamer's methods after Close.
var ErrClosed = errors.New("perfusion: sample streamer is closed")

// ErrSequenceConflict stops a streamer when the server reports a source
// position this spool cannot have caused: past every sequence it assigned,
// or covering a batch it never sent. Another gateway writes under the same
// source id, or the spool is not the one that streamed this source.
// Sending on would make the server take this gateway's batches for ones it
// already has; they stay in the spool instead. The check is best-effort:
// a batch that was sent (even into a connection that was already dead) or
// recovered after a restart may have reached the server, so for those it
// cannot tell, and one gateway per source id remains the caller's duty.
var ErrSequenceConflict = errors.New("perfusion: the server has batches of this source that this spool did not send")

// StreamerOptions configures a SampleStreamer. The zero value gives the
// defaults.
type StreamerOptions struct {
	// MaxBatchSamples cuts a batch when it holds this many samples (all
	// channels together). Default DefaultMaxBatchSamples; at most
	// MaxBatchSamples.
	MaxBatchSamples int
	// FlushInterval cuts a batch this long after its first sample, so data
	// reaches the record promptly at low rates. Default DefaultFlushInterval.
	FlushInterval time.Duration
	// Window is how many batches may be sent and not yet acknowledged.
	// Default DefaultWindow.
	Window int
	// Durable makes Send fsync the spool before it returns, so the samples
	// survive a power loss, not only a crash of the gateway process. It
	// costs one fsync per Send. Without it, a batch is fsynced when it is
	// cut, before it is first sent; a power loss may then lose the samples
	// of the open batch, never those of a batch the server has seen.
	Durable bool
	// AckTimeout is how long the oldest batch in flight (or the stream's
	// open) may wait for its answer before the stream is deemed dead and
	// re-made. Default DefaultAckTimeout.
	AckTimeout time.Duration
	// SegmentBytes starts a new spool segment once the current one is this
	// large; a segment is deleted when every batch in it is acknowledged.
	// Default DefaultSegmentBytes.
	SegmentBytes int64
	// MaxSpoolBytes bounds the spool's segments on disk (0: no bound).
	// When a Send would grow them past it, as during a long outage, Send
	// fails with ErrSpoolFull and writes nothing: the gateway learns that
	// the samples were not taken, rather than finding a full disk later.
	// Acknowledged segments are deleted, so room returns once the server
	// is reachable again. It must be at least twice SegmentBytes, since
	// the active segment is only deleted after the next one starts.
	MaxSpoolBytes int64
	// MaxReconnectDelay caps the wait between attempts to re-open the
	// stream, below the client's WithBackoff cap when that is higher. A
	// stream carries live device data: after a server restart of ten
	// seconds a back-off doubling towards the client's 30 s cap had grown
	// to 12 s, so ingest resumed about 25 s after the server was back.
	// An attempt against a server that is down costs one refused
	// connection. Default DefaultMaxReconnectDelay.
	MaxReconnectDelay time.Duration
	// OnDeadLetter, when set, is called (from the streamer's goroutine; it
	// must not block for long) for each batch the server rejects.
	OnDeadLetter func(DeadLetter)
}

// Stats counts what a SampleStreamer did since it was opened.
type Stats struct {
	// Recovered is the number of unacknowledged batches found in the spool
	// at open.
	Recovered int64
	// Spooled is the number of batches cut (written and synced to the
	// spool, ready to send).
	Spooled int64
	// Sent is the number of batch sends, resends included.
	Sent int64
	// Resent is the number of sends of a batch that was sent before on an
	// earlier stream.
	Resent int64
	// Acked is the number of batches the server confirmed committed, by an
	// ack or by a resume point at or past them.
	Acked int64
	// Duplicates is the number of acks saying the batch was stored before
	// (a resend of a batch whose ack was lost).
	Duplicates int64
	// DeadLettered is the number of batches the server rejected.
	DeadLettered int64
	// Reconnects is the number of streams opened after the first.
	Reconnects int64
	// Pending is the number of cut batches not yet acknowledged.
	Pending int
	// SpoolFull counts Sends refused with ErrSpoolFull.
	SpoolFull int64
}

// SampleStreamer carries the samples of one source of one case to the
// server. Its guarantees:
//
//   - Once Send returns nil, its samples are in the spool: they survive a
//     crash of the gateway process (and, with Durable, a power loss), and
//     are sent by this streamer or by the next one opened on the same spool
//     directory.
//   - Every batch is sent until the server acknowledges it (its
//     transaction committed), is rejected as invalid (dead letter), or the
//     streamer stops on an error that retrying cannot fix. Resends are
//     byte-identical, so the server stores each sample exactly once.
//   - Batches are numbered per source from 1, sent in order, and at most
//     Window are in flight.
//
// Only one streamer may use a spool directory at a time, and only one
// spool may stream a (case, source). A SampleStreamer is safe for
// concurrent use.
type SampleStreamer struct {
	c                *Client
	caseID, sourceID string
	opts             StreamerOptions
	log              *slog.Logger

	mu        sync.Mutex
	sp        *spool
	open      *builder // the batch Send is filling, or nil
	openTimer *time.Timer
	queue     []*pending // cut batches not yet resolved, in sequence order
	acked     []int64    // local sequences acknowledged and not yet noted in the spool
	inflight  int        // queue[:inflight] are sent on the current stream
	nextLocal int64      // the next local sequence to assign
	offset    int64      // wire sequence = local + offset
	verified  bool       // offset is known (the server was asked once)
	err       error      // why the streamer stopped; never cleared
	closing   bool
	stopped   bool          // files are closed
	streams   int64         // streams opened
	changed   chan struct{} // closed and replaced on every change
	stats     Stats

	wake   chan struct{} // nudges the sender
	cancel context.CancelFunc
	done   chan struct{} // closed when the run loop has returned
}

// pending is a cut batch waiting for its acknowledgement.
type pending struct {
	local   int64
	series  []*pb.SampleSeries
	samples int
	segs    []*segment
	sends   int
	sentAt  time.Time
	// recovered: found in the spool at open; an earlier run may have sent it.
	recovered bool
}

// OpenSampleStreamer opens (creating if need be) the spool in spoolDir for
// samples of sourceID in case caseID, recovers every batch in it that the
// server has not acknowledged — truncating a torn tail a crash left — and
// starts sending in the background. The server need not be reachable.
//
// ctx bounds the opening only; the streamer runs until Close. The
// directory holds one source's spool: reusing it for another case or
// source fails with ErrSpoolMismatch.
func OpenSampleStreamer(ctx context.Context, c *Client, caseID, sourceID, spoolDir string, opts StreamerOptions) (*SampleStreamer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	switch {
	case c == nil:
		return nil, errors.New("perfusion: OpenSampleStreamer needs a Client")
	case caseID == "":
		return nil, errors.New("perfusion: OpenSampleStreamer needs a case id")
	case sourceID == "" || len(sourceID) > MaxSourceIDLen:
		return nil, fmt.Errorf("perfusion: a source id must be 1 to %d bytes", MaxSourceIDLen)
	case spoolDir == "":
		return nil, errors.New("perfusion: OpenSampleStreamer needs a spool directory")
	}
	if opts.MaxBatchSamples <= 0 {
		opts.MaxBatchSamples = DefaultMaxBatchSamples
	}
	opts.MaxBatchSamples = min(opts.MaxBatchSamples, MaxBatchSamples)
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = DefaultFlushInterval
	}
	if opts.Window <= 0 {
		opts.Window = DefaultWindow
	}
	if opts.AckTimeout <= 0 {
		opts.AckTimeout = DefaultAckTimeout
	}
	if opts.MaxReconnectDelay <= 0 {
		opts.MaxReconnectDelay = DefaultMaxReconnectDelay
	}
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = DefaultSegmentBytes
	}
	if opts.MaxSpoolBytes < 0 || opts.MaxSpoolBytes > 0 && opts.MaxSpoolBytes < 2*opts.SegmentBytes {
		return nil, fmt.Errorf("perfusion: MaxSpoolBytes %d must be 0 (no bound) or at least twice SegmentBytes (%d)", opts.MaxSpoolBytes, 2*opts.SegmentBytes)
	}
	log := c.cfg.log.With("case_id", caseID, "source_id", sourceID)
	sp, rec, err := openSpool(spoolDir, caseID, sourceID, log)
	if err != nil {
		return nil, err
	}
	s := &SampleStreamer{c: c, caseID: caseID, sourceID: sourceID, opts: opts, log: log, sp: sp,
		nextLocal: rec.nextLocal, offset: rec.offset, verified: rec.verified,
		changed: make(chan struct{}), wake: make(chan struct{}, 1), done: make(chan struct{})}
	for _, b := range rec.batches {
		s.queue = append(s.queue, &pending{local: b.local, series: b.series, samples: b.samples, segs: b.segs, recovered: true})
	}
	s.stats.Recovered = int64(len(rec.batches))
	if len(rec.batches) > 0 || rec.truncated > 0 {
		log.Info("perfusion: spool recovered", "batches", len(rec.batches), "torn_tails", rec.truncated, "next_sequence", rec.nextLocal+rec.offset)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go s.run(runCtx)
	return s, nil
}

// Send appends samples to the batch being filled and writes them to the
// spool; it does not wait for the network. A batch is cut when it reaches
// MaxBatchSamples, FlushInterval after its first sample, on Flush and
// Close, and when a channel's next sample is not later than the batch's
// last one for that channel (the server wants strictly increasing times
// within a batch); a long series is split over batches.
//
// Send checks each series' shape (a channel, one value per time, strictly
// increasing times, valid invalid_indexes) and fails with InvalidArgument
// and field violations, accepting nothing, when one is wrong. Catalogue
// checks (known channel, plausible value) are the server's: a batch it
// rejects becomes a dead letter. After a stop, Send returns the reason
// (Err); after Close, ErrClosed. On a spool write error nothing of the
// call is kept and the error is returned.
//
// The series are copied; the caller may reuse them.
func (s *SampleStreamer) Send(ctx context.Context, series ...*pb.SampleSeries) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := validateSeries(series); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.err != nil:
		return s.err
	case s.closing || s.stopped:
		return ErrClosed
	}
	p := planner{maxSamples: s.opts.MaxBatchSamples, open: s.open, next: s.nextLocal}
	p.place(series)
	var recs [][]byte
	for _, g := range p.groups {
		if len(g.chunks) == 0 {
			continue
		}
		rec, err := encodeSamples(samplesRec{local: g.local, series: g.chunks})
		if err != nil {
			return fmt.Errorf("perfusion: encode samples: %w", err)
		}
		recs = append(recs, rec)
	}
	if len(recs) > 0 {
		if err := s.checkQuotaLocked(recs); err != nil {
			return err
		}
		if err := s.sp.write(recs...); err != nil {
			return err
		}
	}
	s.nextLocal = p.next
	cut := false
	for _, g := range p.groups {
		if len(g.chunks) > 0 {
			if s.open == nil {
				s.startBatchLocked(g.local)
			}
			s.open.add(g.chunks)
			s.open.addSeg(s.sp.active())
		}
		if g.cut {
			s.cutLocked()
			cut = true
		}
	}
	if cut || s.opts.Durable {
		if err := s.sp.sync(); err != nil {
			s.failLocked(err)
			return s.err
		}
	}
	s.afterWriteLocked(cut)
	return nil
}

// startBatchLocked opens batch local and arms its flush timer.
func (s *SampleStreamer) startBatchLocked(local int64) {
	s.open = newBuilder(local)
	s.openTimer = time.AfterFunc(s.opts.FlushInterval, func() { s.flushTimer(local) })
}

// flushTimer cuts batch local when its FlushInterval has passed.
func (s *SampleStreamer) flushTimer(local int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped || s.err != nil || s.open == nil || s.open.local != local {
		return
	}
	s.cutLocked()
	if err := s.sp.sync(); err != nil {
		s.failLocked(err)
		return
	}
	s.afterWriteLocked(true)
}

// cutLocked closes the open batch and queues it for sending. The caller
// syncs the spool before releasing the lock, so no batch is sent before it
// is durable.
func (s *SampleStreamer) cutLocked() {
	b := s.open
	s.open = nil
	if s.openTimer != nil {
		s.openTimer.Stop()
		s.openTimer = nil
	}
	s.queue = append(s.queue, &pending{local: b.local, series: b.series, samples: b.samples, segs: b.segs})
	s.stats.Spooled++
}

// afterWriteLocked wakes the sender after a cut and starts a new segment
// when the active one is full.
func (s *SampleStreamer) afterWriteLocked(cut bool) {
	if cut {
		s.notifyLocked()
	}
	s.maybeRotateLocked()
}

// maybeRotateLocked starts a new segment when the active one is full.
func (s *SampleStreamer) maybeRotateLocked() {
	if s.sp.active().off < s.opts.SegmentBytes {
		return
	}
	if err := s.sp.rotate(s.nextLocal); err != nil {
		// The active segment stays in use; the next write tries again.
		s.log.Warn("perfusion: spool: cannot start a new segment", "err", err.Error())
	}
}

// notifyLocked wakes everyone waiting for a change.
func (s *SampleStreamer) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// failLocked stops the streamer for good with err.
func (s *SampleStreamer) failLocked(err error) {
	if s.err == nil {
		s.err = fmt.Errorf("perfusion: streamer for source %q stopped: %w", s.sourceID, err)
		s.log.Error("perfusion: sample streamer stopped; unacknowledged batches stay in the spool",
			"code", status.Code(err).String(), "pending", len(s.queue), "err", err.Error())
	}
	s.notifyLocked()
}

// Flush cuts the batch being filled and waits until every batch cut so far
// is acknowledged (or dead-lettered), the streamer stops (its error is
// returned), or ctx ends (ctx's error is returned; the batches stay in the
// spool and keep being sent).
func (s *SampleStreamer) Flush(ctx context.Context) error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return ErrClosed
	}
	if s.err == nil && s.open != nil {
		s.cutLocked()
		if err := s.sp.sync(); err != nil {
			s.failLocked(err)
		} else {
			s.afterWriteLocked(true)
		}
	}
	target := s.nextLocal - 1
	s.mu.Unlock()
	return s.waitFor(ctx, func() bool { return len(s.queue) == 0 || s.queue[0].local > target })
}

// waitFor waits until cond (called with s.mu held) holds, the streamer
// stops, or ctx ends.
func (s *SampleStreamer) waitFor(ctx context.Context, cond func() bool) error {
	for {
		s.mu.Lock()
		if cond() {
			s.mu.Unlock()
			return nil
		}
		if s.err != nil {
			err := s.err
			s.mu.Unlock()
			return err
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Close flushes (see Flush) up to ctx, then stops sending and closes the
// spool. It returns nil when every batch was acknowledged or
// dead-lettered, and the spool then holds no batch; otherwise the error
// says why (ctx's, or the stop reason), and the unacknowledged batches
// stay in the spool for the next OpenSampleStreamer on the directory.
// Nothing is ever lost by closing early.
func (s *SampleStreamer) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closing || s.stopped {
		s.mu.Unlock()
		return ErrClosed
	}
	s.closing = true
	s.mu.Unlock()

	err := s.Flush(ctx)
	s.cancel()
	<-s.done

	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil && s.err == nil && len(s.queue) == 0 && s.open == nil {
		// Everything is acknowledged: a fresh segment carries the numbering
		// on, and the old ones go.
		if rerr := s.sp.rotate(s.nextLocal); rerr != nil {
			s.log.Warn("perfusion: spool: final compaction failed; acknowledged batches will be resent as duplicates", "err", rerr.Error())
		}
	}
	s.stopLocked()
	if err != nil {
		return fmt.Errorf("perfusion: close with %d batches unacknowledged (kept in the spool): %w", len(s.queue), err)
	}
	return nil
}

// stopLocked closes the spool without writing anything.
func (s *SampleStreamer) stopLocked() {
	if s.openTimer != nil {
		s.openTimer.Stop()
		s.openTimer = nil
	}
	s.stopped = true
	s.sp.close()
	s.notifyLocked()
}

// Err returns why the streamer stopped on its own (wrapping the server's
// status, e.g. FailedPrecondition for a closed case, or a spool error), or
// nil while it runs. The unacknowledged batches stay in the spool.
func (s *SampleStreamer) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Done is closed when the streamer stops sending: after Close, or when it
// stops on its own (see Err).
func (s *SampleStreamer) Done() <-chan struct{} { return s.done }

// Stats returns the counters so far.
func (s *SampleStreamer) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Pending = len(s.queue)
	return st
}

// run keeps one stream going until the streamer stops.
func (s *SampleStreamer) run(ctx context.Context) {
	defer close(s.done)
	attempt := 0
	for {
		s.mu.Lock()
		stop := s.err != nil
		s.mu.Unlock()
		if stop || ctx.Err() != nil {
			return
		}
		r := s.runStream(ctx)
		if ctx.Err() != nil {
			return
		}
		if r.progressed || time.Since(r.began) > s.c.cfg.backoffMax {
			attempt = 0
		}
		code := status.Code(r.err)
		switch {
		case r.fatal:
			s.fail(r.err)
			return
		case errorReason(r.err) == reasonSourceTakenOver:
			s.fail(fmt.Errorf("%w: %v", ErrSourceTakenOver, r.err))
			return
		case r.opened && r.culprit != nil && (code == codes.InvalidArgument || code == codes.AlreadyExists):
			if err := s.deadLetter(r.culprit, r.err); err != nil {
				s.fail(err)
				return
			}
			continue // the rest of the window is fine: resend it at once
		case code == codes.FailedPrecondition, code == codes.NotFound, code == codes.PermissionDenied,
			code == codes.Unimplemented, code == codes.InvalidArgument, code == codes.AlreadyExists:
			s.fail(r.err)
			return
		}
		d := backoffDelay(s.c.cfg.backoffInitial, min(s.c.cfg.backoffMax, s.opts.MaxReconnectDelay), attempt)
		attempt++
		s.log.Info("perfusion: sample stream interrupted; reconnecting", "code", code.String(), "in", d.String())
		if sleepCtx(ctx, d) != nil {
			return
		}
		// gRPC keeps its own connection back-off (up to the client's cap),
		// during which a new stream fails at once without trying the
		// server: after ours, try the server now.
		s.c.conn.ResetConnectBackoff()
	}
}

func (s *SampleStreamer) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failLocked(err)
}

// streamResult is how one stream ended.
type streamResult struct {
	began      time.Time
	opened     bool     // the server answered the open
	progressed bool     // at least one batch was acknowledged
	fatal      bool     // err is not the server's and ends the streamer
	culprit    *pending // the oldest unacknowledged batch in flight when it failed
	err        error
}

// errAckTimeout ends a stream that stopped answering.
var errAckTimeout = errors.New("no answer within the ack timeout")

// runStream opens a stream, resumes from the server's position and sends
// until the stream fails or ctx ends.
func (s *SampleStreamer) runStream(ctx context.Context) (r streamResult) {
	r.began = time.Now()
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	defer func() {
		if errors.Is(context.Cause(sctx), errAckTimeout) && ctx.Err() == nil {
			r.err = status.Error(codes.Unavailable, "perfusion: the server did not answer within the ack timeout")
		}
		s.mu.Lock()
		s.inflight = 0
		s.mu.Unlock()
	}()

	stream, err := s.c.charting.StreamSamples(sctx)
	if err != nil {
		r.err = err
		return r
	}
	openTimer := time.AfterFunc(s.opts.AckTimeout, func() { cancel(errAckTimeout) })
	err = stream.Send(&pb.StreamSamplesRequest{Message: &pb.StreamSamplesRequest_Open{Open: &pb.OpenSampleStream{CaseId: s.caseID, SourceIds: []string{s.sourceID}}}})
	var resp *pb.StreamSamplesResponse
	if err == nil || errors.Is(err, io.EOF) { // on EOF, Recv has the real status
		resp, err = stream.Recv()
	}
	openTimer.Stop()
	if err != nil {
		r.err = eofIsUnavailable(err)
		return r
	}
	opened := resp.GetOpened()
	if opened == nil {
		r.err = status.Error(codes.Internal, "perfusion: the server's first stream message was not opened")
		return r
	}
	var w int64
	for _, p := range opened.GetPositions() {
		if p.GetSourceId() == s.sourceID {
			w = p.GetLastCommittedSequence()
		}
	}
	s.mu.Lock()
	err = s.resumeLocked(w)
	s.mu.Unlock()
	if err != nil {
		r.err, r.fatal = err, true
		return r
	}
	r.opened = true

	type recvEnd struct {
		err     error
		culprit *pending
	}
	ended := make(chan recvEnd, 1)
	var progressed atomic.Bool
	go func() {
		for {
			resp, err := stream.Recv()
			if err != nil {
				s.mu.Lock()
				culprit := s.culpritLocked(err)
				s.mu.Unlock()
				ended <- recvEnd{err: err, culprit: culprit}
				return
			}
			if ack := resp.GetAck(); ack != nil && s.onAck(ack) {
				progressed.Store(true)
			}
		}
	}()
	go s.watchdog(sctx, cancel)

	var end recvEnd
	for {
		msg, stop := s.nextSend()
		if stop {
			cancel(nil)
			end = <-ended
			break
		}
		if msg != nil {
			if err := stream.Send(msg); err != nil {
				cancel(nil) // Recv reports the status that ended the stream
				end = <-ended
				break
			}
			continue
		}
		select {
		case <-s.wake:
			continue
		case end = <-ended:
		}
		break
	}
	r.progressed = progressed.Load()
	r.err, r.culprit = eofIsUnavailable(end.err), end.culprit
	return r
}

// eofIsUnavailable turns a stream the server ended without a status into
// Unavailable.
func eofIsUnavailable(err error) error {
	if errors.Is(err, io.EOF) {
		return status.Error(codes.Unavailable, "perfusion: the server ended the stream")
	}
	return err
}

// nextSend returns the next batch to send on the current stream, nil when
// the window is full or nothing waits, and stop when the streamer stops.
func (s *SampleStreamer) nextSend() (msg *pb.StreamSamplesRequest, stop bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil || s.stopped {
		return nil, true
	}
	if s.inflight >= s.opts.Window || s.inflight >= len(s.queue) {
		return nil, false
	}
	q := s.queue[s.inflight]
	s.inflight++
	if q.sends > 0 {
		s.stats.Resent++
	}
	q.sends++
	q.sentAt = time.Now()
	s.stats.Sent++
	return &pb.StreamSamplesRequest{Message: &pb.StreamSamplesRequest_Batch{Batch: s.wireLocked(q)}}, false
}

// wireLocked is q as the server sees it.
func (s *SampleStreamer) wireLocked(q *pending) *pb.SampleBatch {
	return &pb.SampleBatch{SourceId: s.sourceID, Sequence: q.local + s.offset, Series: q.series}
}

// watchdog ends the stream when the oldest batch in flight has waited
// longer than AckTimeout: a network that silently drops packets would
// otherwise hold the stream until TCP gives up, hours later.
func (s *SampleStreamer) watchdog(ctx context.Context, cancel context.CancelCauseFunc) {
	tick := time.NewTicker(max(s.opts.AckTimeout/4, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		s.mu.Lock()
		stale := s.inflight > 0 && time.Since(s.queue[0].sentAt) > s.opts.AckTimeout
		s.mu.Unlock()
		if stale {
			cancel(errAckTimeout)
			return
		}
	}
}

// resumeLocked applies the server's resume point w of the source to a new
// stream. The first time any stream of this spool opens, it fixes the
// offset between local and wire sequences: 0 when the server has nothing
// of the source, so batches are numbered from 1; otherwise the server's
// position, so batches of a fresh spool follow (never overwrite) what an
// earlier spool sent. Later, a position past everything this spool
// numbered is a conflict. Then every batch at or before w is committed.
func (s *SampleStreamer) resumeLocked(w int64) error {
	if !s.verified {
		off := int64(0)
		if w > 0 {
			off = w
			s.log.Warn("perfusion: the server already has batches of this source that this spool never made; numbering continues after them",
				"server_position", w)
		}
		if err := s.sp.write(encodeBase(off)); err != nil {
			return err
		}
		if err := s.sp.sync(); err != nil {
			return err
		}
		s.offset, s.verified = off, true
		s.sp.hdr.offset, s.sp.hdr.verified = off, true
	} else if top := s.nextLocal - 1 + s.offset; w > top {
		return fmt.Errorf("%w: the server is at sequence %d, this spool never went past %d", ErrSequenceConflict, w, top)
	}
	for _, q := range s.queue {
		if q.local+s.offset > w {
			break
		}
		if q.sends == 0 && !q.recovered {
			// Cut in this run and never sent, yet committed: someone else
			// sent this sequence. Dropping it would lose its samples.
			return fmt.Errorf("%w: the server is at sequence %d, and this spool never sent %d", ErrSequenceConflict, w, q.local+s.offset)
		}
	}
	if s.streams > 0 {
		s.stats.Reconnects++
	}
	s.streams++
	s.inflight = 0
	for len(s.queue) > 0 && s.queue[0].local+s.offset <= w {
		s.resolveLocked(0, true)
		s.stats.Acked++
	}
	s.noteAcksLocked()
	s.notifyLocked()
	return nil
}

// onAck resolves an acknowledged batch, and every batch at or before the
// source's resume point. It reports whether anything was resolved.
func (s *SampleStreamer) onAck(ack *pb.SampleBatchAck) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ack.GetSourceId() != s.sourceID || s.stopped {
		return false
	}
	progressed := false
	for i, q := range s.queue {
		if w := q.local + s.offset; w == ack.GetSequence() {
			s.resolveLocked(i, true)
			s.stats.Acked++
			if ack.GetDuplicate() {
				s.stats.Duplicates++
			}
			progressed = true
			break
		} else if w > ack.GetSequence() {
			break
		}
	}
	for len(s.queue) > 0 && s.queue[0].local+s.offset <= ack.GetLastCommittedSequence() {
		s.resolveLocked(0, true)
		s.stats.Acked++
		progressed = true
	}
	if progressed {
		s.noteAcksLocked()
		s.notifyLocked()
	}
	return progressed
}

// noteAcksLocked writes the acknowledged batches to the spool, so a
// restart does not resend them. No sync: a lost note costs a duplicate.
func (s *SampleStreamer) noteAcksLocked() {
	if len(s.acked) == 0 {
		return
	}
	slices.Sort(s.acked)
	var recs [][]byte
	lo := s.acked[0]
	for i := 1; i <= len(s.acked); i++ {
		if i == len(s.acked) || s.acked[i] != s.acked[i-1]+1 {
			recs = append(recs, encodeAck(ackRec{lo: lo, hi: s.acked[i-1]}))
			if i < len(s.acked) {
				lo = s.acked[i]
			}
		}
	}
	s.acked = s.acked[:0]
	if err := s.sp.write(recs...); err != nil {
		s.log.Warn("perfusion: spool: cannot note acknowledgements; those batches would be resent after a restart", "err", err.Error())
		return
	}
	s.maybeRotateLocked()
}

// resolveLocked removes queue[i], acknowledged or dead-lettered, and lets
// the spool drop segments with nothing left pending.
func (s *SampleStreamer) resolveLocked(i int, acked bool) {
	q := s.queue[i]
	if acked {
		s.acked = append(s.acked, q.local)
	}
	if i == 0 {
		s.queue[0] = nil
		s.queue = s.queue[1:]
	} else {
		s.queue = append(s.queue[:i], s.queue[i+1:]...)
	}
	if i < s.inflight {
		s.inflight--
	}
	s.sp.release(q.segs)
}

// deadLetter moves a rejected batch to the dead-letter file (synced), so
// it is never sent again, and reports it.
func (s *SampleStreamer) deadLetter(q *pending, cause error) error {
	s.mu.Lock()
	idx := -1
	for i, p := range s.queue {
		if p == q {
			idx = i
			break
		}
	}
	if idx < 0 { // resolved meanwhile
		s.mu.Unlock()
		return nil
	}
	batch := s.wireLocked(q)
	bb, err := proto.Marshal(batch)
	if err != nil {
		s.mu.Unlock()
		return fmt.Errorf("perfusion: encode dead letter: %w", err)
	}
	sb, err := proto.Marshal(status.Convert(cause).Proto())
	if err != nil {
		s.mu.Unlock()
		return fmt.Errorf("perfusion: encode dead letter: %w", err)
	}
	at := time.Now()
	if err := s.sp.writeDead(deadRec{caseID: s.caseID, local: q.local, wire: batch.Sequence, at: at, status: sb, batch: bb}); err != nil {
		s.mu.Unlock()
		return err
	}
	s.resolveLocked(idx, false)
	s.stats.DeadLettered++
	s.notifyLocked()
	s.mu.Unlock()

	s.log.Error("perfusion: the server rejected a sample batch; it is kept in the dead-letter file and not resent",
		"sequence", batch.Sequence, "samples", q.samples, "code", status.Code(cause).String(), "field_violations", len(FieldViolations(cause)))
	if s.opts.OnDeadLetter != nil {
		s.opts.OnDeadLetter(DeadLetter{CaseID: s.caseID, SourceID: s.sourceID, Sequence: batch.Sequence, Batch: batch, Err: cause, At: at})
	}
	return nil
}

// abandon stops the streamer the way a crash would: no flush, no final
// write, files simply closed. For tests.
func (s *SampleStreamer) abandon() {
	s.cancel()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stopped {
		s.stopLocked()
	}
}
