package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "perfusion/api/perfusion/v1"
	"perfusion/charting"
	"perfusion/store"
	"perfusion/store/postgres"
	"perfusion/store/postgres/pgtest"
)

// dbLink is a TCP proxy between the server and PostgreSQL that can be
// broken — every connection cut and new ones refused, as when the
// database's machine dies — and mended.
type dbLink struct {
	lis    net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]struct{}
}

func newDBLink(t *testing.T, target string) *dbLink {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &dbLink{lis: lis, target: target, conns: map[net.Conn]struct{}{}}
	go l.accept()
	t.Cleanup(func() { lis.Close(); l.cut(true) })
	return l
}

func (l *dbLink) accept() {
	for {
		c, err := l.lis.Accept()
		if err != nil {
			return
		}
		l.mu.Lock()
		down := l.down
		l.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		s, err := net.Dial("tcp", l.target)
		if err != nil {
			c.Close()
			continue
		}
		l.mu.Lock()
		l.conns[c], l.conns[s] = struct{}{}, struct{}{}
		l.mu.Unlock()
		go func() { _, _ = io.Copy(s, c); s.Close(); c.Close() }()
		go func() { _, _ = io.Copy(c, s); s.Close(); c.Close() }()
	}
}

// cut breaks every connection and, with down, refuses new ones.
func (l *dbLink) cut(down bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.down = down
	for c := range l.conns {
		c.Close()
	}
	l.conns = map[net.Conn]struct{}{}
}

// openThrough opens a migrated PostgreSQL backend on a fresh database
// whose connections pass through a dbLink.
func openThrough(t *testing.T) (*postgres.Backend, *dbLink, string) {
	t.Helper()
	dsn := pgtest.DSN(t)
	ctx := context.Background()
	direct, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if err := direct.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	direct.Close()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	link := newDBLink(t, u.Host)
	u.Host = link.lis.Addr().String()
	b, err := postgres.Open(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, link, dsn
}

func outageNote(caseID, id string) *pb.Entry {
	return &pb.Entry{EntryId: id, CaseId: caseID, OccurredAt: timestamppb.Now(),
		Detail: &pb.Entry_Note{Note: &pb.Note{Text: "outage test note"}}}
}

// TestDatabaseOutageIsUnavailable: while PostgreSQL is unreachable the
// server reports NOT_SERVING and answers reads, writes and sample streams
// with Unavailable — never Internal — and stores nothing; once it is back
// the server serves again by itself and the client's resend of the same
// entry stores it once.
func TestDatabaseOutageIsUnavailable(t *testing.T) {
	b, link, _ := openThrough(t)
	e := start(t, b)
	hc := healthpb.NewHealthClient(e.conn)
	waitHealth(t, hc, healthpb.HealthCheckResponse_SERVING)
	caseID := e.createCase("OR-1").GetCaseId()

	link.cut(true)
	waitHealth(t, hc, healthpb.HealthCheckResponse_NOT_SERVING)
	entryID := uuid.NewString()
	_, err := e.charting.RecordEntry(as(perfusionist), &pb.RecordEntryRequest{Entry: outageNote(caseID, entryID)})
	st := wantCode(t, "RecordEntry during the outage", err, codes.Unavailable)
	if st.Message() == "internal error" {
		t.Fatalf("outage reported as %q", st.Message())
	}
	_, err = e.cases.GetCase(as(perfusionist), &pb.GetCaseRequest{CaseId: caseID})
	wantCode(t, "GetCase during the outage", err, codes.Unavailable)

	stream, err := e.charting.StreamSamples(as(perfusionist))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&pb.StreamSamplesRequest{Message: &pb.StreamSamplesRequest_Open{Open: &pb.OpenSampleStream{CaseId: caseID, SourceIds: []string{"hlm-1"}}}}); err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	wantCode(t, "StreamSamples during the outage", err, codes.Unavailable)

	link.cut(false) // the database is back
	waitHealth(t, hc, healthpb.HealthCheckResponse_SERVING)
	resp := e.recordEntry(outageNote(caseID, entryID))
	if resp.GetDuplicate() {
		t.Fatal("the entry refused during the outage was stored after all")
	}
	list, err := e.charting.ListEntries(as(perfusionist), &pb.ListEntriesRequest{CaseId: caseID})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(list.GetEntries()); n != 1 {
		t.Fatalf("%d entries after the outage, want 1", n)
	}
	e.assertNoPHI()
}

// TestReadOnlyDatabaseIsUnavailable: a database that accepts connections
// but no writes — a standby, or a primary being demoted — makes the server
// NOT_SERVING and its writes Unavailable (SQLSTATE 25006), not Internal.
func TestReadOnlyDatabaseIsUnavailable(t *testing.T) {
	dsn := pgtest.DSN(t)
	ctx := context.Background()
	b, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if err := b.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	e := start(t, b)
	hc := healthpb.NewHealthClient(e.conn)
	waitHealth(t, hc, healthpb.HealthCheckResponse_SERVING)
	caseID := e.createCase("OR-1").GetCaseId()

	setReadOnly := func(on bool) {
		t.Helper()
		conn, err := pgx.Connect(ctx, pgtest.BaseURL(t))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		db := pgx.Identifier{b.Pool().Config().ConnConfig.Database}.Sanitize()
		v := "off"
		if on {
			v = "on"
		}
		if _, err := conn.Exec(ctx, "ALTER DATABASE "+db+" SET default_transaction_read_only = "+v); err != nil {
			t.Fatal(err)
		}
		b.Pool().Reset() // new sessions take the setting
	}
	setReadOnly(true)
	waitHealth(t, hc, healthpb.HealthCheckResponse_NOT_SERVING)
	_, err = e.charting.RecordEntry(as(perfusionist), &pb.RecordEntryRequest{Entry: outageNote(caseID, uuid.NewString())})
	wantCode(t, "RecordEntry on a read-only database", err, codes.Unavailable)

	setReadOnly(false)
	waitHealth(t, hc, healthpb.HealthCheckResponse_SERVING)
	e.recordEntry(outageNote(caseID, uuid.NewString()))
}

// failingWrites wraps a backend whose write transactions and case reads
// fail with err, while everything else (the access audit) works: what a
// server sees when its database goes away between two statements.
type failingWrites struct {
	store.Backend
	err atomic.Pointer[error] // nil: pass through
}

func (b *failingWrites) fault() error {
	if p := b.err.Load(); p != nil {
		return *p
	}
	return nil
}

func (b *failingWrites) ReadWrite(ctx context.Context, fn func(ctx context.Context, tx store.Tx) error) error {
	if err := b.fault(); err != nil {
		return err
	}
	return b.Backend.ReadWrite(ctx, fn)
}

func (b *failingWrites) GetCase(ctx context.Context, id uuid.UUID) (*charting.Case, error) {
	if err := b.fault(); err != nil {
		return nil, err
	}
	return b.Backend.GetCase(ctx, id)
}

// TestDatabaseErrorsAreUnavailable: every shape in which pgx reports that
// no writable database is reachable reaches the client as Unavailable with
// a fixed message, and only a genuinely unexpected error as Internal.
func TestDatabaseErrorsAreUnavailable(t *testing.T) {
	fb := &failingWrites{Backend: sqliteBackend(t)}
	e := start(t, fb)
	caseID := e.createCase("OR-1").GetCaseId()
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	for _, tc := range []struct {
		name string
		err  error
		want codes.Code
	}{
		{"connection refused", fmt.Errorf("postgres: begin transaction: %w", refused), codes.Unavailable},
		{"every host down or read-only", fmt.Errorf("postgres: begin transaction: %w", errors.Join(refused, errors.New("read only connection"))), codes.Unavailable},
		{"connection lost mid-statement", fmt.Errorf("postgres: insert entry: %w", io.ErrUnexpectedEOF), codes.Unavailable},
		{"admin shutdown 57P01", &pgconn.PgError{Severity: "FATAL", Code: "57P01"}, codes.Unavailable},
		{"crash shutdown 57P02", &pgconn.PgError{Severity: "FATAL", Code: "57P02"}, codes.Unavailable},
		{"cannot connect now 57P03", &pgconn.PgError{Severity: "FATAL", Code: "57P03"}, codes.Unavailable},
		{"read-only transaction 25006", fmt.Errorf("postgres: insert entry: %w", &pgconn.PgError{Code: "25006"}), codes.Unavailable},
		{"connection failure 08006", &pgconn.PgError{Code: "08006"}, codes.Unavailable},
		{"marked by the backend", fmt.Errorf("postgres: commit: %w", store.ErrUnavailable), codes.Unavailable},
		{"anything else stays internal", errors.New("decode block: corrupt"), codes.Internal},
	} {
		fb.err.Store(&tc.err)
		_, err := e.charting.RecordEntry(as(perfusionist), &pb.RecordEntryRequest{Entry: outageNote(caseID, uuid.NewString())})
		st := wantCode(t, tc.name+": RecordEntry", err, tc.want)
		_, err = e.cases.GetCase(as(perfusionist), &pb.GetCaseRequest{CaseId: caseID})
		wantCode(t, tc.name+": GetCase", err, tc.want)
		if tc.want == codes.Unavailable && strings.Contains(st.Message(), "SQLSTATE") {
			t.Errorf("%s: driver detail reached the client: %q", tc.name, st.Message())
		}
	}
	fb.err.Store(nil)
	e.recordEntry(outageNote(caseID, uuid.NewString()))
}
