package store

import "errors"

// RefusedError is a write the database refused because of the data written,
// not because of the database itself: a PostgreSQL data exception (SQLSTATE
// class 22, e.g. 22021 for a NUL byte in text), an integrity constraint
// violation (class 23) or an exception raised by a trigger (P0001); SQLite's
// constraint failures (a CHECK, NOT NULL or a trigger's RAISE) and datatype
// or size refusals. Backends return it, wrapped, from Tx methods and from
// ReadWrite; unique violations the Store decides on itself stay
// ErrDuplicate, and a missing referenced row stays charting.ErrNotFound.
//
// The distinction matters to a transaction holding many clients' writes
// (AppendSampleBatches): running the same data again fails again, so the
// refused write must be found and failed alone, while an error about the
// database (connection lost, timeout, shutdown, serialization failures the
// backend already retried) says nothing about any one write and fails the
// transaction as a whole.
type RefusedError struct {
	// Reason names the kind of refusal and the database's code, e.g.
	// "data exception (SQLSTATE 22021)". It is a fixed text fit for a
	// client: never a value, SQL text or the database's message, which can
	// quote the offending (patient) data.
	Reason string
	// Err is the backend's error, display-safe, for errors.As and logs.
	Err error
}

func (e *RefusedError) Error() string { return "the database refused the data: " + e.Reason }

func (e *RefusedError) Unwrap() error { return e.Err }

// IsRefused reports whether err is, or wraps, a RefusedError.
func IsRefused(err error) bool {
	var re *RefusedError
	return errors.As(err, &re)
}
