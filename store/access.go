package store

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
)

// The access audit: who called which RPC on which case, when, from where,
// and with what outcome. It records every call that read or wrote patient
// data and every refused call. It is append-only in the database itself
// (triggers refuse UPDATE and DELETE on both backends), lives in the same
// database as the record, and is written before the call's answer leaves
// the server: a call whose audit record cannot be written fails.
//
// Break-glass grants let a caller without access to a case's site open it
// for emergency care, with a stated reason, for a limited time. They are
// kept here too; their start and end are access events.

// AccessEvent is one audited call.
type AccessEvent struct {
	// ID is assigned by the server (random), so a listing can page.
	ID uuid.UUID
	// At is when the call ended.
	At time.Time
	// Principal is the caller ("" when it could not be authenticated).
	Principal string
	// Roles are the caller's roles, space-separated.
	Roles string
	// Via is how the caller authenticated: jwt, mtls, dev-header.
	Via string
	// Method is the RPC's full name.
	Method string
	// CaseID is the case the call named, if any (uuid.Nil otherwise).
	CaseID uuid.UUID
	// Code is the gRPC status code name: OK, PermissionDenied, ….
	Code string
	// Reason says why a call was refused or how it was let in (e.g.
	// "break-glass"); never request content.
	Reason string
	// ClientAddr is the caller's network address.
	ClientAddr string
}

// AccessFilter selects access events. Zero values match anything.
type AccessFilter struct {
	From, To  time.Time // At >= From, At < To
	Principal string
	CaseID    uuid.UUID
	// DeniedOnly keeps refused calls only.
	DeniedOnly bool
	Limit      int
	// After continues a listing after this event (keyset pagination).
	After *AccessCursor
}

// AccessCursor is a position in an access listing, newest first.
type AccessCursor struct {
	At time.Time
	ID uuid.UUID
}

// BreakGlassGrant is emergency access of one principal to one case.
type BreakGlassGrant struct {
	ID        uuid.UUID
	Principal string
	CaseID    uuid.UUID
	// Site is the case's site, which the principal could not reach.
	Site string
	// Reason is the stated emergency, as typed. It is shown to reviewers,
	// never logged.
	Reason    string
	StartedAt time.Time
	ExpiresAt time.Time
	// EndedAt is set once the grant's end has been audited (ended by its
	// holder, or expired); zero before.
	EndedAt time.Time
	// EndReason is "ended" or "expired".
	EndReason string
}

// BreakGlassFilter selects grants, newest first. Zero values match
// anything.
type BreakGlassFilter struct {
	From, To  time.Time // StartedAt in [From, To)
	Principal string
	CaseID    uuid.UUID
	Limit     int
}

// AccessBackend keeps the access audit and break-glass grants. Both
// store/postgres and store/sqlite implement it; use AccessOf to find it.
type AccessBackend interface {
	// AppendAccessEvents inserts events. Nothing else ever changes them.
	AppendAccessEvents(ctx context.Context, es []AccessEvent) error
	// ListAccessEvents returns events matching f, newest first (At, then
	// ID, descending), at most f.Limit.
	ListAccessEvents(ctx context.Context, f AccessFilter) ([]AccessEvent, error)
	// InsertBreakGlass stores a new grant.
	InsertBreakGlass(ctx context.Context, g BreakGlassGrant) error
	// ActiveBreakGlass returns principal's grant on caseID that has not
	// ended and expires after now; charting.ErrNotFound when none.
	ActiveBreakGlass(ctx context.Context, principal string, caseID uuid.UUID, now time.Time) (*BreakGlassGrant, error)
	// EndBreakGlass marks grants ended and returns them: the one with id
	// (reason "ended"; uuid.Nil for none), and every grant expired at now
	// and not yet marked (reason "expired"). A grant is marked once.
	EndBreakGlass(ctx context.Context, id uuid.UUID, principal string, now time.Time) ([]BreakGlassGrant, error)
	// ListBreakGlass returns grants matching f, newest first.
	ListBreakGlass(ctx context.Context, f BreakGlassFilter) ([]BreakGlassGrant, error)
}

// ErrNoAccessAudit is returned for a backend that keeps no access audit.
var ErrNoAccessAudit = errors.New("store: backend keeps no access audit")

// AccessOf returns b's access audit.
func AccessOf(b Backend) (AccessBackend, error) {
	a, ok := b.(AccessBackend)
	if !ok {
		return nil, ErrNoAccessAudit
	}
	return a, nil
}

// Access returns the access audit of the store's backend.
func (s *Store) Access() (AccessBackend, error) { return AccessOf(s.b) }
