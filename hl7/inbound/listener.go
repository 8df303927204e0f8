package inbound

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"perfusion/hl7/mllp"
)

// Allowlist says who may send: source addresses and networks, and client
// certificate names. Each entry names the sender as the journal and the
// ledger know it ("interface:<name>").
type Allowlist struct {
	entries []allowEntry
}

type allowEntry struct {
	name   string
	prefix netip.Prefix // valid for an address entry
	cn     string       // a certificate entry
}

// ParseAllowlist reads a comma-separated list of entries:
//
//	NAME=10.1.2.0/24   the network, named NAME
//	NAME=10.1.2.7      one address
//	10.1.2.7           one address, named by itself
//	cn:ENGINE          a client certificate whose common name is ENGINE
//	                   (verified against the listener's client CA), named
//	                   ENGINE
//
// A connection is allowed when it matches an entry. An empty list allows
// no one.
func ParseAllowlist(s string) (*Allowlist, error) {
	a := &Allowlist{}
	for raw := range strings.SplitSeq(s, ",") {
		e := strings.TrimSpace(raw)
		if e == "" {
			continue
		}
		if cn, ok := strings.CutPrefix(e, "cn:"); ok {
			if !validName(cn) {
				return nil, fmt.Errorf("inbound allowlist: %q: a certificate name of letters, digits, '.', '-' and '_'", e)
			}
			a.entries = append(a.entries, allowEntry{name: cn, cn: cn})
			continue
		}
		name, addr, named := strings.Cut(e, "=")
		if !named {
			addr = name
		}
		if !validName(name) && named {
			return nil, fmt.Errorf("inbound allowlist: %q: a sender name of letters, digits, '.', '-' and '_'", e)
		}
		var p netip.Prefix
		if strings.Contains(addr, "/") {
			var err error
			if p, err = netip.ParsePrefix(addr); err != nil {
				return nil, fmt.Errorf("inbound allowlist: %q: not an address or network", e)
			}
			p = p.Masked()
		} else {
			ip, err := netip.ParseAddr(addr)
			if err != nil {
				return nil, fmt.Errorf("inbound allowlist: %q: not an address or network", e)
			}
			p = netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen())
		}
		if p.Bits() == 0 {
			return nil, fmt.Errorf("inbound allowlist: %q: a network of every address is not an allowlist", e)
		}
		a.entries = append(a.entries, allowEntry{name: name, prefix: p})
	}
	if len(a.entries) == 0 {
		return nil, errors.New("inbound allowlist: no sender is allowed: give addresses, networks or cn:NAME")
	}
	return a, nil
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_' || c == ':' || c == '/') {
			return false
		}
	}
	return true
}

// NeedsCertificates reports whether some entry names a client certificate.
func (a *Allowlist) NeedsCertificates() bool {
	for _, e := range a.entries {
		if e.cn != "" {
			return true
		}
	}
	return false
}

// Sender returns the name of the first entry the connection matches:
// its source address, or the common name of its verified client
// certificate ("" when it has none).
func (a *Allowlist) Sender(remote netip.Addr, certCN string) (string, bool) {
	remote = remote.Unmap()
	for _, e := range a.entries {
		switch {
		case e.cn != "":
			if certCN != "" && certCN == e.cn {
				return e.name, true
			}
		case remote.IsValid() && e.prefix.Contains(remote):
			return e.name, true
		}
	}
	return "", false
}

// ListenerConfig configures a Listener.
type ListenerConfig struct {
	// Addr is the address to listen on, e.g. ":2575".
	Addr string
	// TLS, when set, serves MLLP inside TLS; with ClientCAs set every
	// connection must present a certificate they verify.
	TLS *tls.Config
	// Allow says who may send; required.
	Allow *Allowlist
	// MaxMessageBytes bounds a frame; a larger one closes the connection
	// (DefaultMaxMessageBytes when 0).
	MaxMessageBytes int
	// IdleTimeout closes a connection that sends nothing for this long
	// (0: never; TCP keepalive still notices a vanished peer).
	IdleTimeout time.Duration
	// HandshakeTimeout bounds the TLS handshake (default 10 s).
	HandshakeTimeout time.Duration
	// WriteTimeout bounds writing an ACK (default 30 s).
	WriteTimeout time.Duration
	// MaxConnections bounds connections served at once; more are closed
	// at once (default 64).
	MaxConnections int
	// Logger receives connection events (never content); nil means
	// slog.Default().
	Logger *slog.Logger
}

// Listener accepts MLLP connections and hands their messages to a
// Handler, one at a time per connection: the next frame is read only
// after the previous message's ACK was written.
type Listener struct {
	cfg ListenerConfig
	h   *Handler
	l   net.Listener
	log *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	// hctx is the messages' context: it outlives the start of a shutdown,
	// so a message being handled finishes, and ends with its deadline.
	hctx    context.Context
	hcancel context.CancelFunc
	mu      sync.Mutex
	conns   map[net.Conn]bool // true while a message is being handled
	wg      sync.WaitGroup
	slots   chan struct{}
}

// Listen starts listening; Serve accepts.
func Listen(cfg ListenerConfig, h *Handler) (*Listener, error) {
	if cfg.Allow == nil {
		return nil, errors.New("inbound: an allowlist is required")
	}
	if cfg.Allow.NeedsCertificates() && (cfg.TLS == nil || cfg.TLS.ClientCAs == nil) {
		return nil, errors.New("inbound: a cn: allowlist entry needs TLS with a client CA")
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 10 * time.Second
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 30 * time.Second
	}
	if cfg.MaxConnections <= 0 {
		cfg.MaxConnections = 64
	}
	if cfg.TLS != nil {
		cfg.TLS = cfg.TLS.Clone()
		if cfg.TLS.ClientCAs != nil {
			cfg.TLS.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	l, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("inbound: listen on %s: %w", cfg.Addr, err)
	}
	s := &Listener{cfg: cfg, h: h, l: l, log: cfg.Logger, conns: map[net.Conn]bool{}, slots: make(chan struct{}, cfg.MaxConnections)}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.hctx, s.hcancel = context.WithCancel(context.Background())
	return s, nil
}

// Addr is the address listened on.
func (s *Listener) Addr() net.Addr { return s.l.Addr() }

// Serve accepts connections until Shutdown; it returns nil then.
func (s *Listener) Serve() error {
	for {
		c, err := s.l.Accept()
		if err != nil {
			if s.ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("inbound: accept: %w", err)
		}
		select {
		case s.slots <- struct{}{}:
		default:
			s.log.Warn("inbound connection refused: too many connections", "remote", c.RemoteAddr().String())
			_ = c.Close()
			continue
		}
		s.mu.Lock()
		if s.ctx.Err() != nil {
			s.mu.Unlock()
			_ = c.Close()
			<-s.slots
			return nil
		}
		s.conns[c] = false
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(c)
	}
}

// Shutdown stops accepting, closes idle connections at once, lets a
// message being handled finish and its ACK go out until ctx ends, then
// closes everything.
func (s *Listener) Shutdown(ctx context.Context) {
	s.mu.Lock()
	s.cancel()
	_ = s.l.Close()
	for c, busy := range s.conns {
		if !busy {
			_ = c.Close()
		}
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.hcancel()
		s.mu.Lock()
		for c := range s.conns {
			_ = c.Close()
		}
		s.mu.Unlock()
		<-done
	}
	s.hcancel()
}

func (s *Listener) setBusy(c net.Conn, busy bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil && !busy {
		return false
	}
	s.conns[c] = busy
	return true
}

func (s *Listener) serveConn(raw net.Conn) {
	defer s.wg.Done()
	defer func() { <-s.slots }()
	c := raw
	defer func() {
		_ = c.Close()
		s.mu.Lock()
		delete(s.conns, raw)
		s.mu.Unlock()
	}()
	remote := raw.RemoteAddr().String()
	var ip netip.Addr
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		ip = ap.Addr()
	}
	cn := ""
	if s.cfg.TLS != nil {
		tc := tls.Server(raw, s.cfg.TLS)
		_ = tc.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
		if err := tc.HandshakeContext(s.ctx); err != nil {
			s.log.Warn("inbound connection refused: TLS handshake failed", "remote", remote, "error", err.Error())
			return
		}
		_ = tc.SetDeadline(time.Time{})
		if st := tc.ConnectionState(); len(st.VerifiedChains) > 0 && len(st.VerifiedChains[0]) > 0 {
			cn = st.VerifiedChains[0][0].Subject.CommonName
		}
		c = tc
	}
	sender, ok := s.cfg.Allow.Sender(ip, cn)
	if !ok {
		s.log.Warn("inbound connection refused: sender not allowed", "remote", remote, "certificate", cn)
		return
	}
	s.log.Info("inbound connection", "sender", sender, "remote", remote)
	r := mllp.NewReader(c, s.cfg.MaxMessageBytes)
	for {
		if s.cfg.IdleTimeout > 0 {
			_ = c.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
		}
		msg, err := r.ReadFrame()
		if err != nil {
			switch {
			case errors.Is(err, io.EOF):
				s.log.Info("inbound connection closed by the sender", "sender", sender)
			case errors.Is(err, mllp.ErrFrameTooLarge), errors.Is(err, mllp.ErrMalformed), errors.Is(err, io.ErrUnexpectedEOF):
				s.log.Warn("inbound connection closed: bad framing", "sender", sender, "error", err.Error())
			case s.ctx.Err() == nil:
				s.log.Info("inbound connection ended", "sender", sender, "error", err.Error())
			}
			return
		}
		if !s.setBusy(raw, true) {
			return
		}
		ack := s.h.Handle(s.hctx, sender, msg)
		if ack == nil {
			s.log.Warn("inbound connection closed: input refused", "sender", sender)
			return
		}
		_ = c.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
		if err := mllp.WriteFrame(c, ack); err != nil {
			s.log.Warn("inbound ACK not sent", "sender", sender, "error", err.Error())
			return
		}
		if !s.setBusy(raw, false) {
			return
		}
	}
}
