package inbound

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"perfusion/charting"
	v2 "perfusion/hl7/v2"
	"perfusion/store"
)

// DefaultMaxMessageBytes bounds one inbound message. ADT and SIU messages
// are a few kilobytes; a megabyte leaves room for long OBX and NTE runs.
const DefaultMaxMessageBytes = 1 << 20

// Config is what the Handler needs. Store and Rooms are required.
type Config struct {
	// Store is the record the messages change and the journal they are
	// kept in.
	Store *store.Store
	// Rooms are the sites and rooms whose OR schedule this server keeps:
	// SIU messages for other rooms are acknowledged and ignored. ADT
	// messages change cases of these sites only.
	Rooms map[string][]string
	// Application and Facility are MSH-3 and MSH-4 of the ACKs.
	Application, Facility v2.HD
	// Location is the zone of HL7 times written without an offset; nil is
	// UTC.
	Location *time.Location
	// DefaultAuthority is the assigning authority of a patient identifier
	// that names none (PID-3.4 empty); "" refuses such identifiers.
	DefaultAuthority string
	// Authorities, when set, are the assigning authorities whose MRNs are
	// taken from PID-3, in order of preference.
	Authorities []string
	// MRNSystems maps assigning authorities to FHIR identifier systems
	// (perfusiond --fhir-mrn-systems): a FHIR Appointment names its
	// patient's MRN by system.
	MRNSystems map[string]string
	// ProcessingIDs are the MSH-11 values accepted; nil means {"P"}.
	ProcessingIDs []string
	// MaxMessageBytes bounds a message (DefaultMaxMessageBytes when 0).
	MaxMessageBytes int
	// Logger receives one line per message (sender, type, control id,
	// ACK code, what changed: never content); nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Handler turns inbound messages into changes of the record and ACKs.
// Messages are applied one at a time, across connections: the order they
// arrive in is the order they are applied in.
type Handler struct {
	cfg   Config
	ib    store.InboundBackend
	sites []string
	rooms map[[2]string]bool
	opts  extractOptions
	log   *slog.Logger
	now   func() time.Time

	mu sync.Mutex
}

// NewHandler checks cfg and returns a Handler.
func NewHandler(cfg Config) (*Handler, error) {
	if cfg.Store == nil {
		return nil, errors.New("inbound: a store is required")
	}
	ib, err := cfg.Store.Inbound()
	if err != nil {
		return nil, err
	}
	if len(cfg.Rooms) == 0 {
		return nil, errors.New("inbound: at least one site with its rooms is required")
	}
	if cfg.Application == (v2.HD{}) {
		cfg.Application = v2.HD{NamespaceID: "PERFUSION"}
	}
	if len(cfg.ProcessingIDs) == 0 {
		cfg.ProcessingIDs = []string{"P"}
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = DefaultMaxMessageBytes
	}
	h := &Handler{cfg: cfg, ib: ib, rooms: map[[2]string]bool{}, log: cfg.Logger, now: cfg.Now}
	if h.log == nil {
		h.log = slog.Default()
	}
	if h.now == nil {
		h.now = time.Now
	}
	for site, rooms := range cfg.Rooms {
		if site == "" {
			return nil, errors.New("inbound: a site code is empty")
		}
		h.sites = append(h.sites, site)
		for _, r := range rooms {
			h.rooms[[2]string{site, r}] = true
		}
	}
	slices.Sort(h.sites)
	h.opts = extractOptions{DefaultAuthority: cfg.DefaultAuthority, Authorities: cfg.Authorities, Location: cfg.Location}
	return h, nil
}

// result is what processing a message decided.
type result struct {
	code v2.AckCode
	// problem is the ERR of an AE or AR; for an AA, warn is an ERR of
	// severity W saying what was kept out.
	problem *Problem
	warn    string
	outcome store.InboundOutcome
	writes  store.InboundWrites
}

func accept() *result { return &result{code: v2.AA} }

func contentError(p *Problem) *result { return &result{code: v2.AE, problem: p} }

func notNow(where, format string, args ...any) *result {
	return &result{code: v2.AR, problem: problem(v2.ErrApplicationInternal, where, format, args...)}
}

func (r *result) note(format string, args ...any) {
	r.outcome.Notes = append(r.outcome.Notes, fmt.Sprintf(format, args...))
}

// Handle processes one message received from sender (the allowlist name
// of the connection) and returns the ACK to send, or nil when the
// connection must be closed instead: the input is not an HL7 message, or
// has no MSH-10 to acknowledge.
func (h *Handler) Handle(ctx context.Context, sender string, raw []byte) []byte {
	start := h.now()
	if len(raw) > h.cfg.MaxMessageBytes {
		h.log.Warn("inbound message refused: too large", "sender", sender, "bytes", len(raw))
		return nil
	}
	if len(raw) < 8 || !bytes.HasPrefix(raw, []byte("MSH")) {
		h.log.Warn("inbound input refused: not an HL7 message", "sender", sender, "bytes", len(raw))
		return nil
	}
	text, charsetProblem := decodeCharset(raw)
	lim := v2.DefaultLimits()
	lim.MaxBytes = h.cfg.MaxMessageBytes
	msg, err := v2.ParseLimits(text, lim)
	if err == nil && charsetProblem != nil {
		err = charsetProblem
	}
	if err != nil {
		hdr := headerOnly(raw)
		if hdr == nil || hdr.ControlID() == "" {
			h.log.Warn("inbound input refused: not a parsable HL7 message", "sender", sender, "error", err.Error())
			return nil
		}
		h.log.Warn("inbound message refused: it does not parse", "sender", sender, "control_id", hdr.ControlID(), "error", err.Error())
		var pe *v2.ParseError
		text := err.Error()
		if errors.As(err, &pe) {
			text = pe.Reason
			if pe.Segment > 0 {
				text = fmt.Sprintf("segment %d: %s", pe.Segment, pe.Reason)
			}
		}
		return h.ack(hdr, contentError(problem(v2.ErrDataType, "", "the message does not parse: %s", text)))
	}
	key := store.InboundKey{Sender: sender, SendingApplication: msg.Get("MSH-3"), SendingFacility: msg.Get("MSH-4"), ControlID: msg.ControlID()}
	if key.ControlID == "" {
		h.log.Warn("inbound message refused: no MSH-10", "sender", sender)
		return h.ack(msg, contentError(problem(v2.ErrRequiredFieldMissing, "MSH-10", "the message control id is required")))
	}
	typ := msg.Get("MSH-9") + "^" + msg.Get("MSH-9.2")
	sum := sha256.Sum256(raw)
	logAttrs := []any{"sender", sender, "type", typ, "control_id", key.ControlID}

	h.mu.Lock()
	defer h.mu.Unlock()
	row := &store.InboundMessage{InboundKey: key, MessageType: typ, ReceivedAt: charting.NormTime(start), Content: raw, ContentSHA256: sum, Attempts: 1}
	prev, err := h.ib.InboundMessageByKey(ctx, key)
	switch {
	case errors.Is(err, charting.ErrNotFound):
	case err != nil:
		h.log.Error("inbound journal unavailable", append(logAttrs, "error", err.Error())...)
		return h.ack(msg, notNow("", "the journal cannot be read now; resend later"))
	case prev.ContentSHA256 != sum:
		h.log.Warn("inbound message refused: control id reused for another message", logAttrs...)
		return h.ack(msg, contentError(problem(v2.ErrDuplicateKeyIdentifier, "MSH-10", "this control id was already used for a different message (journal entry %d)", prev.ID)))
	case prev.AckCode != string(v2.AR):
		h.log.Info("inbound message resent: answered from the journal", append(logAttrs, "message_id", prev.ID, "ack", prev.AckCode)...)
		return prev.Ack
	default:
		// Answered AR before (not processed then): process it now.
		row.ID, row.ReceivedAt, row.Attempts, row.Outcome.Replays = prev.ID, prev.ReceivedAt, prev.Attempts+1, prev.Outcome.Replays
	}
	res := h.process(ctx, sender, key, msg)
	ack, _ := h.finish(ctx, msg, row, res, logAttrs)
	return ack
}

// finish builds the ACK, stores the journal row with it and returns it;
// when the row cannot be stored, an AR and why.
func (h *Handler) finish(ctx context.Context, msg *v2.Message, row *store.InboundMessage, res *result, logAttrs []any) ([]byte, error) {
	ack := h.ack(msg, res)
	row.AckCode, row.Ack, row.Outcome.Changes, row.Outcome.Notes = string(res.code), ack, res.outcome.Changes, res.outcome.Notes
	row.Error = ""
	if res.problem != nil {
		row.Error = res.problem.Error()
	} else if res.warn != "" {
		row.Error = res.warn
	}
	row.ProcessedAt = charting.NormTime(h.now())
	if res.code != v2.AA {
		// A refused message leaves the patient index as it was. Bookings
		// stay: they map cases this message did plan before it failed.
		res.writes.Patients = nil
	}
	id, err := h.ib.RecordInbound(ctx, row, res.writes)
	if errors.Is(err, store.ErrDuplicate) {
		// Another server journaled the same message first.
		if prev, err := h.ib.InboundMessageByKey(ctx, row.InboundKey); err == nil && prev.AckCode != string(v2.AR) {
			return prev.Ack, nil
		}
	}
	if err != nil {
		h.log.Error("inbound journal not written: answered AR", append(logAttrs, "error", err.Error())...)
		return h.ack(msg, notNow("", "the journal cannot be written now; resend later")), err
	}
	attrs := append(logAttrs, "message_id", id, "ack", string(res.code), "cases", len(res.outcome.CaseIDs()), "ms", h.now().Sub(row.ReceivedAt).Milliseconds())
	if res.problem != nil {
		attrs = append(attrs, "error", res.problem.Error())
	}
	h.log.Info("inbound message", attrs...)
	return ack, nil
}

// ack encodes the ACK of msg with res's code and ERR; its control id is
// derived from the message's, so a resend would get the same one.
func (h *Handler) ack(msg *v2.Message, res *result) []byte {
	hdr := v2.Header{SendingApplication: h.cfg.Application, SendingFacility: h.cfg.Facility, ControlID: ackControlID(msg), Time: h.now(), Location: h.cfg.Location}
	var e *v2.AckError
	switch {
	case res.problem != nil:
		text := res.problem.Error()
		e = &v2.AckError{Code: res.problem.Code, Text: text}
	case res.warn != "":
		e = &v2.AckError{Code: v2.ErrMessageAccepted, Severity: v2.SeverityWarning, Text: res.warn}
	}
	a, err := v2.BuildAck(hdr, msg, res.code, e)
	if err == nil {
		var out []byte
		if out, err = a.Encode(); err == nil {
			return out
		}
	}
	// Only a header the ACK cannot echo gets here (BuildAck checked ours).
	h.log.Error("inbound: the ACK could not be built", "error", err.Error())
	return nil
}

// ackControlID is the ACK's MSH-10: 20 base32 characters of a hash of the
// acknowledged message's sender, control id and processing.
func ackControlID(msg *v2.Message) string {
	s := sha256.Sum256([]byte("perfusion.hl7.inbound-ack.v1\x00" + msg.Get("MSH-3") + "\x00" + msg.Get("MSH-4") + "\x00" + msg.ControlID()))
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(s[:12])
}

// decodeCharset returns the message as UTF-8. MSH-18 "8859/1" (Latin-1) is
// converted; otherwise the message must already be UTF-8 (ASCII
// included), and a problem says why it is not.
func decodeCharset(raw []byte) ([]byte, error) {
	if utf8.Valid(raw) {
		return raw, nil
	}
	if f := rawMSHField(raw, 18); f == "8859/1" || strings.EqualFold(f, "ISO-8859-1") || f == "ISO IR100" {
		out := make([]byte, 0, len(raw)+len(raw)/8)
		for _, b := range raw {
			out = utf8.AppendRune(out, rune(b))
		}
		return out, nil
	}
	return raw, &Problem{Code: v2.ErrDataType, Where: "MSH-18", Text: "the text is not UTF-8 and MSH-18 names no character set this receiver converts (8859/1)"}
}

// rawMSHField reads field n of the first segment by splitting on MSH-1,
// without parsing: for what must be known before the message parses.
func rawMSHField(raw []byte, n int) string {
	if len(raw) < 4 {
		return ""
	}
	seg := raw
	if i := bytes.IndexAny(seg, "\r\n"); i >= 0 {
		seg = seg[:i]
	}
	parts := bytes.Split(seg, raw[3:4])
	// parts[0] is "MSH", parts[1] MSH-2: field n is parts[n-1].
	if n < 2 || n-1 >= len(parts) {
		return ""
	}
	return string(parts[n-1])
}

// headerOnly builds a message holding only the MSH fields an ACK echoes,
// read from a message that does not parse, so its sender still gets an
// answer naming its control id. Nil when even that cannot be read.
func headerOnly(raw []byte) *v2.Message {
	if len(raw) < 8 || !bytes.HasPrefix(raw, []byte("MSH")) {
		return nil
	}
	sep := raw[3]
	if sep <= ' ' || sep >= 0x7f || sep >= '0' && sep <= '9' || sep >= 'A' && sep <= 'Z' || sep >= 'a' && sep <= 'z' {
		return nil
	}
	// The values are read with the sender's field separator and kept in
	// a header of the standard delimiters, which is what the ACK is
	// built from.
	msh := v2.Segment{ID: "MSH"}
	msh.SetField(1, v2.Text("|"))
	msh.SetField(2, v2.Text("^~\\&"))
	for _, n := range []int{3, 4, 9, 10, 11, 12} {
		v := rawMSHField(raw, n)
		if len(v) > 199 || !utf8.ValidString(v) || strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return nil
		}
		if n == 9 {
			msh.SetField(n, v2.Comps(strings.Split(v, "^")...))
			continue
		}
		if n == 10 && strings.ContainsAny(v, "^~\\&") {
			return nil
		}
		msh.SetField(n, v2.Text(v))
	}
	return &v2.Message{Segments: []v2.Segment{msh}}
}

// Replay processes a journaled message again, as if its sender had sent it
// now, and stores the new result in its journal row (the earlier one goes
// to the row's replays, with by). The record's writes are idempotent and
// the ids of the cases a message plans derive from the message, so a
// message already applied changes nothing more; one refused before (a room
// not configured then, a record locked then, an AR) is applied now.
// charting.ErrNotFound for an unknown id.
func (h *Handler) Replay(ctx context.Context, id int64, by string) (*store.InboundMessage, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	row, err := h.ib.InboundMessage(ctx, id)
	if err != nil {
		return nil, err
	}
	if row.MessageType == AppointmentMessageType {
		row.Outcome.Replays = append(row.Outcome.Replays, store.InboundReplay{AckCode: row.AckCode, Error: row.Error, ProcessedAt: row.ProcessedAt, By: by})
		row.Attempts++
		if err := h.finishAppointment(ctx, row, h.processAppointment(ctx, row.InboundKey, row.Content)); err != nil {
			return nil, err
		}
		return h.ib.InboundMessage(ctx, id)
	}
	text, cerr := decodeCharset(row.Content)
	lim := v2.DefaultLimits()
	lim.MaxBytes = max(h.cfg.MaxMessageBytes, len(text))
	msg, err := v2.ParseLimits(text, lim)
	if err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		// Only messages that parsed are journaled: this one was stored
		// under other settings (a character set no longer converted).
		return nil, fmt.Errorf("inbound: replay of message %d: it no longer parses: %w", id, err)
	}
	row.Outcome.Replays = append(row.Outcome.Replays, store.InboundReplay{AckCode: row.AckCode, Error: row.Error, ProcessedAt: row.ProcessedAt, By: by})
	row.Attempts++
	res := h.process(ctx, row.Sender, row.InboundKey, msg)
	logAttrs := []any{"sender", row.Sender, "type", row.MessageType, "control_id", row.ControlID, "replayed_by", by}
	if _, err := h.finish(ctx, msg, row, res, logAttrs); err != nil {
		return nil, err
	}
	return h.ib.InboundMessage(ctx, id)
}
