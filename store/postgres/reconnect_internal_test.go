package postgres

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"perfusion/store"
)

// TestCommitOutcomeUnknownIsNotRetried: a connection error before COMMIT
// may be retried on a new connection; one after it was sent may not (the
// transaction may have committed), yet both are unavailability to the
// server.
func TestCommitOutcomeUnknownIsNotRetried(t *testing.T) {
	before := fmt.Errorf("postgres: insert entry: %w", io.ErrUnexpectedEOF)
	after := fmt.Errorf("postgres: commit: %w (%w)", errCommitUnknown, io.ErrUnexpectedEOF)
	if !reconnectable(before) {
		t.Error("a connection lost before COMMIT is not retried")
	}
	if reconnectable(after) {
		t.Error("a COMMIT whose answer was lost is retried")
	}
	if !store.IsUnavailable(after) {
		t.Error("a COMMIT whose answer was lost is not reported as unavailable")
	}
	if !store.IsUnavailable(unavailable(&pgconn.ConnectError{})) {
		t.Error("a failed connect is not marked unavailable")
	}
	if !store.IsUnavailable(safeErr(&pgconn.PgError{Code: "57P01", Severity: "FATAL"})) {
		t.Error("admin shutdown is not unavailable after safeErr")
	}
	if store.IsUnavailable(safeErr(&pgconn.PgError{Code: "22021"})) || reconnectable(errors.New("x")) {
		t.Error("a data error is taken for unavailability")
	}
}
