package mllp

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	v2 "perfusion/hl7/v2"
)

// Handler answers one received message. It returns the encoded ACK to
// send; nil sends nothing (the peer will time out), and an error closes the
// connection without an answer, as a receiver that crashes would. ctx ends
// when the connection or the server closes.
type Handler func(ctx context.Context, msg []byte) (ack []byte, err error)

// Server receives MLLP frames and answers each with its Handler's ACK, one
// message at a time per connection. It is small on purpose: the receiving
// end for tests and simulators, not an interface engine.
type Server struct {
	Handler Handler // answers each message; required
	// MaxFrameSize bounds a received message (default DefaultMaxFrameSize);
	// a larger frame closes the connection.
	MaxFrameSize int
	// IdleTimeout closes a connection that sends nothing for this long
	// (0: never).
	IdleTimeout time.Duration
	// WriteTimeout bounds writing an ACK (default 10 s).
	WriteTimeout time.Duration
	// Logger receives connection-level failures; nil logs nothing.
	Logger *slog.Logger

	mu       sync.Mutex
	listener net.Listener
	conns    map[net.Conn]struct{}
	closed   bool
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	accepted atomic.Int64
}

// Start listens on addr (e.g. "127.0.0.1:0") and serves in the
// background. Use Addr for the address it got and Close to stop it.
func Start(addr string, h Handler) (*Server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{Handler: h}
	s.init()
	s.listener = l
	go func() { _ = s.Serve(l) }()
	return s, nil
}

func (s *Server) init() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx == nil {
		s.ctx, s.cancel = context.WithCancel(context.Background())
		s.conns = make(map[net.Conn]struct{})
	}
}

// Addr returns the listening address of a Server made by Start, or of the
// listener last given to Serve.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listener == nil {
		return nil
	}
	return s.listener.Addr()
}

// Connections returns how many connections the server has accepted, so
// tests can check that a sender kept its connection.
func (s *Server) Connections() int64 { return s.accepted.Load() }

// Serve accepts connections on l until Close; it returns nil after Close.
func (s *Server) Serve(l net.Listener) error {
	s.init()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = l.Close()
		return nil
	}
	s.listener = l
	s.mu.Unlock()
	for {
		c, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = c.Close()
			return nil
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		s.accepted.Add(1)
		go s.serveConn(c)
	}
}

func (s *Server) serveConn(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		_ = c.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	wt := s.WriteTimeout
	if wt <= 0 {
		wt = 10 * time.Second
	}
	r := NewReader(c, s.MaxFrameSize)
	for {
		if s.IdleTimeout > 0 {
			_ = c.SetReadDeadline(time.Now().Add(s.IdleTimeout))
		}
		msg, err := r.ReadFrame()
		if err != nil {
			if s.Logger != nil && !errors.Is(err, net.ErrClosed) {
				s.Logger.Debug("mllp: connection ended", slog.String("remote", c.RemoteAddr().String()), slog.String("error", err.Error()))
			}
			return
		}
		ack, err := s.Handler(ctx, msg)
		if err != nil {
			return
		}
		if ack == nil {
			continue
		}
		_ = c.SetWriteDeadline(time.Now().Add(wt))
		if err := WriteFrame(c, ack); err != nil {
			return
		}
	}
}

// Close stops accepting, closes every connection, cancels running
// handlers and waits for them to return.
func (s *Server) Close() error {
	s.init()
	s.mu.Lock()
	s.closed = true
	var err error
	if s.listener != nil {
		err = s.listener.Close()
	}
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return err
}

// AckHandler returns a Handler that parses each message and answers it
// with a v2 ACK from app: decide picks the code and optional error for the
// parsed message. A message that does not parse as HL7 closes the
// connection, since there is no MSH-10 to acknowledge.
func AckHandler(app v2.HD, decide func(m *v2.Message) (v2.AckCode, *v2.AckError)) Handler {
	var n atomic.Int64
	return func(ctx context.Context, msg []byte) ([]byte, error) {
		m, err := v2.Parse(msg)
		if err != nil {
			return nil, err
		}
		code, e := decide(m)
		h := v2.Header{SendingApplication: app, ControlID: "ACK" + strconv.FormatInt(n.Add(1), 10), Time: time.Now()}
		ack, err := v2.BuildAck(h, m, code, e)
		if err != nil {
			return nil, err
		}
		return ack.Encode()
	}
}
