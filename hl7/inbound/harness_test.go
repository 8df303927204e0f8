package inbound_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/hl7/inbound"
	"perfusion/hl7/mllp"
	v2 "perfusion/hl7/v2"
	"perfusion/store"
	"perfusion/store/postgres/pgtest"
	"perfusion/store/sqlite/sqlitetest"
)

// TestMain says in one line when this package's PostgreSQL tests were
// skipped for want of PERFUSION_TEST_DATABASE_URL (pgtest.Main).
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, "perfusion/hl7/inbound")) }

// forBackends runs fn on the embedded store and on PostgreSQL.
func forBackends(t *testing.T, fn func(t *testing.T, b store.Backend)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, sqlitetest.Open(t)) })
	t.Run("postgres", func(t *testing.T) { fn(t, pgtest.Open(t)) })
}

// The configured OR suite: ten cardiac rooms at MAIN, one at EAST.
func rooms() map[string][]string {
	r := map[string][]string{"EAST": {"CVOR-E"}}
	for i := 1; i <= 10; i++ {
		r["MAIN"] = append(r["MAIN"], fmt.Sprintf("CVOR-%d", i))
	}
	return r
}

// env is a store, a handler and a real MLLP listener on a free port.
type env struct {
	t    testing.TB
	st   *store.Store
	b    store.Backend
	ib   store.InboundBackend
	h    *inbound.Handler
	l    *inbound.Listener
	logs *logBuf
	ctl  atomic.Int64
}

type envOption func(*inbound.Config, *inbound.ListenerConfig)

func newEnv(t testing.TB, b store.Backend, opts ...envOption) *env {
	t.Helper()
	return newEnvStore(t, store.New(b, store.Config{}), opts...)
}

func newEnvStore(t testing.TB, st *store.Store, opts ...envOption) *env {
	t.Helper()
	logs := &logBuf{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	allow, err := inbound.ParseAllowlist("engine=127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cfg := inbound.Config{Store: st, Rooms: rooms(), Facility: v2.HD{NamespaceID: "MAIN"}, Logger: log}
	lcfg := inbound.ListenerConfig{Addr: "127.0.0.1:0", Allow: allow, Logger: log}
	for _, o := range opts {
		o(&cfg, &lcfg)
	}
	h, err := inbound.NewHandler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := inbound.Listen(lcfg, h)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = l.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		l.Shutdown(ctx)
	})
	ib, err := st.Inbound()
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, st: st, b: st.Backend(), ib: ib, h: h, l: l, logs: logs}
}

// logBuf keeps the log lines of the listener's goroutines.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// conn is an MLLP client connection, as an interface engine holds one.
type conn struct {
	t testing.TB
	c net.Conn
	r *mllp.Reader
}

func (e *env) dial() *conn {
	e.t.Helper()
	c, err := net.Dial("tcp", e.l.Addr().String())
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = c.Close() })
	return &conn{t: e.t, c: c, r: mllp.NewReader(c, 0)}
}

func dialTLS(t *testing.T, addr string, cfg *tls.Config) (*conn, error) {
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = c.Close() })
	return &conn{t: t, c: c, r: mllp.NewReader(c, 0)}, nil
}

// send writes one message and reads its ACK.
func (c *conn) send(msg string) (v2.Ack, []byte) {
	c.t.Helper()
	if err := mllp.WriteFrame(c.c, []byte(msg)); err != nil {
		c.t.Fatalf("send: %v", err)
	}
	_ = c.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	raw, err := c.r.ReadFrame()
	if err != nil {
		c.t.Fatalf("read ACK: %v", err)
	}
	a, err := v2.ParseAck(raw)
	if err != nil {
		c.t.Fatalf("ACK does not parse: %v\n%q", err, raw)
	}
	return a, raw
}

// closed reports whether the server closed the connection (no ACK).
func (c *conn) closed() bool {
	c.t.Helper()
	_ = c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := c.r.ReadFrame()
	return err != nil && !isTimeout(err)
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// vars are a fixture's placeholders; defaults give a realistic patient
// and a booking for tomorrow at 07:30 in CVOR-3.
type vars map[string]string

func (e *env) defaults() vars {
	now := time.Now()
	day := now.Add(24 * time.Hour).In(time.FixedZone("", -5*3600))
	start := time.Date(day.Year(), day.Month(), day.Day(), 7, 30, 0, 0, day.Location())
	return vars{
		"NOW": v2.FormatDTM(now, time.FixedZone("", -5*3600)), "CTL": e.nextCtl(),
		"MRN": "MRN-1001", "FAMILY": "Doe", "GIVEN": "John", "DOB": "19580312", "VISIT": "V-2001",
		"APPT": "A-100", "ROOM": "CVOR-3", "SITE": "MAIN", "START": v2.FormatDTM(start, start.Location()),
		"WEIGHT": "82", "PRIOR": "MRN-0999", "PRIORVISIT": "V-0999", "TRIGGER": "S15",
	}
}

// fresh gives a message a new control id (MSH-10), as a sender does for
// every new message.
func (e *env) fresh(msg string) string {
	return ctlPattern.ReplaceAllString(msg, "|"+e.nextCtl()+"|")
}

var ctlPattern = regexp.MustCompile(`\|CTL\d{6}\|`)

func (e *env) nextCtl() string { return fmt.Sprintf("CTL%06d", e.ctl.Add(1)) }

// fixture reads testdata/name, fills its placeholders from the defaults
// overridden by over, and ends segments with CR as MLLP senders do.
func (e *env) fixture(name string, over vars) string {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		e.t.Fatal(err)
	}
	v := e.defaults()
	for k, x := range over {
		v[k] = x
	}
	s := strings.TrimRight(string(b), "\n")
	for k, x := range v {
		s = strings.ReplaceAll(s, "{{"+k+"}}", x)
	}
	if strings.Contains(s, "{{") {
		e.t.Fatalf("fixture %s has an unfilled placeholder", name)
	}
	return strings.ReplaceAll(s, "\n", "\r") + "\r"
}

// startAt is a booking start tomorrow at hh:mm (-0500).
func startAt(hh, mm int) (string, time.Time) {
	day := time.Now().Add(24 * time.Hour).In(time.FixedZone("", -5*3600))
	t := time.Date(day.Year(), day.Month(), day.Day(), hh, mm, 0, 0, day.Location())
	return v2.FormatDTM(t, t.Location()), t.UTC()
}

func wantAck(t *testing.T, a v2.Ack, code v2.AckCode, errCode v2.ErrorCode) {
	t.Helper()
	if a.Code != code || a.ErrorCode != errCode {
		t.Fatalf("ACK %s/%s (%s), want %s/%s", a.Code, a.ErrorCode, a.Text, code, errCode)
	}
}

// planned lists the site's planned cases, cancelled bookings apart.
func (e *env) planned(site string) (live, cancelled []charting.Case) {
	e.t.Helper()
	cs, _, err := e.st.ListCases(context.Background(), store.CaseFilter{Site: site, Status: charting.StatusPlanned, Limit: 500})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, c := range cs {
		if c.Details.Booking != nil && c.Details.Booking.Cancelled {
			cancelled = append(cancelled, c)
		} else {
			live = append(live, c)
		}
	}
	return live, cancelled
}

func (e *env) caseOf(site, appt string) *charting.Case {
	e.t.Helper()
	bk, err := e.ib.InboundBooking(context.Background(), site, appt)
	if err != nil {
		e.t.Fatalf("booking %s/%s: %v", site, appt, err)
	}
	c, err := e.st.GetCase(context.Background(), bk.CaseID)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func (e *env) get(id uuid.UUID) *charting.Case {
	e.t.Helper()
	c, err := e.st.GetCase(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func (e *env) journal() []store.InboundMessage {
	e.t.Helper()
	ms, err := e.ib.ListInboundMessages(context.Background(), store.InboundFilter{Limit: 10000})
	if err != nil {
		e.t.Fatal(err)
	}
	return ms
}

func (e *env) caseCount() int {
	e.t.Helper()
	cs, _, err := e.st.ListCases(context.Background(), store.CaseFilter{Limit: 500})
	if err != nil {
		e.t.Fatal(err)
	}
	return len(cs)
}

// chart records one event, moving a planned case to in progress.
func (e *env) chart(id uuid.UUID) {
	e.t.Helper()
	_, _, err := e.st.RecordEntry(context.Background(), "perfusionist-1", charting.Entry{ID: uuid.New(), CaseID: id, OccurredAt: time.Now().UTC().Add(-time.Minute),
		Detail: charting.EntryDetail{Event: &charting.Event{Type: "bypass_on"}}})
	if err != nil {
		e.t.Fatalf("chart: %v", err)
	}
}

// noPHI fails when the log holds any of the values.
func (e *env) noPHI(values ...string) {
	e.t.Helper()
	logs := e.logs.String()
	for _, v := range values {
		if strings.Contains(logs, v) {
			e.t.Fatalf("the log holds patient data %q", v)
		}
	}
}

// quiet logs warnings only (benchmarks).
func quiet(c *inbound.Config, l *inbound.ListenerConfig) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	c.Logger, l.Logger = log, log
}
