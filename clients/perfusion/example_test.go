package perfusion_test

import (
	"context"
	"log"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "perfusion/api/perfusion/v1"
	"perfusion/clients/perfusion"
)

// A device gateway streams pump data for a case. It survives network
// outages (batches wait in the spool and are resent) and its own restarts
// (the next OpenSampleStreamer on the same directory resumes).
func Example() {
	ctx := context.Background()
	client, err := perfusion.Dial(ctx, "127.0.0.1:7070", perfusion.WithPrincipal("gateway-or3-hlm"))
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	// A client-made case id makes CreateCase safe to retry.
	created, err := client.CreateCase(ctx, &pb.CreateCaseRequest{CaseId: uuid.NewString(),
		Kind: pb.CaseKind_CASE_KIND_CPB, Site: "MAIN", Room: "OR-3", ScheduledStart: timestamppb.Now()})
	if err != nil {
		for _, v := range perfusion.FieldViolations(err) {
			log.Printf("%s: %s", v.GetField(), v.GetDescription())
		}
		log.Fatal(status.Code(err))
	}
	caseID := created.GetCase().GetCaseId()

	streamer, err := perfusion.OpenSampleStreamer(ctx, client, caseID, "hlm-1", "/var/lib/gateway/spool/hlm-1",
		perfusion.StreamerOptions{
			Durable: true,
			OnDeadLetter: func(d perfusion.DeadLetter) {
				log.Printf("batch %d rejected: %v", d.Sequence, d.Err)
			},
		})
	if err != nil {
		log.Fatal(err)
	}
	now := time.Now().UnixMilli()
	err = streamer.Send(ctx,
		&pb.SampleSeries{Channel: "pump_flow", OccurredAtUnixMs: []int64{now}, Values: []float64{4.8}},
		&pb.SampleSeries{Channel: "temp_arterial_outlet", OccurredAtUnixMs: []int64{now}, Values: []float64{32.5}})
	if err != nil {
		log.Fatal(err) // a malformed series, a stopped streamer, or a full disk
	}

	// The operator charts bypass on; retried safely until ctx ends.
	if _, err := client.RecordEntry(ctx, &pb.RecordEntryRequest{Entry: &pb.Entry{CaseId: caseID, OccurredAt: timestamppb.Now(),
		Detail: &pb.Entry_Event{Event: &pb.Event{Type: pb.EventType_EVENT_TYPE_BYPASS_ON}}}}); err != nil {
		log.Fatal(err)
	}

	// At the end of the case: send what is left, waiting up to a minute.
	// Whatever is not acknowledged by then stays in the spool.
	closeCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := streamer.Close(closeCtx); err != nil {
		log.Print(err)
	}
	st := streamer.Stats()
	log.Printf("sent %d batches, %d acknowledged, %d reconnects", st.Sent, st.Acked, st.Reconnects)
}
