// Package server is the gRPC face of the perfusion record: thin handlers for
// its six services — CaseService (cases, their lifecycle and signatures),
// ChartingService (device streams, entries, queries, the live watch),
// RecordService (verification, audit trail), ReviewService (quality
// review across cases), ExportService (HL7 and FHIR renderings and their
// deliveries) and AccessService (the access audit and break-glass) — that
// translate between the API (perfusionv1) and the domain (charting), call
// store.Store, and map domain errors to gRPC statuses in one place
// (errors.go). Around them sit an interceptor chain (logging →
// authentication and policy with the access audit → text rules →
// recovery) behind resource limits (limits.go), a health service driven
// by the database's readiness, and server reflection. HTTPHandler serves
// the same services to browsers (Connect, gRPC-Web) through the same
// chain.
//
// The handlers hold no state of their own between calls: every rule of the
// record lives in charting and store, so any number of servers can run
// behind a load balancer over one database.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	perfusionv1 "perfusion/api/perfusion/v1"
	"perfusion/export"
	"perfusion/store"
	"perfusion/store/ingest"
)

// Defaults applied by New to zero Config fields.
const (
	// DefaultReadinessInterval is how often the database's readiness is
	// re-checked to drive the health service.
	DefaultReadinessInterval = 5 * time.Second
	// DefaultMaxMessageSize bounds a single response: 16 MiB leaves room
	// for large raw queries. Requests have DefaultMaxRecvMessageSize.
	DefaultMaxMessageSize = 16 << 20
)

// Config is everything a Server needs. Only Store is required.
type Config struct {
	// Store is the perfusion record every handler reads and writes.
	Store *store.Store
	// Logger receives one line per call (method, code, duration,
	// principal) and internal errors. Nil means slog.Default().
	Logger *slog.Logger
	// Authenticator decides who is calling. Nil means HeaderAuthenticator
	// with every role on every site, which is for development and tests
	// only: perfusiond always sets one.
	Authenticator Authenticator
	// TLS, when set, serves TLS (see TLSConfig); nil serves plaintext,
	// which perfusiond allows on loopback only unless told otherwise.
	TLS *tls.Config
	// BreakGlassDuration is how long emergency access lasts; 0 means
	// DefaultBreakGlassDuration.
	BreakGlassDuration time.Duration
	// SignAuthMaxAge is how recent a signer's authentication (auth_time)
	// must be; 0 means DefaultSignAuthMaxAge.
	SignAuthMaxAge time.Duration
	// ReadinessInterval is how often the backend's Ready is checked; 0
	// means DefaultReadinessInterval.
	ReadinessInterval time.Duration
	// Keepalive sets server keepalive pings; the zero value means
	// DefaultKeepalive().
	Keepalive keepalive.ServerParameters
	// KeepaliveEnforcement limits how often clients may ping; the zero
	// value means DefaultKeepaliveEnforcement().
	KeepaliveEnforcement keepalive.EnforcementPolicy
	// MaxMessageSize bounds sent messages (raw sample queries, exports);
	// 0 means DefaultMaxMessageSize. Received messages are bounded by
	// Limits.MaxRecvMessageSize, much smaller.
	MaxMessageSize int
	// Limits bound what callers may hold: received message size,
	// connections, handshake and idle time, streams per principal, call
	// deadlines (limits.go). Zero fields take the defaults.
	Limits Limits
	// Ingest sets the group committer shared by every StreamSamples
	// stream: how long a commit gathers batches, how large it may grow,
	// how many run at once, and the bounded queue that pushes back on
	// streams when the database is slow. Zero fields take ingest's
	// defaults.
	Ingest ingest.Config
	// StreamWindow is how many batches one stream may have awaiting
	// acknowledgement; 0 means DefaultStreamWindow.
	StreamWindow int
	// ExportKey keys the case pseudonyms of de-identified extracts
	// (ReviewService.ExportCohort), at least 32 bytes. A secret: never
	// logged. Empty disables extracts.
	ExportKey []byte
	// WatchPoll is how often a WatchCase stream reads the record when no
	// commit of this server woke it, which bounds how late it sees writes
	// made through other servers; 0 means DefaultWatchPoll.
	WatchPoll time.Duration
	// StreamRecheck is how often an open stream re-checks its caller's
	// access (credentials, roles, sites, break-glass); 0 means
	// DefaultStreamRecheck. Expiries end streams on time whatever this is.
	StreamRecheck time.Duration
	// Renderer renders ExportService previews with the site's HL7 and FHIR
	// settings, the same ones the delivery worker uses; nil renders HL7
	// with default settings and refuses FHIR.
	Renderer *export.Renderer
	// Observer is told of calls, acknowledged samples and audit failures
	// for the operators' metrics; nil observes nothing.
	Observer Observer
	// Inbound replays journaled inbound HL7 messages (the inbound
	// listener's handler); nil on a server without the listener, where
	// ReplayInboundMessage is FailedPrecondition.
	Inbound InboundHandler
	// PatientLookup answers CaseService.LookupPatient from the EHR's FHIR
	// server; nil: FailedPrecondition.
	PatientLookup PatientLookup
}

// DefaultKeepalive pings idle connections every 30 s and drops those that do
// not answer within 10 s, so a gateway whose network vanished mid-stream is
// noticed and its stream ended instead of lingering for the OS's hours-long
// TCP timeout.
func DefaultKeepalive() keepalive.ServerParameters {
	return keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}
}

// DefaultKeepaliveEnforcement lets clients ping every 10 s, even without an
// active stream, so device gateways can keep their connection warm between
// batches.
func DefaultKeepaliveEnforcement() keepalive.EnforcementPolicy {
	return keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}
}

// serviceNames are the services whose health follows the database.
var serviceNames = []string{
	perfusionv1.CaseService_ServiceDesc.ServiceName,
	perfusionv1.ChartingService_ServiceDesc.ServiceName,
	perfusionv1.RecordService_ServiceDesc.ServiceName,
	perfusionv1.ReviewService_ServiceDesc.ServiceName,
	perfusionv1.ExportService_ServiceDesc.ServiceName,
	perfusionv1.AccessService_ServiceDesc.ServiceName,
	perfusionv1.InboundService_ServiceDesc.ServiceName,
}

// Server is a perfusion gRPC server.
type Server struct {
	cfg    Config
	log    *slog.Logger
	grpc   *grpc.Server
	health *health.Server
	ingest *ingest.Committer // closed by Shutdown once no stream can submit
	// auditor writes the access audit; nil when the backend keeps none.
	auditor *accessAuditor
	// gate refuses calls without credentials before their bodies are read
	// (limits.go).
	gate *earlyGate

	// ctx lives until Shutdown begins; it ends the readiness loop and any
	// readiness check in flight.
	ctx       context.Context
	cancel    context.CancelFunc
	startOnce sync.Once
	loopDone  chan struct{} // closed when the readiness loop has returned
	relayDone chan struct{} // closed when the commit relay has returned
}

// New builds a server from cfg, filling defaults. It starts nothing: Serve
// does. Every service reports NOT_SERVING until the backend is ready.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Authenticator == nil {
		cfg.Authenticator = HeaderAuthenticator{}
	}
	if cfg.BreakGlassDuration <= 0 {
		cfg.BreakGlassDuration = DefaultBreakGlassDuration
	}
	if cfg.SignAuthMaxAge <= 0 {
		cfg.SignAuthMaxAge = DefaultSignAuthMaxAge
	}
	if cfg.ReadinessInterval <= 0 {
		cfg.ReadinessInterval = DefaultReadinessInterval
	}
	if cfg.Keepalive == (keepalive.ServerParameters{}) {
		cfg.Keepalive = DefaultKeepalive()
	}
	if cfg.KeepaliveEnforcement == (keepalive.EnforcementPolicy{}) {
		cfg.KeepaliveEnforcement = DefaultKeepaliveEnforcement()
	}
	if cfg.MaxMessageSize <= 0 {
		cfg.MaxMessageSize = DefaultMaxMessageSize
	}
	if cfg.StreamWindow <= 0 {
		cfg.StreamWindow = DefaultStreamWindow
	}
	if cfg.Observer == nil {
		cfg.Observer = noObserver{}
	}
	cfg.Limits = cfg.Limits.withDefaults()
	if cfg.Keepalive.MaxConnectionIdle == 0 && cfg.Limits.MaxConnectionIdle > 0 {
		cfg.Keepalive.MaxConnectionIdle = cfg.Limits.MaxConnectionIdle
	}
	s := &Server{cfg: cfg, log: cfg.Logger, health: health.NewServer(), loopDone: make(chan struct{}), relayDone: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	h := &handlers{store: cfg.Store, log: cfg.Logger}
	authz := &authorizer{h: h, signAuthMaxAge: cfg.SignAuthMaxAge, streamRecheck: cfg.StreamRecheck, now: time.Now}
	chain := newInterceptors(cfg.Logger, cfg.Authenticator, authz)
	chain.observer = cfg.Observer
	gate := &earlyGate{limits: cfg.Limits, headerAuth: trustsPrincipalHeader(cfg.Authenticator), streaming: map[string]bool{}}
	// The access audit and break-glass live in the record's database; a
	// backend without them (none today) serves without either.
	if access, err := cfg.Store.Access(); err == nil {
		authz.access = access
		s.auditor = &accessAuditor{access: access, log: cfg.Logger, now: time.Now, observer: cfg.Observer}
		chain.audit = s.auditor
		gate.refused = make(chan store.AccessEvent, 1024)
	}
	streams := newStreamLimiter(cfg.Limits.MaxStreamsPerPrincipal)
	opts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(chain.unaryLogging, chain.unaryAccess, chain.unaryText, chain.unaryRecovery),
		// The stream limit counts authenticated principals, so it follows
		// streamAccess.
		grpc.ChainStreamInterceptor(chain.streamLogging, chain.streamAccess, streams.stream, chain.streamText, chain.streamRecovery),
		grpc.InTapHandle(gate.tap),
		grpc.KeepaliveParams(cfg.Keepalive),
		grpc.KeepaliveEnforcementPolicy(cfg.KeepaliveEnforcement),
		grpc.MaxSendMsgSize(cfg.MaxMessageSize),
	}
	opts = append(opts, cfg.Limits.serverOptions()...)
	if cfg.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg.TLS)))
	}
	s.grpc = grpc.NewServer(opts...)
	s.gate = gate
	perfusionv1.RegisterCaseServiceServer(s.grpc, &caseService{h: h, lookup: cfg.PatientLookup})
	s.ingest = ingest.New(cfg.Store, cfg.Ingest)
	perfusionv1.RegisterChartingServiceServer(s.grpc, &samplesService{chartingService: &chartingService{h: h, watchPoll: cfg.WatchPoll, stopping: s.ctx.Done()}, ingest: s.ingest, window: cfg.StreamWindow, owners: newSourceOwners(cfg.Logger), observer: cfg.Observer})
	perfusionv1.RegisterRecordServiceServer(s.grpc, &recordService{h: h})
	perfusionv1.RegisterReviewServiceServer(s.grpc, newReviewService(h, cfg.ExportKey))
	perfusionv1.RegisterExportServiceServer(s.grpc, newExportService(h, cfg.Renderer))
	perfusionv1.RegisterAccessServiceServer(s.grpc, &accessService{h: h, auditor: s.auditor, duration: cfg.BreakGlassDuration})
	perfusionv1.RegisterInboundServiceServer(s.grpc, &inboundService{h: h, replayer: cfg.Inbound})
	s.setServing(false)
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	// The gate gives streams other than longCalls no deadline; it learns
	// which methods stream before the first connection is served.
	for name, svc := range s.grpc.GetServiceInfo() {
		for _, m := range svc.Methods {
			if m.IsServerStream || m.IsClientStream {
				gate.streaming["/"+name+"/"+m.Name] = true
			}
		}
	}
	return s
}

// Serve accepts connections on lis until Shutdown. It starts the readiness
// loop that drives the health service. It returns nil after Shutdown.
func (s *Server) Serve(lis net.Listener) error {
	s.startOnce.Do(func() {
		go s.readinessLoop()
		// Commit wakes to and from other servers (PostgreSQL), for the
		// watchers of WatchCase.
		go func() { defer close(s.relayDone); s.cfg.Store.RelayCommits(s.ctx) }()
		if s.gate.refused != nil {
			go s.gate.auditLoop(s.ctx, s.auditor.access, s.log)
		}
		if s.auditor != nil {
			// Short grants (tests) are swept more often, so an expiry is
			// recorded within a quarter of the grant's length.
			go s.auditor.sweepLoop(s.ctx, min(breakGlassSweep, max(s.cfg.BreakGlassDuration/4, 10*time.Millisecond)))
		}
	})
	if err := s.grpc.Serve(s.cfg.Limits.listener(lis)); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serve gRPC: %w", err)
	}
	return nil
}

// Shutdown stops the server gracefully: health turns NOT_SERVING first so
// load balancers stop routing new calls here, then in-flight calls and
// streams may finish until ctx ends, after which every connection is closed
// (grpc's Stop). Data a client has not seen acknowledged may be resent to
// another server: writes are idempotent.
func (s *Server) Shutdown(ctx context.Context) {
	s.cancel()
	s.health.Shutdown()
	s.startOnce.Do(func() { close(s.loopDone); close(s.relayDone) }) // never served: no loop to wait for
	<-s.loopDone
	<-s.relayDone
	// The fallback fires when ctx's deadline passes or it is cancelled,
	// whichever comes first; GracefulStop then returns promptly. No sleep:
	// a quick drain returns at once.
	forceStop := context.AfterFunc(ctx, s.grpc.Stop)
	defer forceStop()
	s.grpc.GracefulStop()
	// Every stream has ended, so nothing more is submitted. Batches
	// already queued are committed while ctx lasts; a commit still running
	// when it ends is cancelled, unacknowledged, and resent by its client.
	if err := s.ingest.Close(ctx); err != nil {
		s.log.Warn("shutdown: sample commits in flight were cancelled", "err", err.Error())
	}
}

// setServing sets the overall and every per-service status.
func (s *Server) setServing(ok bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if ok {
		st = healthpb.HealthCheckResponse_SERVING
	}
	s.health.SetServingStatus("", st)
	for _, name := range serviceNames {
		s.health.SetServingStatus(name, st)
	}
}

// ServiceInfo describes the registered services and their methods, as
// grpc.Server does; the policy tests walk it.
func (s *Server) ServiceInfo() map[string]grpc.ServiceInfo { return s.grpc.GetServiceInfo() }
