// Package charting is the domain core of the perfusion record: the case
// lifecycle, the channel and analyte catalogues, validation of samples and
// entries, corrections, downsampling and the ledger (canonical encoding, hash
// chain, verification). It does no I/O, so every rule here is testable
// without a database and is the same for every store.
package charting

import (
	"errors"
	"fmt"
	"strings"
)

// FieldViolation names one invalid field of a request.
type FieldViolation struct {
	// Field is a dotted path, e.g. "batch.series[2].values[17]".
	Field string
	// Description says what is wrong, without patient data.
	Description string
}

// InvalidError reports malformed input. Nothing was stored.
type InvalidError struct {
	Violations []FieldViolation
}

func (e *InvalidError) Error() string {
	parts := make([]string, 0, len(e.Violations))
	for _, v := range e.Violations {
		parts = append(parts, v.Field+": "+v.Description)
	}
	return "invalid input: " + strings.Join(parts, "; ")
}

// Violations collects field violations while validating.
type Violations []FieldViolation

// Add records a violation.
func (v *Violations) Add(field, format string, args ...any) {
	*v = append(*v, FieldViolation{Field: field, Description: fmt.Sprintf(format, args...)})
}

// Err returns an *InvalidError when any violation was added, else nil.
func (v Violations) Err() error {
	if len(v) == 0 {
		return nil
	}
	return &InvalidError{Violations: v}
}

// PreconditionError reports an operation that the case's lifecycle does not
// allow, such as charting on a signed case.
type PreconditionError struct {
	Reason string
}

func (e *PreconditionError) Error() string { return "failed precondition: " + e.Reason }

// Preconditionf returns a *PreconditionError.
func Preconditionf(format string, args ...any) error {
	return &PreconditionError{Reason: fmt.Sprintf(format, args...)}
}

// Sentinel errors shared by the domain and every store.
var (
	// ErrNotFound: the case or entry does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict: a client-chosen id was reused for different content.
	ErrConflict = errors.New("id already used for different content")
	// ErrStale: an optimistic concurrency check failed (expected version or
	// ledger head has moved on).
	ErrStale = errors.New("stale: the record has changed since it was read")
)
