package postgres

import (
	"context"
	"fmt"
)

// ServingRole is what the connected role may do to the record's tables
// beyond the privileges the server needs (008_serving_role).
type ServingRole struct {
	// Superuser: the role bypasses every guard (and may set
	// session_replication_role = replica).
	Superuser bool
	// OwnsRecord: the role owns the ledger table, or is a member of the
	// role that does, and so may disable or drop its append-only triggers.
	OwnsRecord bool
}

// Safe reports whether the role cannot switch the database's append-only
// guards off.
func (r ServingRole) Safe() bool { return !r.Superuser && !r.OwnsRecord }

// CheckServingRole reports whether the role the backend connects as could
// switch off the append-only triggers: a server should run as a member of
// perfusion_app, not as the tables' owner (README, "The record, precisely").
func (b *Backend) CheckServingRole(ctx context.Context) (ServingRole, error) {
	var r ServingRole
	err := b.pool.QueryRow(ctx, `SELECT
		coalesce((SELECT rolsuper FROM pg_roles WHERE rolname = current_user), false),
		coalesce((SELECT pg_has_role(current_user, c.relowner, 'USAGE') FROM pg_class c WHERE c.oid = to_regclass('ledger')), false)`).
		Scan(&r.Superuser, &r.OwnsRecord)
	if err != nil {
		return r, fmt.Errorf("postgres: check serving role: %w", safeErr(err))
	}
	return r, nil
}
