package server_test

import (
	"context"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"perfusion/store"
)

var services = []string{"", "perfusion.v1.CaseService", "perfusion.v1.ChartingService", "perfusion.v1.RecordService"}

// waitHealth polls until every service reports want, or fails after 5 s.
func waitHealth(t *testing.T, hc healthpb.HealthClient, want healthpb.HealthCheckResponse_ServingStatus) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ok := true
		var last healthpb.HealthCheckResponse_ServingStatus
		for _, svc := range services {
			resp, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{Service: svc})
			if err != nil {
				t.Fatalf("health check %q: %v", svc, err)
			}
			if last = resp.GetStatus(); last != want {
				ok = false
				break
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("health is %v, want %v", last, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestHealthFollowsReadiness: NOT_SERVING until the backend is ready, then
// SERVING; NOT_SERVING again while it is not; NOT_SERVING on shutdown.
func TestHealthFollowsReadiness(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b store.Backend) {
		fb := &faultyBackend{Backend: b}
		fb.notReady.Store(true)
		e := start(t, fb)
		hc := healthpb.NewHealthClient(e.conn)

		// Several readiness intervals pass: still not serving.
		time.Sleep(100 * time.Millisecond)
		waitHealth(t, hc, healthpb.HealthCheckResponse_NOT_SERVING)

		fb.notReady.Store(false)
		waitHealth(t, hc, healthpb.HealthCheckResponse_SERVING)

		fb.notReady.Store(true)
		waitHealth(t, hc, healthpb.HealthCheckResponse_NOT_SERVING)
		fb.notReady.Store(false)
		waitHealth(t, hc, healthpb.HealthCheckResponse_SERVING)

		// Shutdown turns health NOT_SERVING before it stops serving.
		watch, err := hc.Watch(context.Background(), &healthpb.HealthCheckRequest{Service: "perfusion.v1.ChartingService"})
		if err != nil {
			t.Fatalf("watch: %v", err)
		}
		if first, err := watch.Recv(); err != nil || first.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("watch first = %v, %v", first, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		done := make(chan struct{})
		go func() { e.srv.Shutdown(ctx); close(done) }()
		if next, err := watch.Recv(); err != nil || next.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Fatalf("watch during shutdown = %v, %v", next, err)
		}
		select {
		case <-done: // the open watch stream was cut at the deadline
		case <-time.After(5 * time.Second):
			t.Fatalf("Shutdown did not return after its deadline")
		}
	})
}
