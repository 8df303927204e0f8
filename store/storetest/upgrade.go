package storetest

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/uuid"

	"perfusion/migrations"
)

// migrator is a backend that migrates its own database.
type migrator interface {
	Migrate(ctx context.Context) error
	CheckSchema(ctx context.Context) error
	AppliedMigrations(ctx context.Context) (map[int]string, error)
}

// testUpgradeFromLegacyNumbering: a database made by the release before
// the dialects shared one migration numbering — its schema_migrations
// rows under the dialect's old numbers, without the steps that dialect
// had nothing for — is renumbered by name and given those steps when it
// is migrated, nothing else is run again, and its record stays whole.
func testUpgradeFromLegacyNumbering(t *testing.T, h *Harness) {
	ctx := context.Background()
	s, b, clk := newStore(t, h)
	m, ok := unwrap(b).(migrator)
	if !ok {
		t.Skip("the backend does not migrate itself")
	}
	legacy := migrations.Legacy[b.Name()]
	if legacy == nil {
		t.Fatalf("no legacy numbering for %q", b.Name())
	}
	c, _ := signedCase(t, s, clk)
	before, err := s.VerifyRecord(ctx, c.ID)
	if err != nil || before.Bad != nil {
		t.Fatalf("verify before: %+v, %v", before, err)
	}
	// Back to the old release's rows: the steps it had, at its numbers.
	in := ""
	for i, name := range legacy {
		if i > 0 {
			in += ", "
		}
		in += "'" + name + "'"
	}
	if err := h.Exec(t, b, `DELETE FROM schema_migrations WHERE name NOT IN (`+in+`)`); err != nil {
		t.Fatal(err)
	}
	for i, name := range legacy {
		if err := h.Exec(t, b, fmt.Sprintf(`UPDATE schema_migrations SET version = %d WHERE name = '%s'`, 1000+i+1, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.Exec(t, b, `UPDATE schema_migrations SET version = version - 1000`); err != nil {
		t.Fatal(err)
	}
	if err := m.CheckSchema(ctx); err == nil {
		t.Fatal("a database under the old numbering passes CheckSchema")
	}
	if err := m.Migrate(ctx); err != nil {
		t.Fatalf("migrate from the old numbering: %v", err)
	}
	if err := m.CheckSchema(ctx); err != nil {
		t.Fatalf("after the upgrade: %v", err)
	}
	ms, err := migrations.For(b.Name())
	if err != nil {
		t.Fatal(err)
	}
	got, err := m.AppliedMigrations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(ms) {
		t.Errorf("%d migrations recorded after the upgrade, want %d: %v", len(got), len(ms), got)
	}
	for _, mg := range ms {
		if got[mg.Version] != mg.Name {
			t.Errorf("version %d recorded as %q, want %q", mg.Version, got[mg.Version], mg.Name)
		}
	}
	if err := m.Migrate(ctx); err != nil {
		t.Fatalf("migrate again: %v", err)
	}
	after, err := s.VerifyRecord(ctx, c.ID)
	if err != nil || after.Bad != nil || after.Head != before.Head {
		t.Fatalf("verify after the upgrade: %+v, %v", after, err)
	}
	// And it is written to as before.
	if _, _, err := s.AddAddendum(ctx, actor, c.ID, uuid.New(), "written after the upgrade", "late finding"); err != nil {
		t.Fatalf("addendum after the upgrade: %v", err)
	}
}
