package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"perfusion/export"
	"perfusion/server"
	"perfusion/server/metrics"
	"perfusion/store"
	"perfusion/store/ingest"
	"perfusion/store/postgres"
)

const envMetricsListen = "PERFUSION_METRICS_LISTEN"

// telemetryConfig is the Prometheus endpoint: operators' metrics on a
// listener of their own, so a scraper never shares the API's port,
// limits or authentication. Off unless --metrics-listen is set.
type telemetryConfig struct {
	listen string
}

func telemetryFlags(fs *flag.FlagSet, env envFlags) *telemetryConfig {
	c := &telemetryConfig{}
	fs.StringVar(&c.listen, "metrics-listen", "",
		"address serving Prometheus metrics at /metrics (no patient data: methods, codes, destinations, counts); empty: off (env "+envMetricsListen+")")
	env["metrics-listen"] = envMetricsListen
	return c
}

// telemetry is the process's metrics, or nil when they are off; its
// observers are nil interfaces then, never typed nils.
type telemetry struct {
	m    *metrics.Metrics
	http *httpService // web.go
}

func (c *telemetryConfig) build() *telemetry {
	if c.listen == "" {
		return nil
	}
	return &telemetry{m: metrics.New(versionString())}
}

func (t *telemetry) server() server.Observer {
	if t == nil {
		return nil
	}
	return t.m
}

func (t *telemetry) ingest() ingest.Observer {
	if t == nil {
		return nil
	}
	return t.m
}

func (t *telemetry) store() store.Observer {
	if t == nil {
		return nil
	}
	return t.m
}

func (t *telemetry) export() export.Observer {
	if t == nil {
		return nil
	}
	return t.m
}

// start watches what is read at scrape time and serves /metrics.
func (t *telemetry) start(c *telemetryConfig, db store.Backend, srv *server.Server, log *slog.Logger) error {
	if t == nil {
		return nil
	}
	if pg, ok := db.(*postgres.Backend); ok {
		t.m.WatchPool(pg.Pool())
	}
	if o, err := store.OutboxOf(db); err == nil {
		t.m.WatchOutbox(o, 5*time.Second)
	}
	t.m.WatchQueue(srv.Committer().QueuedSamples, srv.Committer().Config().QueueSamples)
	lis, err := net.Listen("tcp", c.listen)
	if err != nil {
		return fmt.Errorf("listen on %s (--metrics-listen): %w", c.listen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", t.m.Handler())
	t.http = serveHTTP("metrics endpoint", &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10}, lis, lis)
	log.Info("serving metrics", "addr", lis.Addr().String())
	return nil
}

func (t *telemetry) shutdown(ctx context.Context) {
	if t != nil {
		t.http.shutdown(ctx)
	}
}
