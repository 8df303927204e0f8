package postgres

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"perfusion/charting"
	"perfusion/store"
)

// SQLSTATE codes the backend reacts to.
const (
	codeUniqueViolation      = "23505"
	codeForeignKeyViolation  = "23503"
	codeSerializationFailure = "40001"
	codeDeadlockDetected     = "40P01"
)

// dbError is a database error stripped for display: its message names the
// operation, the SQLSTATE and the constraint, never the server's message,
// which can quote the offending values (for example "invalid input syntax
// for type uuid: \"…\"" or a row in DETAIL) and values here are patient
// data. The original *pgconn.PgError stays reachable through errors.As for
// code that needs the SQLSTATE (retries, tests, server-side diagnostics).
type dbError struct {
	pg *pgconn.PgError
}

func (e *dbError) Error() string {
	msg := "database error SQLSTATE " + e.pg.Code
	if e.pg.ConstraintName != "" {
		msg += " on constraint " + e.pg.ConstraintName
	}
	// Our own triggers' messages name only the operation and table.
	if e.pg.Code == "P0001" && IsAppendOnlyViolation(e.pg) {
		msg += ": " + e.pg.Message
	}
	return msg
}

func (e *dbError) Unwrap() error { return e.pg }

// safeErr replaces a server error with its display-safe form, a
// store.RefusedError when the server refused the data written (see
// refusal); other errors (network, context) carry no values and pass
// through, marked store.ErrUnavailable when they mean no writable database
// could be reached (see unavailable).
func safeErr(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		if reason, ok := refusal(pe); ok {
			return &store.RefusedError{Reason: reason, Err: &dbError{pg: pe}}
		}
		return &dbError{pg: pe} // its SQLSTATE tells store.IsUnavailable
	}
	return unavailable(err)
}

// unavailable marks err with store.ErrUnavailable when pgx says no
// writable server could be reached, in shapes store.IsUnavailable cannot
// recognise by itself: a failed connect (every host of a multi-host
// string down or read-only under target_session_attrs=read-write, which
// is what a failover looks like until a standby is promoted) and a
// connection already closed by an earlier fatal error.
func unavailable(err error) error {
	var ce *pgconn.ConnectError
	if err != nil && !errors.Is(err, store.ErrUnavailable) && (errors.As(err, &ce) || errors.Is(err, pgconn.ErrConnClosed)) {
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	return err
}

// refusal says whether the server refused a statement for the data it
// carried, and how, in words fit for a client. These are the errors that
// running the same data again would meet again: class 22 (data exception:
// an invalid byte sequence or NUL in text, a value out of range), class 23
// (integrity constraint violation: a CHECK or NOT NULL constraint) and an
// exception raised by a trigger or a rule's function (P0001
// raise_exception, P0004 assert_failure). Everything else — connection
// (08), resources (53), operator intervention and shutdown (57),
// serialization (40), system errors — is about the database, not the data.
// wrap gives unique (23505) and foreign-key (23503) violations their own
// meanings before it gets here.
func refusal(pe *pgconn.PgError) (string, bool) {
	var kind string
	switch {
	case len(pe.Code) != 5:
		return "", false
	case pe.Code[:2] == "22":
		kind = "data exception"
	case pe.Code[:2] == "23":
		kind = "integrity constraint violation"
	case pe.Code == "P0001" || pe.Code == "P0004":
		kind = "refused by a rule of the database"
	default:
		return "", false
	}
	reason := kind + " (SQLSTATE " + pe.Code
	if pe.ConstraintName != "" {
		reason += ", constraint " + pe.ConstraintName
	}
	return reason + ")", true
}

// wrap turns err from operation op into the store's vocabulary: no rows
// becomes charting.ErrNotFound, a unique violation store.ErrDuplicate, a
// missing referenced row (the case, or the entry a correction names)
// charting.ErrNotFound. Everything else is made display-safe.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("postgres: %s: %w", op, charting.ErrNotFound)
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case codeUniqueViolation:
			return fmt.Errorf("postgres: %s: %w (%w)", op, store.ErrDuplicate, &dbError{pg: pe})
		case codeForeignKeyViolation:
			return fmt.Errorf("postgres: %s: referenced row %w (%w)", op, charting.ErrNotFound, &dbError{pg: pe})
		}
	}
	return fmt.Errorf("postgres: %s: %w", op, safeErr(err))
}

// retryable reports whether a transaction that failed with err may simply
// be run again: the database rolled it back because of a concurrent one.
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == codeSerializationFailure || pe.Code == codeDeadlockDetected)
}

// errCommitUnknown marks a COMMIT whose answer never came: the connection
// broke (or the server shut down) after the COMMIT was sent, so the
// transaction may or may not have committed. It is never retried here —
// running it again could write twice what is not idempotent — and never
// reported as success: the caller fails the request with Unavailable and
// the client's resend, idempotent on its ids, settles it.
var errCommitUnknown = errors.New("the commit's outcome is unknown: the connection to the database broke before it answered")

// reconnectable reports whether a transaction that failed with err may be
// run again on a new connection: the database was unreachable or not
// writable (store.IsUnavailable) and the failure came before the COMMIT
// was sent, so nothing of it was committed — a connection the pool kept to
// a primary that has since died, or one cut by its shutdown.
func reconnectable(err error) bool {
	return store.IsUnavailable(err) && !errors.Is(err, errCommitUnknown)
}
