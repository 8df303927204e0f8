package migrations

import (
	"context"
	"errors"
	"fmt"
)

// ErrSchemaNewer is returned (wrapped) by Run and Check when the database
// was migrated by a newer binary: this one does not know its schema and
// must not write to it.
var ErrSchemaNewer = errors.New("database schema is newer than this binary")

// ErrSchemaOutdated is returned (wrapped) by Check when the database needs
// migrating before use.
var ErrSchemaOutdated = errors.New("database schema is older than this binary")

// Driver is what a dialect gives the one runner: how to serialise
// migrators, read and record versions, and apply one step. Each backend
// implements it over its own connections; the order of steps, the checks
// against what is recorded, and the renumbering of databases made before
// the dialects shared their numbers live here, once.
type Driver interface {
	// Dialect names the migrations ("postgres", "sqlite").
	Dialect() string
	// Lock serialises migrators of one database until unlock is called
	// (PostgreSQL: an advisory lock; SQLite: nothing, Apply's own
	// IMMEDIATE transaction serialises).
	Lock(ctx context.Context) (unlock func(), err error)
	// Applied creates the version table when it is missing and returns
	// the recorded versions with their names.
	Applied(ctx context.Context) (map[int]string, error)
	// Renumber rewrites recorded versions (old → new) in one transaction.
	Renumber(ctx context.Context, moves map[int]int) error
	// Apply runs m and records it in one transaction, unless it finds m's
	// version recorded by then (another migrator got there first).
	Apply(ctx context.Context, m Migration) error
}

// Run brings the database to this binary's latest version: it renumbers a
// database recorded under a dialect's old numbering (Legacy), refuses one
// that is newer or whose recorded steps do not match, and applies each
// missing step in order.
func Run(ctx context.Context, d Driver) error { return RunTo(ctx, d, 0) }

// RunTo is Run stopping at version target (0: the latest); upgrade tests
// use it to make a database as an earlier release left it.
func RunTo(ctx context.Context, d Driver, target int) error {
	all, err := For(d.Dialect())
	if err != nil {
		return err
	}
	ms := all
	if target > 0 && target < len(all) {
		ms = all[:target]
	}
	unlock, err := d.Lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	applied, err := d.Applied(ctx)
	if err != nil {
		return err
	}
	if moves := legacyMoves(d.Dialect(), applied, all); len(moves) > 0 {
		if err := d.Renumber(ctx, moves); err != nil {
			return fmt.Errorf("renumber the recorded migrations: %w", err)
		}
		if applied, err = d.Applied(ctx); err != nil {
			return err
		}
	}
	if err := checkRecorded(applied, all); err != nil {
		return err
	}
	for _, m := range ms {
		if _, ok := applied[m.Version]; ok {
			continue
		}
		if err := d.Apply(ctx, m); err != nil {
			return fmt.Errorf("apply %03d_%s: %w", m.Version, m.Name, err)
		}
	}
	return nil
}

// checkRecorded refuses a database newer than ms, or one whose recorded
// step at a version has another name than this binary's.
func checkRecorded(applied map[int]string, ms []Migration) error {
	for v, name := range applied {
		if v > len(ms) {
			return fmt.Errorf("database has migration %d (%s), this binary knows up to %d: %w", v, name, len(ms), ErrSchemaNewer)
		}
		if want := ms[v-1].Name; name != want {
			return fmt.Errorf("migration %d is recorded as %q but this binary calls it %q", v, name, want)
		}
	}
	return nil
}

// Check compares a database's version with this binary's: nil when equal,
// ErrSchemaNewer or ErrSchemaOutdated (wrapped) otherwise.
func Check(dialect string, version int) error {
	latest, err := Latest(dialect)
	if err != nil {
		return err
	}
	switch {
	case version > latest:
		return fmt.Errorf("database schema is at version %d but this binary knows only up to %d; run a binary at least as new as the one that migrated it: %w", version, latest, ErrSchemaNewer)
	case version < latest:
		return fmt.Errorf("database schema is at version %d but this binary needs %d; run `perfusiond migrate` first: %w", version, latest, ErrSchemaOutdated)
	}
	return nil
}

// Legacy is each dialect's numbering before the dialects shared one (a
// step that one dialect lacked had a number only in the other). A database
// recorded under it is renumbered by name, once, before anything else.
var Legacy = map[string][]string{
	"postgres": {"initial", "sample_layout", "case_metrics", "outbox", "access_audit", "sample_chunks", "access_chain",
		"serving_role", "outbox_order", "signature_staff_id", "identity_reconciliation", "inbound"},
	"sqlite": {"initial", "case_metrics", "outbox", "access_audit", "sample_chunks", "access_chain", "case_state_guard",
		"outbox_order", "signature_staff_id", "identity_reconciliation", "inbound"},
}

// legacyMoves returns old → new versions for a database recorded under
// the dialect's legacy numbering, or nil when it is not: its recorded
// steps are then exactly the legacy ones from 1 up, and some of them sit
// where the shared numbering has another step.
func legacyMoves(dialect string, applied map[int]string, ms []Migration) map[int]int {
	legacy := Legacy[dialect]
	if len(applied) == 0 || len(applied) > len(legacy) {
		return nil
	}
	for v, name := range applied {
		if v < 1 || v > len(legacy) || legacy[v-1] != name {
			return nil // not the legacy numbering (the shared one, or foreign)
		}
	}
	byName := make(map[string]int, len(ms))
	for _, m := range ms {
		byName[m.Name] = m.Version
	}
	moves := map[int]int{}
	for v, name := range applied {
		to, ok := byName[name]
		if !ok {
			return nil
		}
		if to != v {
			moves[v] = to
		}
	}
	if len(moves) == 0 {
		return nil
	}
	return moves
}
