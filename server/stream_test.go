package server_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	pb "perfusion/api/perfusion/v1"
	"perfusion/store"
)

// countStored reads every stored sample of a case over a fresh connection,
// as another client would, by (source, channel, time).
func countStored(t *testing.T, e *env, caseID string) map[string]int {
	t.Helper()
	c := pb.NewChartingServiceClient(e.dial())
	resp, err := c.QuerySamples(as(reviewer), &pb.QuerySamplesRequest{CaseId: caseID})
	if err != nil {
		t.Fatalf("query samples: %v", err)
	}
	got := map[string]int{}
	for _, s := range resp.GetRaw() {
		for _, ts := range s.GetOccurredAtUnixMs() {
			got[fmt.Sprintf("%s/%s@%d", s.GetSourceId(), s.GetChannel(), ts)]++
		}
	}
	return got
}

func batchKeys(b *pb.SampleBatch) []string {
	var keys []string
	for _, s := range b.GetSeries() {
		for _, ts := range s.GetOccurredAtUnixMs() {
			keys = append(keys, fmt.Sprintf("%s/%s@%d", b.GetSourceId(), s.GetChannel(), ts))
		}
	}
	return keys
}

// diff reports missing (+) and extra (-) samples.
func diff(want, got map[string]int) string {
	var missing, extra []string
	for k, n := range want {
		if got[k] < n {
			missing = append(missing, "+"+k)
		}
	}
	for k, n := range got {
		if n > want[k] {
			extra = append(extra, fmt.Sprintf("-%s (×%d)", k, n))
		}
	}
	if len(missing)+len(extra) == 0 {
		return ""
	}
	sort.Strings(missing)
	sort.Strings(extra)
	return fmt.Sprintf("%d missing %v, %d extra %v", len(missing), missing[:min(5, len(missing))], len(extra), extra[:min(5, len(extra))])
}

// TestAckMeansCommitted: once a batch is acknowledged, another connection
// reads it; a reconnecting client learns exactly what is stored.
func TestAckMeansCommitted(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b store.Backend) {
		e := start(t, b)
		id := e.createCase("OR-2").GetCaseId()
		t0 := time.Now().Add(-time.Hour).Truncate(time.Second).UnixMilli()
		want := map[string]int{}
		ss := openStream(t, e.charting, id, "hlm-1")
		for seq := int64(1); seq <= 8; seq++ {
			batch := flowBatch("hlm-1", seq, t0+(seq-1)*4000, 4)
			ack := ss.send(batch)
			if ack.GetLastCommittedSequence() != seq || ack.GetDuplicate() {
				t.Fatalf("ack %d = %v", seq, ack)
			}
			for _, k := range batchKeys(batch) {
				want[k]++
			}
			if d := diff(want, countStored(t, e, id)); d != "" {
				t.Fatalf("after ack %d a fresh connection reads: %s", seq, d)
			}
		}

		ss.close()

		// Send one more and drop the connection without waiting for its
		// ack: whatever the new open reports must be exactly what is stored.
		ctx, cancel := context.WithCancel(as(gateway))
		s, err := pb.NewChartingServiceClient(e.dial()).StreamSamples(ctx)
		if err != nil {
			t.Fatalf("stream: %v", err)
		}
		last := flowBatch("hlm-1", 9, t0+8*4000, 4)
		if err := s.Send(openMsg(id)); err != nil {
			t.Fatalf("open: %v", err)
		}
		if err := s.Send(batchMsg(last)); err != nil {
			t.Fatalf("send: %v", err)
		}
		cancel()
		// Wait until the server has finished with the dropped stream (its
		// call is logged when the handler returns), so nothing is still
		// committing while we compare.
		deadline := time.Now().Add(5 * time.Second)
		for strings.Count(e.logs.String(), `"method":"/perfusion.v1.ChartingService/StreamSamples"`) < 2 {
			if time.Now().After(deadline) {
				t.Fatalf("the dropped stream's handler did not end")
			}
			time.Sleep(5 * time.Millisecond)
		}
		again := openStream(t, pb.NewChartingServiceClient(e.dial()), id)
		pos := position(again.opened, "hlm-1")
		again.close()
		if pos != 8 && pos != 9 {
			t.Fatalf("position = %d, want 8 or 9", pos)
		}
		if pos == 9 {
			for _, k := range batchKeys(last) {
				want[k]++
			}
		}
		if d := diff(want, countStored(t, e, id)); d != "" {
			t.Fatalf("reported position %d, but stored samples differ: %s", pos, d)
		}
	})
}

// TestStreamsShuffledAndDuplicated sends three sources' batches shuffled,
// with duplicates, over concurrent streams, then counts every sample back:
// each exactly once, and every source's watermark at its last batch.
func TestStreamsShuffledAndDuplicated(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b store.Backend) {
		e := start(t, b)
		id := e.createCase("OR-4").GetCaseId()
		const sources, perSource, perBatch, streams = 3, 15, 6, 3
		t0 := time.Now().Add(-2 * time.Hour).Truncate(time.Second).UnixMilli()
		want := map[string]int{}
		var all []*pb.SampleBatch
		for src := 0; src < sources; src++ {
			name := fmt.Sprintf("dev-%d", src)
			for seq := int64(1); seq <= perSource; seq++ {
				batch := flowBatch(name, seq, t0+(seq-1)*perBatch*1000, perBatch)
				for _, k := range batchKeys(batch) {
					want[k]++
				}
				all = append(all, batch)
				if seq%4 == 0 {
					all = append(all, batch) // resent
				}
			}
		}
		rng := rand.New(rand.NewPCG(1, 2))
		rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })

		var wg sync.WaitGroup
		errs := make(chan error, streams)
		for k := 0; k < streams; k++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := pb.NewChartingServiceClient(e.dial())
				s, err := c.StreamSamples(as(gateway))
				if err == nil {
					err = s.Send(openMsg(id))
				}
				if err == nil {
					_, err = s.Recv()
				}
				for i := k; i < len(all) && err == nil; i += streams {
					if err = s.Send(batchMsg(all[i])); err == nil {
						var r *pb.StreamSamplesResponse
						if r, err = s.Recv(); err == nil && (r.GetAck().GetSequence() != all[i].GetSequence() || r.GetAck().GetSourceId() != all[i].GetSourceId()) {
							err = fmt.Errorf("ack %v for batch %s/%d", r.GetAck(), all[i].GetSourceId(), all[i].GetSequence())
						}
					}
				}
				if err == nil {
					err = s.CloseSend()
				}
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("stream: %v", err)
			}
		}
		if d := diff(want, countStored(t, e, id)); d != "" {
			t.Fatalf("samples read back: %s", d)
		}
		ss := openStream(t, e.charting, id)
		for src := 0; src < sources; src++ {
			if pos := position(ss.opened, fmt.Sprintf("dev-%d", src)); pos != perSource {
				t.Fatalf("dev-%d position = %d, want %d", src, pos, perSource)
			}
		}
		ss.close()
		v, err := e.record.VerifyRecord(as(reviewer), &pb.VerifyRecordRequest{CaseId: id})
		if err != nil || !v.GetOk() || v.GetSampleBatchesVerified() != sources*perSource {
			t.Fatalf("verify: %v, %v", err, v)
		}
	})
}
