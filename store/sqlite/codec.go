package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"perfusion/charting"
	"perfusion/store"
)

// Column encodings. Every value is converted here, explicitly, rather than
// left to the driver's defaults (which would store a time.Time as text in
// the connection's time zone), so the stored form is the documented one:
// uuids as canonical lowercase text, times as UTC microseconds, hashes as
// 32-byte blobs, and "not set" as NULL.

// micros encodes a time as Unix microseconds, or NULL for the zero time.
func micros(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return charting.NormTime(t).UnixMicro()
}

// fromMicros decodes a nullable microsecond column; NULL is the zero time.
func fromMicros(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMicro(v.Int64).UTC()
}

// nullUUID encodes uuid.Nil as NULL.
func nullUUID(id uuid.UUID) any {
	if id == uuid.Nil {
		return nil
	}
	return id.String()
}

// nullText encodes "" as NULL.
func nullText(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// parseUUID decodes a stored uuid; what names the column for the error,
// which never carries the stored value.
func parseUUID(s sql.NullString, what string) (uuid.UUID, error) {
	if !s.Valid {
		return uuid.Nil, nil
	}
	id, err := uuid.Parse(s.String)
	if err != nil {
		return uuid.Nil, fmt.Errorf("sqlite: stored %s is not a uuid", what)
	}
	return id, nil
}

// toHash decodes a stored hash.
func toHash(b []byte, what string) (charting.Hash, error) {
	var h charting.Hash
	if len(b) != len(h) {
		return h, fmt.Errorf("sqlite: stored %s is %d bytes, not %d", what, len(b), len(h))
	}
	copy(h[:], b)
	return h, nil
}

// errDecode says stored JSON does not decode. The decoder's own message is
// not passed on: it can quote a stored value, and stored values are patient
// data.
var errDecode = errors.New("stored JSON does not decode into the current types")

func decodeErr(what string, err error) error {
	return fmt.Errorf("sqlite: %s: %w (%T)", what, errDecode, err)
}

// dupKeyMessage is raised by the BEFORE INSERT triggers of the append-only
// tables (migrations/sqlite/001_initial.up.sql) when a key already exists.
const dupKeyMessage = "perfusion record is append-only: duplicate key"

// isDuplicate reports a primary-key or unique violation, whether SQLite
// found it or the append-only trigger that runs before the insert did.
func isDuplicate(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code() {
	case sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_UNIQUE:
		return true
	case sqlite3.SQLITE_CONSTRAINT_TRIGGER:
		return strings.Contains(se.Error(), dupKeyMessage)
	}
	return false
}

// isBusy reports that a lock could not be taken within the busy timeout.
func isBusy(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
		return true
	}
	return false
}

// refusal says whether SQLite refused a statement for the data it carried,
// and how, in words fit for a client: a constraint failed (CHECK, NOT NULL,
// a foreign key, a trigger's RAISE(ABORT|FAIL|ROLLBACK, …)), a value did
// not fit its column's type, or a string or blob was too big. Running the
// same data again meets the same refusal. Busy, I/O, full-disk and other
// errors are about the database, not the data. Key violations are checked
// first by wrap (store.ErrDuplicate).
func refusal(err error) (string, bool) {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return "", false
	}
	code := se.Code()
	var kind string
	switch code & 0xff {
	case sqlite3.SQLITE_CONSTRAINT:
		switch code {
		case sqlite3.SQLITE_CONSTRAINT_TRIGGER:
			kind = "refused by a rule of the database"
		default:
			kind = "integrity constraint violation"
		}
	case sqlite3.SQLITE_MISMATCH:
		kind = "datatype mismatch"
	case sqlite3.SQLITE_TOOBIG:
		kind = "value too big"
	default:
		return "", false
	}
	return fmt.Sprintf("%s (SQLite error %d)", kind, code), true
}

// wrap gives a storage error its operation as context, turns key
// violations into store.ErrDuplicate and refusals of the data into
// store.RefusedError. SQLite's messages name tables, columns and
// constraints, never bound values, so they may be kept in the error (and
// logs); a RefusedError's Reason, which reaches clients, is fixed text.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if isDuplicate(err) {
		return fmt.Errorf("sqlite: %s: %w", op, store.ErrDuplicate)
	}
	if reason, ok := refusal(err); ok {
		return fmt.Errorf("sqlite: %s: %w", op, &store.RefusedError{Reason: reason, Err: err})
	}
	return fmt.Errorf("sqlite: %s: %w", op, err)
}

// notFound says what was absent; no identifier is included.
func notFound(what string) error {
	return fmt.Errorf("sqlite: %s: %w", what, charting.ErrNotFound)
}

// queryer is what reads need: a *sql.DB, *sql.Tx or *sql.Conn.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}
