package server_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "perfusion/api/perfusion/v1"
	"perfusion/server"
	"perfusion/store"
	"perfusion/store/postgres"
	"perfusion/store/sqlite"
)

// refuseSource makes the database itself refuse every sample batch of
// source with a trigger whose message holds marker: the fault a value the
// database cannot store (a NUL byte in PostgreSQL text) or a constraint
// causes, injected past the server's validation.
func refuseSource(t *testing.T, b store.Backend, source, marker string) {
	t.Helper()
	quote := func(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
	switch b := b.(type) {
	case *postgres.Backend:
		ctx := context.Background()
		for _, q := range []string{
			`CREATE FUNCTION refuse_source() RETURNS trigger LANGUAGE plpgsql AS $$
				BEGIN
					IF NEW.source_id = ` + quote(source) + ` THEN RAISE EXCEPTION ` + quote(marker) + `; END IF;
					RETURN NEW;
				END $$`,
			`CREATE TRIGGER refuse_source BEFORE INSERT ON sample_batches FOR EACH ROW EXECUTE FUNCTION refuse_source()`,
		} {
			if _, err := b.Pool().Exec(ctx, q); err != nil {
				t.Fatalf("refuse source: %v", err)
			}
		}
	case *sqlite.Backend:
		db, err := sql.Open("sqlite", "file:"+b.Path()+"?_pragma=busy_timeout(5000)")
		if err != nil {
			t.Fatalf("refuse source: %v", err)
		}
		defer db.Close()
		if _, err := db.Exec(`CREATE TRIGGER refuse_source BEFORE INSERT ON sample_batches
			WHEN NEW.source_id = ` + quote(source) + ` BEGIN SELECT RAISE(ABORT, ` + quote(marker) + `); END`); err != nil {
			t.Fatalf("refuse source: %v", err)
		}
	default:
		t.Fatalf("refuse source: no way to install a trigger in %T", b)
	}
}

// TestRefusedBatchCutsOnlyItsStream: 20 gateways stream pipelined batches,
// one case each, over their own connections, through the shared group
// committer, while a 21st gateway keeps sending, after a good batch, a
// batch the database refuses (a trigger, not validation). Only the 21st's
// streams end, each with InvalidArgument naming its poison batch and
// carrying neither SQL nor the database's message; the 20 get every
// acknowledgement and a clean end, every sample is read back once, and
// every record verifies.
func TestRefusedBatchCutsOnlyItsStream(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b store.Backend) {
		const marker = "refused-by-test-trigger"
		refuseSource(t, b, "poison", marker)
		// A longer gathering than the default puts the poison in groups
		// with many streams' batches.
		e := start(t, b, func(c *server.Config) { c.Ingest.MaxDelay = 5 * time.Millisecond })
		const streams, perStream, n = 20, 30, 3
		t0 := time.Now().Add(-time.Hour).Truncate(time.Second).UnixMilli()
		at := func(seq int64) int64 { return t0 + (seq-1)*n*1000 }
		ids := make([]string, streams)
		for i := range ids {
			ids[i] = e.createCase(fmt.Sprintf("OR-%d", i)).GetCaseId()
		}
		poisonCase := e.createCase("OR-P").GetCaseId()

		var wg sync.WaitGroup
		errs := make(chan error, 2*streams+1)
		for i, id := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ss := openStream(t, pb.NewChartingServiceClient(e.dial()), id, "hlm")
				go func() {
					for seq := int64(1); seq <= perStream; seq++ {
						if err := ss.s.Send(batchMsg(flowBatch("hlm", seq, at(seq), n))); err != nil {
							errs <- fmt.Errorf("stream %d send %d: %w", i, seq, err)
							return
						}
					}
					if err := ss.s.CloseSend(); err != nil {
						errs <- err
					}
				}()
				for seq := int64(1); seq <= perStream; seq++ {
					r, err := ss.s.Recv()
					if err != nil {
						errs <- fmt.Errorf("stream %d was cut at batch %d: %w", i, seq, err)
						return
					}
					if a := r.GetAck(); a.GetSequence() != seq || a.GetLastCommittedSequence() < seq {
						errs <- fmt.Errorf("stream %d: ack %v for batch %d", i, a, seq)
						return
					}
				}
				if _, err := ss.s.Recv(); !errors.Is(err, io.EOF) {
					errs <- fmt.Errorf("stream %d after its last ack: %v, want a clean end", i, err)
				}
			}()
		}

		// The poison gateway: each stream sends a good batch and the poison,
		// pipelined, and must get the good one's ack, then the refusal.
		stop := make(chan struct{})
		var refusals atomic.Int64
		var pw sync.WaitGroup
		pw.Add(1)
		go func() {
			defer pw.Done()
			c := pb.NewChartingServiceClient(e.dial())
			for seq := int64(1); ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				ss := openStream(t, c, poisonCase, "hlm", "poison")
				err := ss.s.Send(batchMsg(flowBatch("hlm", seq, at(seq), n)))
				if err == nil {
					err = ss.s.Send(batchMsg(flowBatch("poison", 1, at(1), n)))
				}
				var r *pb.StreamSamplesResponse
				if err == nil {
					r, err = ss.s.Recv()
				}
				if err != nil || r.GetAck().GetSequence() != seq {
					errs <- fmt.Errorf("poison gateway, good batch %d: %v, %v", seq, r, err)
					return
				}
				_, err = ss.s.Recv()
				if err := wantRefusal(err, marker); err != nil {
					errs <- fmt.Errorf("poison batch, send %d: %w", seq, err)
					return
				}
				refusals.Add(1)
			}
		}()
		wg.Wait()
		close(stop)
		pw.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if t.Failed() {
			return
		}
		sent := refusals.Load()
		if sent == 0 {
			t.Fatal("the poison batch was never sent")
		}
		t.Logf("the poison batch was refused %d times while the 20 streams sent", sent)

		for i, id := range ids {
			want := map[string]int{}
			for seq := int64(1); seq <= perStream; seq++ {
				for _, k := range batchKeys(flowBatch("hlm", seq, at(seq), n)) {
					want[k]++
				}
			}
			if d := diff(want, countStored(t, e, id)); d != "" {
				t.Errorf("stream %d: %s", i, d)
			}
			v, err := e.record.VerifyRecord(as(reviewer), &pb.VerifyRecordRequest{CaseId: id})
			if err != nil || !v.GetOk() || v.GetSampleBatchesVerified() != perStream {
				t.Errorf("stream %d: verify %v, %v; want ok with %d batches", i, v, err, perStream)
			}
		}
		want := map[string]int{}
		for seq := int64(1); seq <= sent; seq++ {
			for _, k := range batchKeys(flowBatch("hlm", seq, at(seq), n)) {
				want[k]++
			}
		}
		if d := diff(want, countStored(t, e, poisonCase)); d != "" {
			t.Errorf("poison gateway's case: %s", d)
		}
		v, err := e.record.VerifyRecord(as(reviewer), &pb.VerifyRecordRequest{CaseId: poisonCase})
		if err != nil || !v.GetOk() || v.GetSampleBatchesVerified() != sent {
			t.Errorf("poison gateway's case: verify %v, %v; want ok with %d batches", v, err, sent)
		}
		logs := e.logs.String()
		if !strings.Contains(logs, "the database refused a write") || strings.Contains(logs, marker) {
			t.Error("the refusal is not logged as one, or the log quotes the database's message")
		}
		e.assertNoPHI()
	})
}

// wantRefusal checks the status that ends the poison stream:
// InvalidArgument saying the database refused the batch, naming the batch
// (source poison, sequence 1), with no SQL and not the database's message.
func wantRefusal(err error, marker string) error {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.InvalidArgument {
		return fmt.Errorf("ended with %v, want InvalidArgument", err)
	}
	msg := st.Message()
	if !strings.Contains(msg, "the database refused") || strings.Contains(msg, marker) ||
		strings.Contains(msg, "INSERT") || strings.Contains(msg, "sample_batches") {
		return fmt.Errorf("message %q: want the refusal, without the database's message or SQL", msg)
	}
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok && ei.GetReason() == server.ReasonBatchRejected &&
			ei.GetMetadata()["source_id"] == "poison" && ei.GetMetadata()["sequence"] == "1" {
			return nil
		}
	}
	return fmt.Errorf("status %v does not name the batch poison #1", st.Proto())
}
