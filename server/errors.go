package server

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"

	"perfusion/charting"
	"perfusion/store"
)

// msgDatabaseUnavailable is the message of an Unavailable status caused by
// the database rather than the network to this server.
const msgDatabaseUnavailable = "the database is unavailable (restarting or failing over); retry: a write that was stored after all is recognised by its id"

// toStatus is the one place where errors become gRPC statuses. Messages
// sent to clients are fixed texts or domain texts written for clients
// (field violations, lifecycle reasons); the text of any other error,
// which may hold SQL or driver detail, is logged and replaced by a generic
// message. Nothing here logs request content or patient data.
func toStatus(log *slog.Logger, err error) error {
	if err == nil {
		return nil
	}
	var (
		inv *charting.InvalidError
		pre *charting.PreconditionError
		ref *store.RefusedError
		gs  interface{ GRPCStatus() *status.Status }
	)
	switch {
	case errors.As(err, &inv):
		return invalidStatus(inv.Violations)
	case errors.As(err, &pre):
		return preconditionStatus(pre.Reason)
	case errors.As(err, &ref):
		// The database refused what was written (a value it cannot store,
		// a constraint, a trigger): sending the same again would be refused
		// again, so it is the request's data, not the server, that must
		// change. Only the fixed reason reaches the client; the error
		// (display-safe, no values) is logged for the operators, who may
		// have a rule or a store defect to look at.
		log.Warn("the database refused a write", "err", err.Error())
		return status.Error(codes.InvalidArgument, "the database refused this data and stored none of it: "+ref.Reason)
	case errors.Is(err, charting.ErrNotFound):
		return status.Error(codes.NotFound, "no such case or entry")
	case errors.Is(err, charting.ErrConflict):
		return status.Error(codes.AlreadyExists, "the id was already used for different content")
	case errors.Is(err, charting.ErrStale):
		return status.Error(codes.Aborted, "the record has changed since it was read; reload and retry")
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "the call was cancelled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "the call's deadline passed")
	case store.IsUnavailable(err):
		// No writable database is reachable (down, restarting, failing
		// over, or the connection broke): nothing about the request is
		// wrong, and the same request may succeed in a moment — a client
		// retries Unavailable; writes are idempotent, so a retry after a
		// commit whose answer was lost stores nothing twice.
		log.Warn("database unavailable", "err", err.Error())
		return status.Error(codes.Unavailable, msgDatabaseUnavailable)
	case errors.As(err, &gs):
		return gs.GRPCStatus().Err() // already a status, made by this package
	}
	log.Error("internal error", "err", err.Error())
	return status.Error(codes.Internal, "internal error")
}

// invalidStatus builds InvalidArgument with a google.rpc.BadRequest naming
// every offending field, so a client can point at the field it got wrong.
func invalidStatus(vs []charting.FieldViolation) error {
	br := &errdetails.BadRequest{}
	for _, v := range vs {
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: v.Field, Description: v.Description})
	}
	msg := "invalid request"
	if len(vs) > 0 {
		msg += ": " + vs[0].Field + ": " + vs[0].Description
		if len(vs) > 1 {
			msg += " (and more; see field violations)"
		}
	}
	return withDetails(status.New(codes.InvalidArgument, msg), br)
}

// preconditionStatus builds FailedPrecondition for lifecycle misuse. The
// reason is a domain text without patient data, e.g. "case is signed:
// details can no longer change; add an addendum".
func preconditionStatus(reason string) error {
	pf := &errdetails.PreconditionFailure{Violations: []*errdetails.PreconditionFailure_Violation{{
		Type: "CASE_LIFECYCLE", Subject: "case", Description: reason,
	}}}
	return withDetails(status.New(codes.FailedPrecondition, reason), pf)
}

// withDetails attaches a detail message; should that ever fail, the status
// without it still carries the code and message.
func withDetails(st *status.Status, detail protoadapt.MessageV1) error {
	if ds, err := st.WithDetails(detail); err == nil {
		st = ds
	}
	return st.Err()
}

// renameFields rewrites the field names of an *charting.InvalidError with
// rename, for requests whose fields are laid out differently from the
// domain's entry (AddAddendum, CorrectEntry): a field violation must name
// the field of the request the client actually sent. Other errors pass
// unchanged.
func renameFields(err error, rename func(string) string) error {
	var inv *charting.InvalidError
	if !errors.As(err, &inv) {
		return err
	}
	out := &charting.InvalidError{Violations: make([]charting.FieldViolation, len(inv.Violations))}
	for i, v := range inv.Violations {
		out.Violations[i] = charting.FieldViolation{Field: rename(v.Field), Description: v.Description}
	}
	return out
}
