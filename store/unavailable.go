package store

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"
)

// ErrUnavailable marks an error about reaching a writable database, not
// about the request: the database is down, restarting, shutting down,
// read-only (a standby, or a primary being demoted during a failover), or
// the connection to it broke. Nothing in the request was refused, and the
// same request may succeed once a writable database is reachable again; the
// server answers Unavailable, and clients retry (writes are idempotent).
//
// Backends wrap what they recognise with it (errors.Is). IsUnavailable also
// recognises the common shapes without that help.
var ErrUnavailable = errors.New("store: no writable database is reachable")

// IsUnavailable reports whether err means that no writable database could
// be reached: ErrUnavailable, a network error (refused, reset, timed out,
// unreachable), a connection that ended (EOF), or a database error whose
// SQLSTATE says so — class 08 (connection exception), 25006 (read-only
// transaction: a standby), 57P01/57P02/57P03 (admin or crash shutdown,
// cannot connect now), class 53 (insufficient resources, e.g. too many
// connections) — recognised by the SQLState method that pgx's errors have,
// so this package needs no driver.
//
// A deadline or a cancellation is not unavailability: the caller's
// context decides those, and they keep their own status.
func IsUnavailable(err error) bool {
	if errors.Is(err, ErrUnavailable) {
		return true
	}
	if err == nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return false
	}
	var coded interface{ SQLState() string }
	if errors.As(err, &coded) {
		return unavailableSQLState(coded.SQLState())
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// unavailableSQLState reports whether a SQLSTATE means the database, not
// the statement, is the problem, and that it may pass.
func unavailableSQLState(code string) bool {
	if len(code) != 5 {
		return false
	}
	switch {
	case code[:2] == "08", code[:2] == "53":
		return true
	}
	switch code {
	case "25006", "57P01", "57P02", "57P03":
		return true
	}
	return false
}
