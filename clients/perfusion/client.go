package perfusion

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "perfusion/api/perfusion/v1"
)

// PrincipalHeader is the metadata key that names the caller until real
// authentication lands. The server trusts it, so it is for development and
// tests only.
const PrincipalHeader = "x-perfusion-principal"

// Defaults of the options.
const (
	// DefaultBackoffInitial is the first retry and reconnect delay.
	DefaultBackoffInitial = 200 * time.Millisecond
	// DefaultBackoffMax caps the retry and reconnect delay.
	DefaultBackoffMax = 30 * time.Second
	// DefaultAttemptTimeout bounds one attempt of a retried call, so a call
	// over a network that silently dropped is retried instead of waiting for
	// the caller's whole deadline.
	DefaultAttemptTimeout = 30 * time.Second
	// maxMessageSize matches the server's default limit, for large raw
	// QuerySamples answers.
	maxMessageSize = 16 << 20
)

// Option configures Dial.
type Option func(*config)

type config struct {
	principal      string
	dialOpts       []grpc.DialOption
	perRPC         credentials.PerRPCCredentials
	tls            *tls.Config
	backoffInitial time.Duration
	backoffMax     time.Duration
	attemptTimeout time.Duration
	log            *slog.Logger
}

// WithPrincipal names the caller in the x-perfusion-principal metadata of
// every call (a device gateway's or a person's stable id, 1 to 128
// printable characters). A call whose context already carries the key is
// left as it is.
func WithPrincipal(name string) Option { return func(c *config) { c.principal = name } }

// WithDialOptions passes extra options to grpc.NewClient after the
// library's own (plaintext transport, keepalive, reconnect back-off,
// message size), so they win: grpc.WithTransportCredentials for TLS,
// interceptors, a custom dialer.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(c *config) { c.dialOpts = append(c.dialOpts, opts...) }
}

// WithPerRPCCredentials attaches credentials (for example an OAuth token
// source) to every call. gRPC refuses to send credentials that require
// transport security over a plaintext connection.
func WithPerRPCCredentials(creds credentials.PerRPCCredentials) Option {
	return func(c *config) { c.perRPC = creds }
}

// WithBackoff sets the delay before the first retry or reconnect and its
// cap; each further attempt doubles the delay, with random jitter, up to
// max. Zero values keep the defaults.
func WithBackoff(initial, max time.Duration) Option {
	return func(c *config) { c.backoffInitial, c.backoffMax = initial, max }
}

// WithAttemptTimeout bounds each attempt of a retried call (default
// DefaultAttemptTimeout); the call as a whole is bounded by its context.
func WithAttemptTimeout(d time.Duration) Option { return func(c *config) { c.attemptTimeout = d } }

// WithLogger sets where the library logs reconnects, spool recovery and
// dead letters (default slog.Default()). It never logs sample values or
// entry content.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.log = l } }

// Client is a connection to perfusiond. Its methods are safe for
// concurrent use. It connects lazily and reconnects on its own, so a
// Client can be made while the server is unreachable.
type Client struct {
	cfg      config
	conn     *grpc.ClientConn
	cases    pb.CaseServiceClient
	charting pb.ChartingServiceClient
	record   pb.RecordServiceClient
}

// Dial makes a Client for addr. It does not wait for the server: the
// connection is made on the first call and re-made after failures, so a
// gateway can start while the operating-room network is down. Either
// WithPrincipal or WithPerRPCCredentials is required. ctx is only checked
// for cancellation; the Client lives until Close.
//
// addr is one server (host:port), or several separated by commas
// ("srv-a:7070,srv-b:7070"): the Client then keeps a connection to each,
// spreads calls and new streams over those that are up (gRPC's
// round_robin), and when one server dies its calls fail with Unavailable
// and their retries, like every new stream, go to the others. A host name
// with several DNS records (gRPC's default dns resolver) is tried record by
// record in the same way, one connection at a time (gRPC's pick_first).
// Servers are stateless, so any of them may take any call.
func Dial(ctx context.Context, addr string, opts ...Option) (*Client, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cfg := config{backoffInitial: DefaultBackoffInitial, backoffMax: DefaultBackoffMax, attemptTimeout: DefaultAttemptTimeout}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.backoffInitial <= 0 {
		cfg.backoffInitial = DefaultBackoffInitial
	}
	if cfg.backoffMax <= 0 {
		cfg.backoffMax = DefaultBackoffMax
	}
	cfg.backoffMax = max(cfg.backoffMax, cfg.backoffInitial)
	if cfg.attemptTimeout <= 0 {
		cfg.attemptTimeout = DefaultAttemptTimeout
	}
	if cfg.log == nil {
		cfg.log = slog.Default()
	}
	if cfg.principal == "" && cfg.perRPC == nil && (cfg.tls == nil || len(cfg.tls.Certificates) == 0) {
		return nil, errors.New("perfusion: Dial needs WithToken, WithPerRPCCredentials, a client certificate (WithTLS) or WithPrincipal to identify the caller")
	}
	dopts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// Pings every 20 s (the server allows one every 10 s) notice a
		// network that vanished without a reset.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 20 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}),
		// gRPC's own reconnect back-off defaults to a 120 s cap; keep it
		// with ours so a restored network is used promptly.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: cfg.backoffInitial, Multiplier: 1.6, Jitter: 0.2, MaxDelay: cfg.backoffMax},
			MinConnectTimeout: 5 * time.Second,
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessageSize), grpc.MaxCallSendMsgSize(maxMessageSize)),
	}
	if cfg.principal != "" {
		dopts = append(dopts, grpc.WithChainUnaryInterceptor(principalUnary(cfg.principal)), grpc.WithChainStreamInterceptor(principalStream(cfg.principal)))
	}
	if cfg.perRPC != nil {
		dopts = append(dopts, grpc.WithPerRPCCredentials(cfg.perRPC))
	}
	target, addrOpts, err := targetFor(addr)
	if err != nil {
		return nil, fmt.Errorf("perfusion: dial %s: %w", addr, err)
	}
	dopts = append(dopts, addrOpts...)
	dopts = append(dopts, cfg.dialOpts...)
	conn, err := grpc.NewClient(target, dopts...)
	if err != nil {
		return nil, fmt.Errorf("perfusion: dial %s: %w", addr, err)
	}
	return &Client{cfg: cfg, conn: conn, cases: pb.NewCaseServiceClient(conn),
		charting: pb.NewChartingServiceClient(conn), record: pb.NewRecordServiceClient(conn)}, nil
}

// withPrincipal adds the principal header unless the caller set it.
func withPrincipal(ctx context.Context, name string) context.Context {
	if md, ok := metadata.FromOutgoingContext(ctx); ok && len(md.Get(PrincipalHeader)) > 0 {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, PrincipalHeader, name)
}

func principalUnary(name string) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		return invoker(withPrincipal(ctx, name), method, req, reply, cc, opts...)
	}
}

func principalStream(name string) grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		return streamer(withPrincipal(ctx, name), desc, cc, method, opts...)
	}
}

// Close closes the connection. Streamers using the Client must be closed
// first.
func (c *Client) Close() error { return c.conn.Close() }

// Conn returns the underlying connection, for services this package does
// not wrap (health, reflection).
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// CaseService returns the generated client, for calls with options this
// package does not offer. It carries the same principal and credentials.
func (c *Client) CaseService() pb.CaseServiceClient { return c.cases }

// ChartingService returns the generated client (see CaseService).
func (c *Client) ChartingService() pb.ChartingServiceClient { return c.charting }

// RecordService returns the generated client (see CaseService).
func (c *Client) RecordService() pb.RecordServiceClient { return c.record }

// FieldViolations returns the field violations of an InvalidArgument
// status (its google.rpc.BadRequest detail), naming each offending request
// field, e.g. "entry.drug.dose". It returns nil for any other error.
func FieldViolations(err error) []*errdetails.BadRequest_FieldViolation {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.InvalidArgument {
		return nil
	}
	var out []*errdetails.BadRequest_FieldViolation
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			out = append(out, br.GetFieldViolations()...)
		}
	}
	return out
}

// retryable reports whether a failed attempt of an idempotent call may be
// repeated: the server was unreachable or the attempt ran out of time, so
// it may or may not have been applied, and applying it again is harmless.
func retryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	}
	return false
}

// backoffDelay is the wait before retry number attempt (0-based):
// exponential, capped, with "equal jitter" (half fixed, half random) so
// gateways that lost the network together do not return in lockstep.
func backoffDelay(initial, maxDelay time.Duration, attempt int) time.Duration {
	d := initial
	for i := 0; i < attempt && d < maxDelay; i++ {
		d *= 2
	}
	d = min(d, maxDelay)
	half := d / 2
	return half + rand.N(half+1)
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// retry calls call until it succeeds, fails with a status that is not
// retryable, or ctx ends. Each attempt gets the attempt timeout. When ctx
// ends during the back-off, the last attempt's error is returned, so the
// caller sees the server's status rather than only a context error.
func retry[T any](ctx context.Context, c *Client, call func(context.Context) (T, error)) (T, error) {
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, c.cfg.attemptTimeout)
		resp, err := call(actx)
		cancel()
		if err == nil || !retryable(err) || ctx.Err() != nil {
			return resp, err
		}
		c.cfg.log.Debug("perfusion: retrying call", "code", status.Code(err).String(), "attempt", attempt+1)
		if sleepCtx(ctx, backoffDelay(c.cfg.backoffInitial, c.cfg.backoffMax, attempt)) != nil {
			return resp, err
		}
	}
}

// CreateCase opens a case. With req.CaseId set the call is idempotent and
// is retried on Unavailable and DeadlineExceeded; without it the server
// assigns the id and the call is sent once (a retry could create a second
// case). Set CaseId (a new UUID) when the network is unreliable.
func (c *Client) CreateCase(ctx context.Context, req *pb.CreateCaseRequest) (*pb.CreateCaseResponse, error) {
	if req.GetCaseId() == "" {
		return c.cases.CreateCase(ctx, req)
	}
	return retry(ctx, c, func(ctx context.Context) (*pb.CreateCaseResponse, error) { return c.cases.CreateCase(ctx, req) })
}

// GetCase returns a case; retried.
func (c *Client) GetCase(ctx context.Context, req *pb.GetCaseRequest) (*pb.GetCaseResponse, error) {
	return retry(ctx, c, func(ctx context.Context) (*pb.GetCaseResponse, error) { return c.cases.GetCase(ctx, req) })
}

// ListCases returns one page of cases; retried.
func (c *Client) ListCases(ctx context.Context, req *pb.ListCasesRequest) (*pb.ListCasesResponse, error) {
	return retry(ctx, c, func(ctx context.Context) (*pb.ListCasesResponse, error) { return c.cases.ListCases(ctx, req) })
}

// UpdateCaseDetails stores a new details version. It is sent once: after
// an ambiguous failure, GetCase shows whether it was applied (the details
// version moved), since a blind retry would fail with Aborted.
func (c *Client) UpdateCaseDetails(ctx context.Context, req *pb.UpdateCaseDetailsRequest) (*pb.UpdateCaseDetailsResponse, error) {
	return c.cases.UpdateCaseDetails(ctx, req)
}

// CloseCase ends charting on a case. It is sent once.
func (c *Client) CloseCase(ctx context.Context, req *pb.CloseCaseRequest) (*pb.CloseCaseResponse, error) {
	return c.cases.CloseCase(ctx, req)
}

// SignCase signs a case. It is sent once: a repeated signature is a second
// signature.
func (c *Client) SignCase(ctx context.Context, req *pb.SignCaseRequest) (*pb.SignCaseResponse, error) {
	return c.cases.SignCase(ctx, req)
}

// AddAddendum appends an addendum to a signed case. An empty
// req.AddendumId is filled with a new UUID (in req) before the first
// attempt, so every retry repeats the same addendum; retried.
func (c *Client) AddAddendum(ctx context.Context, req *pb.AddAddendumRequest) (*pb.AddAddendumResponse, error) {
	if req.GetAddendumId() == "" {
		req.AddendumId = uuid.NewString()
	}
	return retry(ctx, c, func(ctx context.Context) (*pb.AddAddendumResponse, error) { return c.cases.AddAddendum(ctx, req) })
}

// RecordEntry records an operator entry, idempotently on its entry_id: an
// empty req.Entry.EntryId is filled with a new UUID (in req) before the
// first attempt, and the call is retried on Unavailable and
// DeadlineExceeded until ctx ends. When an earlier attempt was stored but
// its answer lost, the server answers the retry with the stored entry and
// Duplicate set; that is success, and exactly one entry is on the record.
// A different entry under a used id fails with AlreadyExists.
func (c *Client) RecordEntry(ctx context.Context, req *pb.RecordEntryRequest) (*pb.RecordEntryResponse, error) {
	if e := req.GetEntry(); e != nil && e.GetEntryId() == "" {
		e.EntryId = uuid.NewString()
	}
	return retry(ctx, c, func(ctx context.Context) (*pb.RecordEntryResponse, error) { return c.charting.RecordEntry(ctx, req) })
}

// CorrectEntry supersedes or voids an entry, idempotently on req.EntryId
// (filled with a new UUID when empty, before the first attempt); retried.
func (c *Client) CorrectEntry(ctx context.Context, req *pb.CorrectEntryRequest) (*pb.CorrectEntryResponse, error) {
	if req.GetEntryId() == "" {
		req.EntryId = uuid.NewString()
	}
	return retry(ctx, c, func(ctx context.Context) (*pb.CorrectEntryResponse, error) { return c.charting.CorrectEntry(ctx, req) })
}

// ListEntries lists a case's entries; retried.
func (c *Client) ListEntries(ctx context.Context, req *pb.ListEntriesRequest) (*pb.ListEntriesResponse, error) {
	return retry(ctx, c, func(ctx context.Context) (*pb.ListEntriesResponse, error) { return c.charting.ListEntries(ctx, req) })
}

// ListSources lists a case's device sources with their clock lag; retried.
func (c *Client) ListSources(ctx context.Context, req *pb.ListSourcesRequest) (*pb.ListSourcesResponse, error) {
	return retry(ctx, c, func(ctx context.Context) (*pb.ListSourcesResponse, error) { return c.charting.ListSources(ctx, req) })
}

// QuerySamples reads device data, raw or downsampled; retried.
func (c *Client) QuerySamples(ctx context.Context, req *pb.QuerySamplesRequest) (*pb.QuerySamplesResponse, error) {
	return retry(ctx, c, func(ctx context.Context) (*pb.QuerySamplesResponse, error) { return c.charting.QuerySamples(ctx, req) })
}

// VerifyRecord re-hashes a case's whole record on the server; retried.
// A failed verification is a response with Ok false, not an error.
func (c *Client) VerifyRecord(ctx context.Context, req *pb.VerifyRecordRequest) (*pb.VerifyRecordResponse, error) {
	return retry(ctx, c, func(ctx context.Context) (*pb.VerifyRecordResponse, error) { return c.record.VerifyRecord(ctx, req) })
}

// GetAuditTrail returns one page of a case's audit trail; retried.
func (c *Client) GetAuditTrail(ctx context.Context, req *pb.GetAuditTrailRequest) (*pb.GetAuditTrailResponse, error) {
	return retry(ctx, c, func(ctx context.Context) (*pb.GetAuditTrailResponse, error) { return c.record.GetAuditTrail(ctx, req) })
}
