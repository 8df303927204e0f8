// Package servertest runs perfusiond's gRPC server in-process for the tests
// of its clients: on the embedded store in a temporary directory, on a real
// 127.0.0.1 socket, shut down when the test ends.
package servertest

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"perfusion/server"
	"perfusion/store"
	"perfusion/store/sqlite/sqlitetest"
)

// Start serves on a fresh embedded store and returns the address. Health
// re-checks readiness every 20 ms so a client's first call is not held up
// by the default interval. adjust may change the configuration (for
// example set an export key) before the server is built.
func Start(t testing.TB, adjust ...func(*server.Config)) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	cfg := server.Config{
		Store:             store.New(sqlitetest.Open(t), store.Config{}),
		Logger:            slog.New(slog.NewTextHandler(io.Discard, nil)),
		ReadinessInterval: 20 * time.Millisecond,
	}
	for _, f := range adjust {
		f(&cfg)
	}
	srv := server.New(cfg)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return lis.Addr().String()
}
