package server_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "perfusion/api/perfusion/v1"
	"perfusion/server"
	"perfusion/store"
	"perfusion/store/sqlite/sqlitetest"
)

// Principals used by the tests. None of them is patient data; the patient
// fields below are, and must never appear in a log.
const (
	perfusionist = "perfusionist-1"
	gateway      = "gateway-hlm-1"
	reviewer     = "reviewer-7"
	testMRN      = "MRN-PHI-4471"
	testFamily   = "Phi-Familyname"
)

// forEachBackend runs fn against the embedded SQLite store and, when
// PERFUSION_TEST_DATABASE_URL is set, PostgreSQL (pgtest skips by name
// otherwise).
func forEachBackend(t *testing.T, fn func(t *testing.T, b store.Backend)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, sqlitetest.Open(t)) })
	t.Run("postgres", func(t *testing.T) { fn(t, openPostgres(t)) })
}

// sqliteBackend opens a fresh embedded store, for tests that need one
// backend only.
func sqliteBackend(t *testing.T) store.Backend { return sqlitetest.Open(t) }

// syncBuffer is a log sink tests can read while the server writes to it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// env is a running server on a real 127.0.0.1 socket and a client
// connection to it.
type env struct {
	t        *testing.T
	srv      *server.Server
	addr     string
	store    *store.Store
	logs     *syncBuffer
	conn     *grpc.ClientConn
	cases    pb.CaseServiceClient
	charting pb.ChartingServiceClient
	record   pb.RecordServiceClient
}

// start serves b on a fresh listener until the test ends. cfg may adjust
// the server's config; Store and Logger are set by start.
func start(t *testing.T, b store.Backend, adjust ...func(*server.Config)) *env {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	e := &env{t: t, addr: lis.Addr().String(), store: store.New(b, store.Config{}), logs: &syncBuffer{}}
	cfg := server.Config{
		Store:             e.store,
		Logger:            slog.New(slog.NewJSONHandler(io.MultiWriter(e.logs, testWriter{t}), &slog.HandlerOptions{Level: slog.LevelDebug})),
		ReadinessInterval: 20 * time.Millisecond,
	}
	for _, f := range adjust {
		f(&cfg)
	}
	srv := server.New(cfg)
	e.srv = srv
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-served; err != nil {
			t.Errorf("Serve returned %v after Shutdown, want nil", err)
		}
	})
	e.conn = e.dial()
	e.cases, e.charting, e.record = pb.NewCaseServiceClient(e.conn), pb.NewChartingServiceClient(e.conn), pb.NewRecordServiceClient(e.conn)
	return e
}

// testWriter forwards server logs to the test's log, shown on failure.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// dial opens a new client connection, closed when the test ends.
func (e *env) dial() *grpc.ClientConn {
	e.t.Helper()
	conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		e.t.Fatalf("dial: %v", err)
	}
	e.t.Cleanup(func() { conn.Close() })
	return conn
}

// as returns a context calling as principal.
func as(principal string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), server.PrincipalHeader, principal)
}

// assertNoPHI fails when a log line carries patient data.
func (e *env) assertNoPHI() {
	e.t.Helper()
	logs := e.logs.String()
	for _, phi := range []string{testMRN, testFamily, "1961-04-02"} {
		if strings.Contains(logs, phi) {
			e.t.Fatalf("server log contains patient data %q", phi)
		}
	}
}

func sampleDetails() *pb.CaseDetails {
	return &pb.CaseDetails{
		Patient: &pb.Patient{Mrn: testMRN, MrnAssigningAuthority: "HOSP", FamilyName: testFamily, GivenName: "Alex",
			BirthDate: "1961-04-02", Sex: pb.Sex_SEX_FEMALE, HeightCm: 170, WeightKg: 70, Allergies: []string{"latex"}},
		Team: &pb.Team{Surgeon: &pb.StaffMember{StaffId: "S1", DisplayName: "Dr Surgeon"},
			Perfusionists: []*pb.StaffMember{{StaffId: "P1", DisplayName: "Pat Perfusionist"}}},
		Procedure: &pb.Procedure{Description: "CABG x3"},
		Circuit: &pb.Circuit{ArterialPump: pb.PumpType_PUMP_TYPE_CENTRIFUGAL, Reservoir: pb.ReservoirType_RESERVOIR_TYPE_HARD_SHELL,
			Oxygenator: &pb.Component{Model: "OXY-1", Lot: "L123"}, Cannulae: []*pb.Cannula{{Site: "ascending aorta", SizeFr: 22}}},
		Prime: &pb.Prime{Components: []*pb.PrimeComponent{{Name: "Plasma-Lyte A", VolumeMl: 1200}}, RapVolumeMl: 400},
	}
}

// createCase creates a planned CPB case.
func (e *env) createCase(room string) *pb.Case {
	e.t.Helper()
	resp, err := e.cases.CreateCase(as(perfusionist), &pb.CreateCaseRequest{
		CaseId: uuid.NewString(), Kind: pb.CaseKind_CASE_KIND_CPB, Site: "MAIN", Room: room,
		ScheduledStart: timestamppb.New(time.Now().Truncate(time.Minute)), Details: sampleDetails(),
	})
	if err != nil {
		e.t.Fatalf("create case: %v", err)
	}
	return resp.GetCase()
}

func (e *env) getCase(id string) *pb.Case {
	e.t.Helper()
	resp, err := e.cases.GetCase(as(perfusionist), &pb.GetCaseRequest{CaseId: id})
	if err != nil {
		e.t.Fatalf("get case: %v", err)
	}
	return resp.GetCase()
}

// record records an entry and fails the test on error.
func (e *env) recordEntry(entry *pb.Entry) *pb.RecordEntryResponse {
	e.t.Helper()
	resp, err := e.charting.RecordEntry(as(perfusionist), &pb.RecordEntryRequest{Entry: entry})
	if err != nil {
		e.t.Fatalf("record entry: %v", err)
	}
	return resp
}

// auditTrail reads a case's whole audit trail.
func (e *env) auditTrail(id string) []*pb.AuditEvent {
	e.t.Helper()
	resp, err := e.record.GetAuditTrail(as(reviewer), &pb.GetAuditTrailRequest{CaseId: id, PageSize: 5000})
	if err != nil {
		e.t.Fatalf("audit trail: %v", err)
	}
	return resp.GetEvents()
}

func noteEntry(caseID, text string, at time.Time) *pb.Entry {
	return &pb.Entry{EntryId: uuid.NewString(), CaseId: caseID, OccurredAt: timestamppb.New(at),
		Detail: &pb.Entry_Note{Note: &pb.Note{Text: text}}}
}

func drugEntry(caseID string, dose float64, at time.Time) *pb.Entry {
	return &pb.Entry{EntryId: uuid.NewString(), CaseId: caseID, OccurredAt: timestamppb.New(at),
		Detail: &pb.Entry_Drug{Drug: &pb.DrugDose{Drug: "heparin", Dose: dose, Unit: "[iU]", Route: pb.Route_ROUTE_INTRAVENOUS}}}
}

// flowBatch builds a batch of n one-second samples of pump flow and
// arterial outlet temperature starting at startMs.
func flowBatch(source string, seq int64, startMs int64, n int) *pb.SampleBatch {
	flow := &pb.SampleSeries{Channel: "pump_flow"}
	temp := &pb.SampleSeries{Channel: "temp_arterial_outlet"}
	for i := 0; i < n; i++ {
		t := startMs + int64(i)*1000
		flow.OccurredAtUnixMs = append(flow.OccurredAtUnixMs, t)
		flow.Values = append(flow.Values, 4+float64((seq*7+int64(i))%200)/100)
		temp.OccurredAtUnixMs = append(temp.OccurredAtUnixMs, t)
		temp.Values = append(temp.Values, 28+float64((seq+int64(i))%90)/10)
	}
	return &pb.SampleBatch{SourceId: source, Sequence: seq, Series: []*pb.SampleSeries{flow, temp}}
}

func openMsg(caseID string, sources ...string) *pb.StreamSamplesRequest {
	return &pb.StreamSamplesRequest{Message: &pb.StreamSamplesRequest_Open{Open: &pb.OpenSampleStream{CaseId: caseID, SourceIds: sources}}}
}

func batchMsg(b *pb.SampleBatch) *pb.StreamSamplesRequest {
	return &pb.StreamSamplesRequest{Message: &pb.StreamSamplesRequest_Batch{Batch: b}}
}

// sampleStream is an open StreamSamples call.
type sampleStream struct {
	t      *testing.T
	s      grpc.BidiStreamingClient[pb.StreamSamplesRequest, pb.StreamSamplesResponse]
	opened *pb.SampleStreamOpened
}

// openStream opens a sample stream on client c for caseID.
func openStream(t *testing.T, c pb.ChartingServiceClient, caseID string, sources ...string) *sampleStream {
	t.Helper()
	s, err := c.StreamSamples(as(gateway))
	if err != nil {
		t.Fatalf("stream samples: %v", err)
	}
	if err := s.Send(openMsg(caseID, sources...)); err != nil {
		t.Fatalf("send open: %v", err)
	}
	resp, err := s.Recv()
	if err != nil {
		t.Fatalf("receive opened: %v", err)
	}
	if resp.GetOpened() == nil {
		t.Fatalf("first response is %v, want opened", resp)
	}
	return &sampleStream{t: t, s: s, opened: resp.GetOpened()}
}

// send sends a batch and waits for its ack.
func (ss *sampleStream) send(b *pb.SampleBatch) *pb.SampleBatchAck {
	ss.t.Helper()
	if err := ss.s.Send(batchMsg(b)); err != nil {
		ss.t.Fatalf("send batch %s/%d: %v", b.GetSourceId(), b.GetSequence(), err)
	}
	resp, err := ss.s.Recv()
	if err != nil {
		ss.t.Fatalf("ack of batch %s/%d: %v", b.GetSourceId(), b.GetSequence(), err)
	}
	if resp.GetAck() == nil {
		ss.t.Fatalf("response %v, want ack", resp)
	}
	return resp.GetAck()
}

// close ends the stream cleanly and waits for the server to agree.
func (ss *sampleStream) close() {
	ss.t.Helper()
	if err := ss.s.CloseSend(); err != nil {
		ss.t.Fatalf("close send: %v", err)
	}
	if _, err := ss.s.Recv(); !errors.Is(err, io.EOF) {
		ss.t.Fatalf("stream ended with %v, want a clean end", err)
	}
}

func position(opened *pb.SampleStreamOpened, source string) int64 {
	for _, p := range opened.GetPositions() {
		if p.GetSourceId() == source {
			return p.GetLastCommittedSequence()
		}
	}
	return -1
}

// wantCode fails unless err is a status with code.
func wantCode(t *testing.T, what string, err error, code codes.Code) *status.Status {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != code {
		t.Fatalf("%s: got %v, want %s", what, err, code)
	}
	return st
}

// wantFieldViolation fails unless err is InvalidArgument with a BadRequest
// field violation naming field.
func wantFieldViolation(t *testing.T, what string, err error, field string) {
	t.Helper()
	st := wantCode(t, what, err, codes.InvalidArgument)
	var fields []string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				if v.GetField() == field {
					return
				}
				fields = append(fields, v.GetField())
			}
		}
	}
	t.Fatalf("%s: field violations %v do not name %q (message %q)", what, fields, field, st.Message())
}
