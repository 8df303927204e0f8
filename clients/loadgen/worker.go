package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/status"

	pb "perfusion/api/perfusion/v1"
)

// stream is one simulated case's StreamSamples stream: what one device
// gateway does during a case. It sends one batch per source per interval of
// device time, keeps at most window batches unacknowledged, and times each
// batch from send to ack.
type stream struct {
	caseID   string
	sources  []*source
	originMs int64         // device time of the first sample slot
	interval time.Duration // device time per batch
	limitMs  int64         // device times stay below this
	window   int
	// realTime paces batches on the wall clock: the batch of device times
	// [originMs+k·interval, +interval) is due when that interval has passed,
	// at wallT0 + (k+1)·interval. Without it batches go as fast as the
	// window allows.
	realTime bool
	wallT0   time.Time

	ctx    context.Context
	cancel context.CancelFunc
	st     pb.ChartingService_StreamSamplesClient
}

// streamResult is what one stream did.
type streamResult struct {
	batchesSent, batchesAcked int64
	samplesAcked              int64
	unacked                   int64
	lat                       latencies
	// originMs and lastMs bound the device times sent; lastMs is the end
	// of the last acknowledged batch.
	originMs, lastMs int64
	// exhausted: the stream stopped at limitMs, not at its deadline.
	exhausted bool
}

type batchKey struct {
	source string
	seq    int64
}

type inflight struct {
	sentAt  time.Time
	samples int64
	endMs   int64
}

// open starts the stream and learns where each source resumes, exactly as
// a reconnecting gateway does: the queried case's live stream continues the
// sequences its history load left.
func (s *stream) open(ctx context.Context, client pb.ChartingServiceClient) (err error) {
	s.ctx, s.cancel = context.WithCancel(ctx)
	defer func() {
		if err != nil {
			s.cancel()
		}
	}()
	st, err := client.StreamSamples(s.ctx)
	if err != nil {
		return err
	}
	ids := make([]string, len(s.sources))
	for i, src := range s.sources {
		ids[i] = src.id
	}
	if err := st.Send(&pb.StreamSamplesRequest{Message: &pb.StreamSamplesRequest_Open{Open: &pb.OpenSampleStream{CaseId: s.caseID, SourceIds: ids}}}); err != nil {
		_, rerr := st.Recv() // the status, when the server ended the stream
		return errors.Join(err, rerr)
	}
	r, err := st.Recv()
	if err != nil {
		return err
	}
	opened := r.GetOpened()
	if opened == nil {
		return errors.New("first response is not opened")
	}
	pos := map[string]int64{}
	for _, p := range opened.Positions {
		pos[p.SourceId] = p.LastCommittedSequence
	}
	for _, src := range s.sources {
		src.nextSeq = pos[src.id] + 1
	}
	s.st = st
	return nil
}

// run sends until deadline (or limitMs), then closes its side and waits up
// to drain for the outstanding acks. Errors are counted in errs by kind;
// batches still unacknowledged after the drain count as errors too, since a
// gateway would have to resend them.
func (s *stream) run(deadline time.Time, drain time.Duration, errs *errorCounts) streamResult {
	defer s.cancel()
	var (
		mu        sync.Mutex
		pending   = make(map[batchKey]inflight, s.window)
		res       streamResult
		abandoned atomic.Bool // we cut the stream: its Canceled is not the server's fault
	)
	res.originMs = s.originMs
	slots := make(chan struct{}, s.window)
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		for {
			r, err := s.st.Recv()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				if !abandoned.Load() {
					errs.add("stream ended: "+status.Code(err).String(), err)
				}
				return
			}
			now := time.Now()
			a := r.GetAck()
			if a == nil {
				errs.add("protocol: response is not an ack", nil)
				continue
			}
			mu.Lock()
			f, ok := pending[batchKey{a.SourceId, a.Sequence}]
			delete(pending, batchKey{a.SourceId, a.Sequence})
			mu.Unlock()
			if !ok {
				errs.add("protocol: ack of a batch not in flight", fmt.Errorf("%s/%d", a.SourceId, a.Sequence))
				continue
			}
			if a.Duplicate { // we never resend: a duplicate means the server had stored it already
				errs.add("duplicate ack of a first send", fmt.Errorf("%s/%d", a.SourceId, a.Sequence))
			} else {
				res.samplesAcked += f.samples
			}
			res.batchesAcked++
			res.lat = append(res.lat, now.Sub(f.sentAt))
			res.lastMs = max(res.lastMs, f.endMs)
			<-slots
		}
	}()

	sendCtx, stopSending := context.WithDeadline(s.ctx, deadline)
	defer stopSending()
	ivMs := s.interval.Milliseconds()
send:
	for k := int64(0); ; k++ {
		from := s.originMs + k*ivMs
		if from >= s.limitMs {
			res.exhausted = true
			break
		}
		to := min(from+ivMs, s.limitMs)
		var due time.Time
		if s.realTime {
			due = s.wallT0.Add(time.Duration(k+1) * s.interval)
			if due.After(deadline) || !sleepUntil(sendCtx, due, recvDone) {
				break
			}
		}
		for _, src := range s.sources {
			b := src.batch(s.originMs, from, to)
			if b == nil {
				continue
			}
			select {
			case slots <- struct{}{}:
			case <-recvDone: // the server ended the stream
				break send
			case <-sendCtx.Done():
				break send
			}
			b.Sequence = src.nextSeq
			key := batchKey{src.id, b.Sequence}
			// In real time a batch is timed from when it was due, not from
			// when a full window let it go: a late send is latency the
			// device sees (no coordinated omission).
			sentAt := due
			if !s.realTime {
				sentAt = time.Now()
			}
			mu.Lock()
			pending[key] = inflight{sentAt: sentAt, samples: batchSamples(b), endMs: to}
			mu.Unlock()
			if err := s.st.Send(&pb.StreamSamplesRequest{Message: &pb.StreamSamplesRequest_Batch{Batch: b}}); err != nil {
				mu.Lock()
				delete(pending, key)
				mu.Unlock()
				if !errors.Is(err, io.EOF) { // io.EOF: the server ended the stream, and Recv says why
					errs.add("send", err)
				}
				break send
			}
			src.nextSeq++
			res.batchesSent++
		}
	}
	_ = s.st.CloseSend()
	select {
	case <-recvDone:
	case <-time.After(drain):
		abandoned.Store(true)
		s.cancel()
		<-recvDone
	case <-s.ctx.Done(): // interrupted
		abandoned.Store(true)
		<-recvDone
	}
	mu.Lock()
	res.unacked = int64(len(pending))
	mu.Unlock()
	errs.addN("batch unacknowledged after the drain", res.unacked)
	return res
}

// sleepUntil waits for t, and reports false if ctx ended or the stream
// failed first.
func sleepUntil(ctx context.Context, t time.Time, failed <-chan struct{}) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	case <-failed:
		return false
	}
}

// noLimit is a device-time limit a real-time stream never reaches.
const noLimit = math.MaxInt64
