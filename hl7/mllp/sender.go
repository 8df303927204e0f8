package mllp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"time"

	v2 "perfusion/hl7/v2"
)

// SenderConfig configures a Sender. Zero durations and counts take the
// defaults given.
type SenderConfig struct {
	// Addr is the receiver's host:port.
	Addr string
	// Dial opens a connection; nil means a plain TCP dial. Set it to
	// (&tls.Dialer{...}).DialContext for MLLP over TLS.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// DialTimeout bounds connecting (default 10 s).
	DialTimeout time.Duration
	// WriteTimeout bounds writing one message (default 10 s).
	WriteTimeout time.Duration
	// AckTimeout bounds the wait for the ACK after the message is written
	// (default 30 s). A receiver slower than this is treated like a dropped
	// connection: the connection is closed and the message resent.
	AckTimeout time.Duration
	// MaxAttempts is how many times one message is tried before Send gives
	// up with a *DeliveryError (default 5). Give-up is not loss: the caller
	// (the outbox) keeps the message and tries again later.
	MaxAttempts int
	// InitialBackoff and MaxBackoff bound the wait between attempts, which
	// doubles from InitialBackoff up to MaxBackoff (defaults 1 s and 1 min).
	// Each wait is jittered between half and all of its nominal length, so
	// senders that failed together do not retry together.
	InitialBackoff time.Duration
	MaxBackoff     time.Duration // cap of the doubling
	// MaxFrameSize bounds the ACK read (default DefaultMaxFrameSize).
	MaxFrameSize int
	// Logger receives one line per failed attempt (attempt, control ID,
	// error class); nil logs nothing. Message content is never logged.
	Logger *slog.Logger
}

func (c *SenderConfig) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.DialTimeout, 10*time.Second)
	def(&c.WriteTimeout, 10*time.Second)
	def(&c.AckTimeout, 30*time.Second)
	def(&c.InitialBackoff, time.Second)
	def(&c.MaxBackoff, time.Minute)
	if c.MaxBackoff < c.InitialBackoff {
		c.MaxBackoff = c.InitialBackoff
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 5
	}
	if c.MaxFrameSize <= 0 {
		c.MaxFrameSize = DefaultMaxFrameSize
	}
	if c.Dial == nil {
		c.Dial = (&net.Dialer{}).DialContext
	}
}

// Errors a Send may return (see Sender.Send).
var (
	// ErrAckTimeout: no acknowledgement arrived within AckTimeout.
	ErrAckTimeout = errors.New("mllp: no acknowledgement within the ACK timeout")
	// ErrClosed: the Sender was closed.
	ErrClosed = errors.New("mllp: sender is closed")
	// ErrNoControlID: the message has no MSH-10 to match the ACK against.
	ErrNoControlID = errors.New("mllp: message has no control ID (MSH-10)")
)

// ContentError reports an AE or CE acknowledgement: the receiver found an
// error in the message. It is not retried, because the same bytes would
// fail the same way; fix the content (and send it as a new version).
type ContentError struct {
	Ack v2.Ack // the receiver's ACK; Ack.Text is its free text, never logged here
}

func (e *ContentError) Error() string {
	return fmt.Sprintf("mllp: receiver reported a content error (%s, ERR-3 %q): fix the message before resending", e.Ack.Code, e.Ack.ErrorCode)
}

// RejectedError reports an AR or CR acknowledgement: the receiver rejected
// or could not process the message now. Send retries it; it is returned
// (inside a DeliveryError) only when the attempts run out.
type RejectedError struct {
	Ack v2.Ack // the receiver's ACK (AR or CR)
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("mllp: receiver rejected the message (%s, ERR-3 %q)", e.Ack.Code, e.Ack.ErrorCode)
}

// DeliveryError reports that every attempt failed. Err is the last
// failure: a *RejectedError, ErrAckTimeout, or a network or framing error.
type DeliveryError struct {
	Attempts int   // how many attempts were made
	Err      error // the last attempt's failure
}

func (e *DeliveryError) Error() string {
	return fmt.Sprintf("mllp: not delivered after %d attempts: %v", e.Attempts, e.Err)
}

// Unwrap returns the last failure, for errors.Is and errors.As.
func (e *DeliveryError) Unwrap() error { return e.Err }

// Sender delivers HL7 messages to one receiver over one connection, one
// message in flight at a time (MLLP allows no pipelining: the ACK is the
// only proof a message arrived). It is safe for concurrent use; concurrent
// Sends queue. The connection is opened on first use, kept between
// messages and reopened after any failure.
type Sender struct {
	cfg SenderConfig
	sem chan struct{} // held for a whole Send: one message in flight

	mu     sync.Mutex // guards conn, reader and closed
	conn   net.Conn
	reader *Reader
	closed bool
}

// NewSender returns a Sender for cfg. It does not connect yet.
func NewSender(cfg SenderConfig) (*Sender, error) {
	if cfg.Addr == "" {
		return nil, errors.New("mllp: sender needs an address")
	}
	cfg.defaults()
	return &Sender{cfg: cfg, sem: make(chan struct{}, 1)}, nil
}

// Send delivers one encoded HL7 message and returns the receiver's ACK.
//
//   - AA or CA: the ACK and nil.
//   - AE or CE: the ACK and a *ContentError, after one attempt.
//   - AR, CR, ACK timeout, dropped connection, malformed ACK: retried with
//     back-off up to MaxAttempts, then the last ACK (if any) and a
//     *DeliveryError.
//   - ctx done: ctx's error, at once; whether the receiver got the
//     message is then unknown, so send it again later (it deduplicates by
//     MSH-10).
//
// The ACK must echo the message's MSH-10 in MSA-2; ACKs for other control
// IDs (late answers to an earlier attempt) are skipped.
func (s *Sender) Send(ctx context.Context, msg []byte) (v2.Ack, error) {
	m, err := v2.Parse(msg)
	if err != nil {
		return v2.Ack{}, fmt.Errorf("mllp: message is not valid HL7: %w", err)
	}
	id := m.ControlID()
	if id == "" {
		return v2.Ack{}, ErrNoControlID
	}
	select {
	case s.sem <- struct{}{}:
		defer func() { <-s.sem }()
	case <-ctx.Done():
		return v2.Ack{}, ctx.Err()
	}

	var last error
	var lastAck v2.Ack
	staleRetried := false
	for attempt := 1; attempt <= s.cfg.MaxAttempts; attempt++ {
		reused := s.connected()
		ack, err := s.exchange(ctx, msg, id)
		if err == nil {
			switch ack.Code.Class() {
			case v2.AckAccepted:
				return ack, nil
			case v2.AckContentError:
				return ack, &ContentError{Ack: ack}
			default: // AckRejected; AckInvalid never parses
				lastAck, err = ack, &RejectedError{Ack: ack}
			}
		} else {
			s.dropConn()
			if s.isClosed() {
				return v2.Ack{}, ErrClosed
			}
			if ctx.Err() != nil {
				return v2.Ack{}, ctx.Err()
			}
			// A kept connection may have been closed by the receiver or a
			// firewall while idle; that costs neither an attempt nor a wait.
			if reused && !staleRetried && !errors.Is(err, ErrAckTimeout) {
				staleRetried = true
				attempt--
				continue
			}
		}
		last = err
		if s.cfg.Logger != nil {
			s.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "mllp: attempt failed",
				slog.Int("attempt", attempt), slog.Int("max_attempts", s.cfg.MaxAttempts),
				slog.String("control_id", id), slog.String("error", err.Error()))
		}
		if attempt < s.cfg.MaxAttempts {
			if err := sleep(ctx, s.backoff(attempt)); err != nil {
				return lastAck, err
			}
		}
	}
	return lastAck, &DeliveryError{Attempts: s.cfg.MaxAttempts, Err: last}
}

func (s *Sender) connected() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn != nil
}

func (s *Sender) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// backoff returns the jittered wait before retry n (1 for the first
// retry): nominal InitialBackoff·2^(n-1), capped, then a uniform draw from
// [nominal/2, nominal].
func (s *Sender) backoff(n int) time.Duration {
	d := s.cfg.InitialBackoff
	for i := 1; i < n && d < s.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, s.cfg.MaxBackoff)
	half := d / 2
	return half + rand.N(d-half+1)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// exchange writes the message and reads its ACK on the current
// connection, dialing first if there is none.
func (s *Sender) exchange(ctx context.Context, msg []byte, id string) (v2.Ack, error) {
	conn, reader, err := s.connect(ctx)
	if err != nil {
		return v2.Ack{}, err
	}
	// Cancelling ctx interrupts blocked reads and writes at once.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()

	if err := conn.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout)); err != nil {
		return v2.Ack{}, err
	}
	if err := WriteFrame(conn, msg); err != nil {
		return v2.Ack{}, fmt.Errorf("mllp: write: %w", err)
	}
	if err := conn.SetReadDeadline(time.Now().Add(s.cfg.AckTimeout)); err != nil {
		return v2.Ack{}, err
	}
	// Skip a bounded number of ACKs for other control IDs: a receiver may
	// answer an attempt we already gave up on.
	for range 8 {
		frame, err := reader.ReadFrame()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() == nil {
				return v2.Ack{}, ErrAckTimeout
			}
			return v2.Ack{}, fmt.Errorf("mllp: reading ACK: %w", err)
		}
		ack, err := v2.ParseAck(frame)
		if err != nil {
			return v2.Ack{}, fmt.Errorf("mllp: invalid ACK: %w", err)
		}
		if ack.ControlID == id {
			return ack, nil
		}
	}
	return v2.Ack{}, errors.New("mllp: receiver keeps acknowledging other control IDs")
}

func (s *Sender) connect(ctx context.Context) (net.Conn, *Reader, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, nil, ErrClosed
	}
	if s.conn != nil {
		c, r := s.conn, s.reader
		s.mu.Unlock()
		return c, r, nil
	}
	s.mu.Unlock()

	dctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
	defer cancel()
	c, err := s.cfg.Dial(dctx, "tcp", s.cfg.Addr)
	if err != nil {
		return nil, nil, fmt.Errorf("mllp: connect: %w", err)
	}
	r := NewReader(c, s.cfg.MaxFrameSize)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		_ = c.Close()
		return nil, nil, ErrClosed
	}
	s.conn, s.reader = c, r
	return c, r, nil
}

// dropConn closes the connection after a failure: its state (a half-read
// ACK, a message the receiver may still answer) cannot be trusted.
func (s *Sender) dropConn() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		_ = s.conn.Close()
		s.conn, s.reader = nil, nil
	}
}

// Close closes the connection and makes every later Send fail with
// ErrClosed; a Send in progress is interrupted.
func (s *Sender) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn, s.reader = nil, nil
	return err
}
