package server

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "perfusion/api/perfusion/v1"
	"perfusion/charting"
	"perfusion/hl7/inbound"
	"perfusion/store"
)

// InboundHandler is the inbound listener's handler (hl7/inbound.Handler):
// it processes a journaled message again, and takes FHIR Appointments. A
// server without the inbound listener has none.
type InboundHandler interface {
	Replay(ctx context.Context, id int64, by string) (*store.InboundMessage, error)
	SubmitAppointment(ctx context.Context, sender, site string, raw []byte) (*store.InboundMessage, error)
}

// inboundService implements perfusionv1.InboundService over the inbound
// journal (store/inbound.go) and, for replays, the listener's handler.
type inboundService struct {
	pb.UnimplementedInboundServiceServer
	h        *handlers
	replayer InboundHandler
}

func (s *inboundService) journal() (store.InboundBackend, error) {
	ib, err := s.h.store.Inbound()
	if err != nil {
		return nil, preconditionStatus("this server's store keeps no inbound journal")
	}
	return ib, nil
}

// ListInboundMessages lists the journal, newest first.
func (s *inboundService) ListInboundMessages(ctx context.Context, req *pb.ListInboundMessagesRequest) (*pb.ListInboundMessagesResponse, error) {
	var p parser
	f := store.InboundFilter{Sender: req.GetSender(), MessageType: req.GetMessageType(), CaseID: p.id("case_id", req.GetCaseId(), false)}
	switch req.GetAckCode() {
	case "", "AA", "AE", "AR":
		f.AckCode = req.GetAckCode()
	default:
		p.v.Add("ack_code", "must be AA, AE or AR")
	}
	if req.GetReceivedFrom() != nil {
		f.From = p.time("received_from", req.GetReceivedFrom())
	}
	if req.GetReceivedTo() != nil {
		f.To = p.time("received_to", req.GetReceivedTo())
	}
	want := p.pageSize("page_size", req.GetPageSize(), 50, 500)
	f.BeforeID = p.inboundToken("page_token", req.GetPageToken())
	if err := p.err(); err != nil {
		return nil, s.h.fail(err)
	}
	ib, err := s.journal()
	if err != nil {
		return nil, err
	}
	f.Limit = want + 1
	rows, err := ib.ListInboundMessages(ctx, f)
	if err != nil {
		return nil, s.h.fail(err)
	}
	out := &pb.ListInboundMessagesResponse{}
	if len(rows) > want {
		rows = rows[:want]
		out.NextPageToken = encodeInboundToken(rows[want-1].ID)
	}
	for i := range rows {
		out.Messages = append(out.Messages, inboundOut(&rows[i]))
		noteCases(ctx, rows[i].Outcome.CaseIDs()...)
	}
	return out, nil
}

// GetInboundMessage returns one journal row.
func (s *inboundService) GetInboundMessage(ctx context.Context, req *pb.GetInboundMessageRequest) (*pb.GetInboundMessageResponse, error) {
	if req.GetMessageId() <= 0 {
		return nil, s.h.fail(&charting.InvalidError{Violations: []charting.FieldViolation{{Field: "message_id", Description: "required: a journal id"}}})
	}
	ib, err := s.journal()
	if err != nil {
		return nil, err
	}
	m, err := ib.InboundMessage(ctx, req.GetMessageId())
	if errors.Is(err, charting.ErrNotFound) {
		return nil, notFoundStatus("no such inbound message")
	}
	if err != nil {
		return nil, s.h.fail(err)
	}
	noteCases(ctx, m.Outcome.CaseIDs()...)
	out := &pb.GetInboundMessageResponse{Message: inboundOut(m)}
	if req.GetIncludeContent() {
		out.Content, out.Ack = string(m.Content), string(m.Ack)
	}
	return out, nil
}

// ReplayInboundMessage processes a journaled message again.
func (s *inboundService) ReplayInboundMessage(ctx context.Context, req *pb.ReplayInboundMessageRequest) (*pb.ReplayInboundMessageResponse, error) {
	who, err := actor(ctx)
	if err != nil {
		return nil, err
	}
	if req.GetMessageId() <= 0 {
		return nil, s.h.fail(&charting.InvalidError{Violations: []charting.FieldViolation{{Field: "message_id", Description: "required: a journal id"}}})
	}
	if s.replayer == nil {
		return nil, preconditionStatus("this server runs no inbound HL7 listener (perfusiond --hl7-inbound-listen): replay on a server that does")
	}
	m, err := s.replayer.Replay(ctx, req.GetMessageId(), who)
	if errors.Is(err, charting.ErrNotFound) {
		return nil, notFoundStatus("no such inbound message")
	}
	if err != nil {
		return nil, s.h.fail(err)
	}
	noteCases(ctx, m.Outcome.CaseIDs()...)
	return &pb.ReplayInboundMessageResponse{Message: inboundOut(m)}, nil
}

// SubmitAppointment applies a FHIR Appointment, the twin of SIU.
func (s *inboundService) SubmitAppointment(ctx context.Context, req *pb.SubmitAppointmentRequest) (*pb.SubmitAppointmentResponse, error) {
	who, err := actor(ctx)
	if err != nil {
		return nil, err
	}
	var p parser
	p.require("site", req.GetSite() != "")
	p.require("appointment_json", len(req.GetAppointmentJson()) > 0)
	if err := p.err(); err != nil {
		return nil, s.h.fail(err)
	}
	if s.replayer == nil {
		return nil, preconditionStatus("this server runs no inbound listener (perfusiond --hl7-inbound-listen): submit appointments to a server that does")
	}
	m, err := s.replayer.SubmitAppointment(ctx, strings.TrimPrefix(who, "interface:"), req.GetSite(), req.GetAppointmentJson())
	var prob *inbound.Problem
	switch {
	case errors.As(err, &prob):
		return nil, s.h.fail(&charting.InvalidError{Violations: []charting.FieldViolation{{Field: "appointment_json", Description: prob.Error()}}})
	case errors.Is(err, inbound.ErrAppointmentReused):
		return nil, status.Error(codes.AlreadyExists, "this Appointment version was submitted before with different content: give it a new meta.versionId")
	case err != nil:
		return nil, s.h.fail(err)
	}
	noteCases(ctx, m.Outcome.CaseIDs()...)
	code, errCode, text := inbound.AppointmentAck(m)
	switch {
	case code == "AR":
		return nil, status.Error(codes.Unavailable, "the appointment could not be processed now; submit it again later")
	case code == "AE" && errCode == "206":
		return nil, preconditionStatus(text)
	case code == "AE":
		return nil, s.h.fail(&charting.InvalidError{Violations: []charting.FieldViolation{{Field: "appointment_json", Description: text}}})
	}
	return &pb.SubmitAppointmentResponse{Message: inboundOut(m)}, nil
}

func inboundOut(m *store.InboundMessage) *pb.InboundMessage {
	out := &pb.InboundMessage{MessageId: m.ID, Sender: m.Sender, SendingApplication: m.SendingApplication, SendingFacility: m.SendingFacility,
		ControlId: m.ControlID, MessageType: m.MessageType, ReceivedAt: timestamppb.New(m.ReceivedAt), ProcessedAt: timestamppb.New(m.ProcessedAt),
		AckCode: m.AckCode, Error: m.Error, Attempts: int32(m.Attempts), Notes: m.Outcome.Notes, ContentSha256: hex.EncodeToString(m.ContentSHA256[:])}
	for _, c := range m.Outcome.Changes {
		out.Changes = append(out.Changes, &pb.InboundChange{CaseId: c.CaseID.String(), Action: c.Action, LedgerSequence: c.LedgerSeq, Fields: c.Fields, Detail: c.Detail})
	}
	for _, r := range m.Outcome.Replays {
		out.Replays = append(out.Replays, &pb.InboundReplay{AckCode: r.AckCode, Error: r.Error, ProcessedAt: timestamppb.New(r.ProcessedAt), By: r.By})
	}
	return out
}

// Inbound page tokens: base64url of a version byte and the last row's id.
const inboundTokenV1 = 1

func encodeInboundToken(id int64) string {
	b := binary.BigEndian.AppendUint64([]byte{inboundTokenV1}, uint64(id))
	return base64.RawURLEncoding.EncodeToString(b)
}

func (p *parser) inboundToken(field, tok string) int64 {
	if tok == "" {
		return 0
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) != 9 || b[0] != inboundTokenV1 || int64(binary.BigEndian.Uint64(b[1:])) <= 0 {
		p.v.Add(field, "is not a token from a previous response")
		return 0
	}
	return int64(binary.BigEndian.Uint64(b[1:]))
}

func notFoundStatus(msg string) error { return status.Error(codes.NotFound, msg) }
