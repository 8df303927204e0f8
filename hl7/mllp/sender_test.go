package mllp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v2 "perfusion/hl7/v2"
)

// testMessage is a small ORU with control ID id. Its PID carries a name
// that no error or log line may repeat.
func testMessage(id string) []byte {
	return []byte("MSH|^~\\&|PERFUSION|GENHOSP|EHR|GENHOSP|20261127090000+0000||ORU^R01^ORU_R01|" + id + "|P|2.6|||AL|NE\r" +
		"PID|||00012345^^^GENHOSP^MR||Secretname^Patient^^^^^L\r")
}

var ehr = v2.HD{NamespaceID: "EHR"}

// fastConfig keeps the tests quick: short timeouts and back-off.
func fastConfig(addr string) SenderConfig {
	return SenderConfig{
		Addr:           addr,
		DialTimeout:    2 * time.Second,
		WriteTimeout:   2 * time.Second,
		AckTimeout:     300 * time.Millisecond,
		MaxAttempts:    4,
		InitialBackoff: 10 * time.Millisecond,
		MaxBackoff:     40 * time.Millisecond,
	}
}

func startServer(t *testing.T, h Handler) *Server {
	t.Helper()
	srv, err := Start("127.0.0.1:0", h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

// serve runs srv, configured before it starts, on a loopback port.
func serve(t *testing.T, srv *Server) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return l.Addr().String()
}

func newSender(t *testing.T, cfg SenderConfig) *Sender {
	t.Helper()
	s, err := NewSender(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func always(code v2.AckCode, e *v2.AckError) func(*v2.Message) (v2.AckCode, *v2.AckError) {
	return func(*v2.Message) (v2.AckCode, *v2.AckError) { return code, e }
}

func noLeak(t *testing.T, err error) {
	t.Helper()
	if err != nil && (strings.Contains(err.Error(), "Secretname") || strings.Contains(err.Error(), "00012345")) {
		t.Errorf("error repeats message content: %v", err)
	}
}

func TestSendAA(t *testing.T) {
	srv := startServer(t, AckHandler(ehr, always(v2.AA, nil)))
	s := newSender(t, fastConfig(srv.Addr().String()))
	ack, err := s.Send(context.Background(), testMessage("C1"))
	if err != nil {
		t.Fatal(err)
	}
	if ack.Code != v2.AA || ack.ControlID != "C1" {
		t.Errorf("ack %+v", ack)
	}
}

func TestSendAEIsSurfacedNotRetried(t *testing.T) {
	var calls atomic.Int32
	decide := func(m *v2.Message) (v2.AckCode, *v2.AckError) {
		calls.Add(1)
		return v2.AE, &v2.AckError{Code: v2.ErrRequiredFieldMissing, Text: "Secretname: PV1 missing"}
	}
	srv := startServer(t, AckHandler(ehr, decide))
	s := newSender(t, fastConfig(srv.Addr().String()))
	ack, err := s.Send(context.Background(), testMessage("C1"))
	var ce *ContentError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want *ContentError", err)
	}
	if calls.Load() != 1 {
		t.Errorf("receiver saw %d attempts; a content error must not be resent", calls.Load())
	}
	if ack.Code != v2.AE || ce.Ack.ErrorCode != v2.ErrRequiredFieldMissing || ce.Ack.Text == "" {
		t.Errorf("ack %+v", ce.Ack)
	}
	noLeak(t, err) // the receiver's text stays in the Ack, out of the error string
}

func TestSendARRetriedThenAA(t *testing.T) {
	var calls atomic.Int32
	decide := func(m *v2.Message) (v2.AckCode, *v2.AckError) {
		if calls.Add(1) <= 2 {
			return v2.AR, &v2.AckError{Code: v2.ErrApplicationInternal, Text: "busy"}
		}
		return v2.AA, nil
	}
	srv := startServer(t, AckHandler(ehr, decide))
	s := newSender(t, fastConfig(srv.Addr().String()))
	ack, err := s.Send(context.Background(), testMessage("C7"))
	if err != nil || ack.Code != v2.AA {
		t.Fatalf("ack %+v, err %v", ack, err)
	}
	if calls.Load() != 3 {
		t.Errorf("%d attempts, want 3", calls.Load())
	}
	if srv.Connections() != 1 {
		t.Errorf("%d connections: a rejection must not cost the connection", srv.Connections())
	}
}

func TestSendARExhausted(t *testing.T) {
	srv := startServer(t, AckHandler(ehr, always(v2.CR, nil)))
	cfg := fastConfig(srv.Addr().String())
	cfg.MaxAttempts = 3
	s := newSender(t, cfg)
	ack, err := s.Send(context.Background(), testMessage("C1"))
	var de *DeliveryError
	var re *RejectedError
	if !errors.As(err, &de) || !errors.As(err, &re) || de.Attempts != 3 {
		t.Fatalf("err = %v", err)
	}
	if ack.Code != v2.CR {
		t.Errorf("last ack %+v", ack)
	}
}

// dropFirst wraps a listener: its first connection reads a few bytes of the
// message and is then closed, as a receiver that dies mid-message would.
type dropFirst struct {
	net.Listener
	once sync.Once
}

func (l *dropFirst) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		dropped := false
		l.once.Do(func() {
			dropped = true
			go func() {
				_, _ = io.ReadFull(c, make([]byte, 20))
				_ = c.Close()
			}()
		})
		if !dropped {
			return c, nil
		}
	}
}

func TestSendDroppedConnectionMidMessage(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{Handler: AckHandler(ehr, always(v2.AA, nil))}
	go func() { _ = srv.Serve(&dropFirst{Listener: l}) }()
	t.Cleanup(func() { _ = srv.Close() })
	s := newSender(t, fastConfig(l.Addr().String()))
	ack, err := s.Send(context.Background(), testMessage("C1"))
	if err != nil || ack.Code != v2.AA {
		t.Fatalf("ack %+v, err %v", ack, err)
	}
	if srv.Connections() != 1 {
		t.Errorf("server served %d connections after the drop, want 1", srv.Connections())
	}
}

func TestSendDroppedBeforeAck(t *testing.T) {
	var calls atomic.Int32
	ok := AckHandler(ehr, always(v2.AA, nil))
	srv := startServer(t, func(ctx context.Context, msg []byte) ([]byte, error) {
		if calls.Add(1) == 1 {
			return nil, errors.New("crash") // close without answering
		}
		return ok(ctx, msg)
	})
	s := newSender(t, fastConfig(srv.Addr().String()))
	if _, err := s.Send(context.Background(), testMessage("C1")); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 2 || srv.Connections() != 2 {
		t.Errorf("calls %d, connections %d; want a resend on a new connection", calls.Load(), srv.Connections())
	}
}

func TestSendStallBeyondAckTimeout(t *testing.T) {
	var calls atomic.Int32
	ok := AckHandler(ehr, always(v2.AA, nil))
	srv := startServer(t, func(ctx context.Context, msg []byte) ([]byte, error) {
		if calls.Add(1) == 1 {
			<-ctx.Done() // stall until the sender gives up on this connection
			return nil, ctx.Err()
		}
		return ok(ctx, msg)
	})
	cfg := fastConfig(srv.Addr().String())
	cfg.AckTimeout = 100 * time.Millisecond
	s := newSender(t, cfg)
	start := time.Now()
	ack, err := s.Send(context.Background(), testMessage("C1"))
	if err != nil || ack.Code != v2.AA {
		t.Fatalf("ack %+v, err %v", ack, err)
	}
	if d := time.Since(start); d < cfg.AckTimeout || d > 5*time.Second {
		t.Errorf("took %v", d)
	}
	if srv.Connections() != 2 {
		t.Errorf("%d connections: a timed-out connection must be replaced", srv.Connections())
	}
}

func TestSendStallAlwaysTimesOut(t *testing.T) {
	srv := startServer(t, func(ctx context.Context, msg []byte) ([]byte, error) { return nil, nil })
	cfg := fastConfig(srv.Addr().String())
	cfg.AckTimeout = 50 * time.Millisecond
	cfg.MaxAttempts = 2
	s := newSender(t, cfg)
	_, err := s.Send(context.Background(), testMessage("C1"))
	if !errors.Is(err, ErrAckTimeout) {
		t.Fatalf("err = %v, want ErrAckTimeout inside a DeliveryError", err)
	}
	noLeak(t, err)
}

func TestSendContextCancelled(t *testing.T) {
	srv := startServer(t, func(ctx context.Context, msg []byte) ([]byte, error) { return nil, nil })
	cfg := fastConfig(srv.Addr().String())
	cfg.AckTimeout = time.Minute
	s := newSender(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := s.Send(ctx, testMessage("C1"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("cancellation took %v", d)
	}
}

func TestSendOversizedFrameRejectedByReceiver(t *testing.T) {
	srv := &Server{Handler: AckHandler(ehr, always(v2.AA, nil)), MaxFrameSize: 1024}
	cfg := fastConfig(serve(t, srv))
	cfg.MaxAttempts = 2
	s := newSender(t, cfg)
	big := append(testMessage("C1"), []byte("NTE|1||"+strings.Repeat("x", 64<<10)+"\r")...)
	_, err := s.Send(context.Background(), big)
	var de *DeliveryError
	if !errors.As(err, &de) {
		t.Fatalf("err = %v, want *DeliveryError", err)
	}
	noLeak(t, err)
	// The receiver is still usable for messages within its limit.
	if ack, err := s.Send(context.Background(), testMessage("C2")); err != nil || ack.Code != v2.AA {
		t.Errorf("small message after the oversized one: %+v %v", ack, err)
	}
}

func TestSendOversizedAck(t *testing.T) {
	srv := startServer(t, func(ctx context.Context, msg []byte) ([]byte, error) {
		return append([]byte("MSH|^~\\&|EHR\rMSA|AA|C1\rNTE|1||"), bytes.Repeat([]byte("y"), 4096)...), nil
	})
	cfg := fastConfig(srv.Addr().String())
	cfg.MaxFrameSize = 1024
	cfg.MaxAttempts = 2
	s := newSender(t, cfg)
	_, err := s.Send(context.Background(), testMessage("C1"))
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("err = %v, want ErrFrameTooLarge", err)
	}
}

func TestSendSkipsAcksForOtherMessages(t *testing.T) {
	// A raw receiver that answers each message with a late ACK for an
	// earlier control ID first, then the right one.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := NewReader(c, 0)
		for {
			msg, err := r.ReadFrame()
			if err != nil {
				return
			}
			m, err := v2.Parse(msg)
			if err != nil {
				return
			}
			_ = WriteFrame(c, []byte("MSH|^~\\&|EHR\rMSA|AA|EARLIER\r"))
			_ = WriteFrame(c, []byte("MSH|^~\\&|EHR\rMSA|AA|"+m.ControlID()+"\r"))
		}
	}()
	s := newSender(t, fastConfig(l.Addr().String()))
	for _, id := range []string{"C9", "C10"} {
		ack, err := s.Send(context.Background(), testMessage(id))
		if err != nil || ack.ControlID != id {
			t.Fatalf("ack %+v, err %v", ack, err)
		}
	}
}

func TestSendManySequentialOverOneConnection(t *testing.T) {
	var inFlight, maxInFlight atomic.Int32
	ok := AckHandler(ehr, always(v2.AA, nil))
	srv := startServer(t, func(ctx context.Context, msg []byte) ([]byte, error) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		if n > maxInFlight.Load() {
			maxInFlight.Store(n)
		}
		return ok(ctx, msg)
	})
	s := newSender(t, fastConfig(srv.Addr().String()))
	const n = 300
	for i := range n {
		id := fmt.Sprintf("SEQ%04d", i)
		ack, err := s.Send(context.Background(), testMessage(id))
		if err != nil || ack.ControlID != id {
			t.Fatalf("message %d: %+v %v", i, ack, err)
		}
	}
	// Concurrent callers queue behind the one message in flight.
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				id := fmt.Sprintf("PAR%d-%d", g, i)
				if ack, err := s.Send(context.Background(), testMessage(id)); err != nil || ack.ControlID != id {
					t.Errorf("%s: %+v %v", id, ack, err)
				}
			}
		}()
	}
	wg.Wait()
	if srv.Connections() != 1 {
		t.Errorf("%d connections for %d messages, want 1", srv.Connections(), n+160)
	}
	if maxInFlight.Load() != 1 {
		t.Errorf("receiver saw %d messages in flight at once", maxInFlight.Load())
	}
}

func TestSendReconnectsAfterIdleClose(t *testing.T) {
	srv := &Server{Handler: AckHandler(ehr, always(v2.AA, nil)), IdleTimeout: 50 * time.Millisecond}
	s := newSender(t, fastConfig(serve(t, srv)))
	if _, err := s.Send(context.Background(), testMessage("C1")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond) // the receiver closes the idle connection
	start := time.Now()
	if _, err := s.Send(context.Background(), testMessage("C2")); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("reconnect after idle close took %v", d)
	}
	if srv.Connections() != 2 {
		t.Errorf("%d connections, want 2", srv.Connections())
	}
}

func TestSendRejectsBadInput(t *testing.T) {
	s := newSender(t, fastConfig("127.0.0.1:1"))
	if _, err := s.Send(context.Background(), []byte("not hl7 Secretname")); err == nil {
		t.Error("non-HL7 sent")
	} else {
		noLeak(t, err)
	}
	if _, err := s.Send(context.Background(), []byte("MSH|^~\\&|A\r")); !errors.Is(err, ErrNoControlID) {
		t.Errorf("err = %v, want ErrNoControlID", err)
	}
	if _, err := NewSender(SenderConfig{}); err == nil {
		t.Error("sender without address")
	}
}

func TestSendConnectionRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	cfg := fastConfig(addr)
	cfg.MaxAttempts = 2
	s := newSender(t, cfg)
	_, err = s.Send(context.Background(), testMessage("C1"))
	var de *DeliveryError
	if !errors.As(err, &de) || de.Attempts != 2 {
		t.Fatalf("err = %v", err)
	}
}

func TestSenderClose(t *testing.T) {
	srv := startServer(t, func(ctx context.Context, msg []byte) ([]byte, error) { return nil, nil })
	cfg := fastConfig(srv.Addr().String())
	cfg.AckTimeout = time.Minute
	s := newSender(t, cfg)
	done := make(chan error, 1)
	go func() {
		_, err := s.Send(context.Background(), testMessage("C1"))
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	_ = s.Close()
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("in-flight Send: %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not interrupt Send")
	}
	if _, err := s.Send(context.Background(), testMessage("C2")); !errors.Is(err, ErrClosed) {
		t.Errorf("Send after Close: %v", err)
	}
}

func TestBackoffBounds(t *testing.T) {
	s := &Sender{cfg: SenderConfig{InitialBackoff: 100 * time.Millisecond, MaxBackoff: time.Second}}
	for n, nominal := range map[int]time.Duration{1: 100, 2: 200, 3: 400, 4: 800, 5: 1000, 30: 1000} {
		nominal *= time.Millisecond
		for range 50 {
			d := s.backoff(n)
			if d < nominal/2 || d > nominal {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", n, d, nominal/2, nominal)
			}
		}
	}
}
