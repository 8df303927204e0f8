package server_test

import (
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"perfusion/store"
)

// TestStreamPipelining: gateways send every batch without waiting for
// acknowledgements, on many streams at once. Each stream gets one
// acknowledgement per batch, in the order it sent them, with a resume
// point that never moves backwards and ends at its last batch; every
// sample is stored once.
func TestStreamPipelining(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b store.Backend) {
		e := start(t, b)
		const streams, perStream, n = 12, 40, 3
		t0 := time.Now().Add(-time.Hour).Truncate(time.Second).UnixMilli()
		ids := make([]string, streams)
		for i := range ids {
			ids[i] = e.createCase(fmt.Sprintf("OR-%d", i)).GetCaseId()
		}
		var wg sync.WaitGroup
		errs := make(chan error, 2*streams)
		for i, id := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ss := openStream(t, e.charting, id, "hlm")
				go func() {
					for seq := int64(1); seq <= perStream; seq++ {
						if err := ss.s.Send(batchMsg(flowBatch("hlm", seq, t0+(seq-1)*n*1000, n))); err != nil {
							errs <- fmt.Errorf("stream %d send %d: %w", i, seq, err)
							return
						}
					}
					if err := ss.s.CloseSend(); err != nil {
						errs <- err
					}
				}()
				var last int64
				for seq := int64(1); seq <= perStream; seq++ {
					r, err := ss.s.Recv()
					if err != nil {
						errs <- fmt.Errorf("stream %d ack %d: %w", i, seq, err)
						return
					}
					a := r.GetAck()
					if a.GetSequence() != seq || a.GetLastCommittedSequence() < last || a.GetLastCommittedSequence() < seq {
						errs <- fmt.Errorf("stream %d: ack %d is %v after resume point %d", i, seq, a, last)
						return
					}
					last = a.GetLastCommittedSequence()
				}
				if _, err := ss.s.Recv(); err != io.EOF {
					errs <- fmt.Errorf("stream %d after the last ack: %v, want the end of the stream", i, err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		for i, id := range ids {
			want := map[string]int{}
			for seq := int64(1); seq <= perStream; seq++ {
				for _, k := range batchKeys(flowBatch("hlm", seq, t0+(seq-1)*n*1000, n)) {
					want[k]++
				}
			}
			if d := diff(want, countStored(t, e, id)); d != "" {
				t.Fatalf("case %d: %s", i, d)
			}
		}
	})
}

// TestStreamPipelinedFailure: when a batch in the middle of a pipelined
// stream fails, the batches before it are acknowledged, then the stream
// ends with that batch's status.
func TestStreamPipelinedFailure(t *testing.T) {
	e := start(t, sqliteBackend(t))
	id := e.createCase("OR-1").GetCaseId()
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second).UnixMilli()
	ss := openStream(t, e.charting, id, "hlm")
	bad := flowBatch("hlm", 4, t0+3000*3, 3)
	bad.Series[0].Channel = "warp_drive"
	for seq := int64(1); seq <= 6; seq++ {
		b := flowBatch("hlm", seq, t0+(seq-1)*3000, 3)
		if seq == 4 {
			b = bad
		}
		if err := ss.s.Send(batchMsg(b)); err != nil {
			break // the server may already have ended the stream
		}
	}
	for seq := int64(1); seq <= 3; seq++ {
		r, err := ss.s.Recv()
		if err != nil || r.GetAck().GetSequence() != seq {
			t.Fatalf("ack %d: %v, %v", seq, r, err)
		}
	}
	_, err := ss.s.Recv()
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("after the bad batch: %v, want InvalidArgument", err)
	}
}
