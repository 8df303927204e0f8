package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"perfusion/charting"
	"perfusion/server"
	"perfusion/store"
	"perfusion/store/ingest"
)

// Environment variables of the sample group commit's flags.
const (
	envCommitDelay   = "PERFUSION_COMMIT_DELAY"
	envCompactEvery  = "PERFUSION_COMPACT_INTERVAL"
	envCompactRun    = "PERFUSION_COMPACT_RUN_BATCHES"
	envCommits       = "PERFUSION_COMMITS"
	envCommitBatches = "PERFUSION_COMMIT_MAX_BATCHES"
	envIngestQueue   = "PERFUSION_INGEST_QUEUE_SAMPLES"
	envStreamWindow  = "PERFUSION_STREAM_WINDOW"
)

// serveConfig is the serve command's configuration.
type serveConfig struct {
	*common
	listen            string
	migrate           bool
	shutdownTimeout   time.Duration
	readinessInterval time.Duration
	ingest            ingest.Config
	streamWindow      int
	compactInterval   time.Duration
	compactRun        int
	exportKeyFile     string
	metrics           func() (*charting.MetricsConfig, error)
	delivery          *deliveryConfig // delivery.go
	auth              *authConfig
	checkpoints       *checkpointConfig // checkpoint.go
	limits            *limitsConfig     // limits.go
	web               *webConfig        // web.go
	telemetry         *telemetryConfig  // telemetry.go
	inbound           *inboundConfig    // inbound.go
	seal              *sealConfig       // seal.go
}

func (a *app) serveFlags(args []string) (*serveConfig, error) {
	fs := a.newFlagSet("serve", "[serve] [flags]")
	env := envFlags{}
	c := &serveConfig{common: a.commonFlags(fs, env)}
	fs.StringVar(&c.listen, "listen", "127.0.0.1:7070", "gRPC listen address; plaintext only on loopback unless --allow-plaintext (env "+envListen+")")
	fs.BoolVar(&c.migrate, "migrate", true,
		"apply schema migrations at start; with false, refuse to start unless the schema matches (env "+envMigrate+")")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", 10*time.Second,
		"on SIGINT/SIGTERM, how long calls and streams may finish before they are cut (env "+envShutdownTimeout+")")
	fs.DurationVar(&c.readinessInterval, "readiness-interval", server.DefaultReadinessInterval,
		"how often database readiness is re-checked for the health service (env "+envReadinessInterval+")")
	env["listen"], env["migrate"], env["shutdown-timeout"], env["readiness-interval"] = envListen, envMigrate, envShutdownTimeout, envReadinessInterval
	fs.DurationVar(&c.ingest.MaxDelay, "commit-delay", ingest.DefaultMaxDelay,
		"how long a sample commit gathers batches from all streams after its first; the acknowledgement latency it adds (env "+envCommitDelay+")")
	fs.IntVar(&c.ingest.Commits, "commits", ingest.DefaultCommits, "sample commits that may run at once (env "+envCommits+")")
	fs.IntVar(&c.ingest.MaxBatches, "commit-max-batches", ingest.DefaultMaxBatches, "most sample batches in one commit (env "+envCommitBatches+")")
	fs.IntVar(&c.ingest.QueueSamples, "ingest-queue-samples", ingest.DefaultQueueSamples,
		"samples received and not yet committed before streams are made to wait, bounding the memory they hold (env "+envIngestQueue+")")
	fs.IntVar(&c.streamWindow, "stream-window", server.DefaultStreamWindow,
		"batches one stream may have awaiting acknowledgement (env "+envStreamWindow+")")
	env["commit-delay"], env["commits"], env["commit-max-batches"] = envCommitDelay, envCommits, envCommitBatches
	env["ingest-queue-samples"], env["stream-window"] = envIngestQueue, envStreamWindow
	fs.DurationVar(&c.compactInterval, "compact-interval", 10*time.Second,
		"how often complete runs of sample batches are copied into per-channel trend chunks; 0 turns it off (trends then read every batch) (env "+envCompactEvery+")")
	fs.IntVar(&c.compactRun, "compact-run-batches", store.DefaultChunkBatches,
		"batches of one source per trend chunk (env "+envCompactRun+")")
	env["compact-interval"], env["compact-run-batches"] = envCompactEvery, envCompactRun
	fs.StringVar(&c.exportKeyFile, "export-key-file", "",
		"file holding the key (at least 32 bytes) that pseudonymises cases in de-identified extracts; empty disables extracts (env "+envExportKeyFile+")")
	env["export-key-file"] = envExportKeyFile
	c.metrics = metricsFlags(fs, env)
	c.delivery = a.deliveryFlags(fs, env)
	c.auth = authFlags(fs, env, a.devHeaderAuth)
	c.checkpoints = checkpointFlags(fs, env)
	c.limits = limitsFlags(fs, env)
	c.web = webFlags(fs, env)
	c.telemetry = telemetryFlags(fs, env)
	c.inbound = inboundFlags(fs, env)
	c.seal = sealFlags(fs, env)
	if err := a.parse(fs, env, args); err != nil {
		return nil, err
	}
	if err := c.web.check(c.auth); err != nil {
		return nil, err
	}
	if err := c.auth.check(c.databaseURL == "", listensOnLoopback(c.listen)); err != nil {
		return nil, err
	}
	if err := c.limits.check(); err != nil {
		return nil, err
	}
	if err := c.delivery.check(); err != nil {
		return nil, err
	}
	if err := c.inbound.check(c.auth); err != nil {
		return nil, err
	}
	if err := c.seal.check(); err != nil {
		return nil, err
	}
	if _, err := c.metrics(); err != nil {
		return nil, err
	}
	if c.shutdownTimeout <= 0 || c.readinessInterval <= 0 {
		return nil, usageErrorf("--shutdown-timeout and --readiness-interval must be positive")
	}
	if c.checkpoints.every < 0 {
		return nil, usageErrorf("--checkpoint-interval must not be negative")
	}
	if c.compactInterval < 0 || c.compactRun <= 0 {
		return nil, usageErrorf("--compact-interval must not be negative and --compact-run-batches must be positive")
	}
	if c.ingest.MaxDelay <= 0 || c.ingest.Commits <= 0 || c.ingest.MaxBatches <= 0 || c.ingest.QueueSamples <= 0 || c.streamWindow <= 0 {
		return nil, usageErrorf("--commit-delay, --commits, --commit-max-batches, --ingest-queue-samples and --stream-window must be positive")
	}
	return c, nil
}

// serve runs the server until ctx ends (SIGINT/SIGTERM), then shuts it down
// gracefully within --shutdown-timeout.
func (a *app) serve(ctx context.Context, args []string) error {
	c, err := a.serveFlags(args)
	if err != nil {
		return err
	}
	if c.version {
		a.printVersion()
		return nil
	}
	log, err := c.logger(a.stderr)
	if err != nil {
		return err
	}
	log.Info("perfusiond starting", "version", versionString())
	tuneGC(a.getenv, log)
	db, err := openDatabase(ctx, c.common, log)
	if err != nil {
		return err
	}
	defer closeDatabase(db, log)
	if _, err := prepareSchema(ctx, db, c.migrate, log); err != nil {
		return err
	}
	warnServingRole(ctx, db, log)
	anchor, err := c.checkpoints.anchor(c.dataDir, log)
	if err != nil {
		return err
	}

	exportKey, err := loadExportKey(c.exportKeyFile)
	if err != nil {
		return err
	}

	lis, err := net.Listen("tcp", c.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", c.listen, err)
	}
	if (c.auth.devTokens || c.auth.devHeaderAuth) && !isLoopback(lis.Addr()) {
		// The name in --listen resolved to loopback for serveFlags; what
		// was bound is what counts.
		lis.Close()
		return usageErrorf("development authentication needs a loopback listener, and %s is not", lis.Addr())
	}
	tlsCfg, err := c.auth.transport(lis.Addr(), log)
	if err != nil {
		lis.Close()
		return err
	}
	authn, err := c.auth.authenticator(c.dataDir, log)
	if err != nil {
		lis.Close()
		return err
	}
	metricsCfg, _ := c.metrics() // checked by serveFlags
	tel := c.telemetry.build()
	st := store.New(db, store.Config{Outbox: c.delivery.outbox(), Metrics: metricsCfg, Logger: log, Anchor: anchor, Observer: tel.store()})
	c.ingest.Observer = tel.ingest()
	// Rendered from the store: its catalogue, its metric thresholds.
	renderer := c.delivery.renderer(st)
	stopDelivery, err := c.delivery.startWorker(ctx, db, renderer, tel.export(), log)
	if err != nil {
		return err
	}
	defer stopDelivery()
	inboundHandler, stopInbound, err := c.inbound.start(st, c.delivery, c.shutdownTimeout, log, a.onInboundListen)
	if err != nil {
		lis.Close()
		return err
	}
	defer stopInbound()
	var replayer server.InboundHandler
	if inboundHandler != nil {
		replayer = inboundHandler
	}
	lookup, err := c.inbound.lookup(c.delivery)
	if err != nil {
		lis.Close()
		return err
	}
	srv := server.New(server.Config{
		Store:              st,
		Logger:             log,
		Authenticator:      authn,
		TLS:                tlsCfg,
		SignAuthMaxAge:     c.auth.signAuthMaxAge,
		BreakGlassDuration: c.auth.breakGlass,
		ReadinessInterval:  c.readinessInterval,
		Ingest:             c.ingest,
		StreamWindow:       c.streamWindow,
		ExportKey:          exportKey,
		Renderer:           renderer,
		Limits:             c.limits.limits(),
		Observer:           tel.server(),
		Inbound:            replayer,
		PatientLookup:      lookup,
	})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	var devKey *server.DevKey
	if c.auth.devTokens {
		if devKey, err = server.LoadOrCreateDevKey(c.dataDir); err != nil {
			return err
		}
	}
	browser, err := c.web.start(srv, c.auth, tlsCfg, devKey, metricsCfg.DO2iThreshold, log)
	if err == nil {
		err = tel.start(c.telemetry, db, srv, log)
	}
	if err != nil {
		browser.shutdown(ctx)
		srv.Shutdown(ctx)
		<-served
		return err
	}
	defer tel.shutdown(context.Background())
	refreshed := refreshStaleMetrics(ctx, st, log)
	defer func() { <-refreshed }() // before the database closes
	if c.compactInterval > 0 {
		compacted := make(chan struct{})
		go func() {
			defer close(compacted)
			st.RunCompactor(ctx, c.compactInterval, c.compactRun)
		}()
		defer func() { <-compacted }()
	}
	defer c.seal.start(ctx, st)()
	if anchor != nil && c.checkpoints.every > 0 {
		anchored := make(chan struct{})
		go func() {
			defer close(anchored)
			st.RunAnchorer(ctx, c.checkpoints.every)
		}()
		defer func() { <-anchored }()
	}
	log.Info("listening", "addr", lis.Addr().String())
	if a.onMetricsListen != nil && tel != nil {
		a.onMetricsListen(tel.http.lis.Addr())
	}
	if a.onWebListen != nil && browser != nil {
		a.onWebListen(browser.lis.Addr())
	}
	if a.onListen != nil {
		a.onListen(lis.Addr())
	}

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	if a.stopSignals != nil {
		a.stopSignals() // a second signal now ends the process at once
	}
	log.Info("shutting down", "timeout", c.shutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), c.shutdownTimeout)
	defer cancel()
	// Browsers first: their unary calls finish, and their watch streams
	// are cut after a short grace (the tablet resumes them); then the
	// native calls and streams drain.
	wctx, wcancel := context.WithTimeout(sctx, webShutdownGrace)
	browser.shutdown(wctx)
	wcancel()
	srv.Shutdown(sctx)
	if err := <-served; err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if errors.Is(sctx.Err(), context.DeadlineExceeded) {
		log.Warn("shutdown deadline passed: open calls and streams were cut; clients resend what was not acknowledged")
	}
	log.Info("stopped")
	return nil
}

// isLoopback reports whether addr can only be reached from this machine.
// An unspecified address (0.0.0.0, ::) listens on every interface.
func isLoopback(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

// listensOnLoopback reports whether the --listen address names only this
// machine: a loopback IP, or a host name all of whose addresses are
// loopback. An empty host listens on every interface.
func listensOnLoopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil || host == "" {
		return false
	}
	if ip := net.ParseIP(host); ip != nil {
		return ip.IsLoopback()
	}
	ips, err := net.LookupIP(host)
	if err != nil || len(ips) == 0 {
		return false
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return false
		}
	}
	return true
}

func closeDatabase(db store.Backend, log *slog.Logger) {
	if err := db.Close(); err != nil {
		log.Error("close store", "err", err.Error())
	}
}
