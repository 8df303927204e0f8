package storetest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"perfusion/migrations"
	"perfusion/store"
)

// Upgradable is a backend that migrates its own database, also part-way.
type Upgradable interface {
	store.Backend
	Migrate(ctx context.Context) error
	MigrateTo(ctx context.Context, version int) error
	CheckSchema(ctx context.Context) error
	AppliedMigrations(ctx context.Context) (map[int]string, error)
}

// UpgradeFromLegacyNumbering makes, in b's empty database, the database
// the release before the shared migration numbering left: its schema
// (every step it had, applied), recorded under the dialect's old numbers
// without the steps the dialect had nothing for. Migrating it must
// renumber it by name, apply only what it lacks, and leave a store that
// records, signs and verifies. exec runs one SQL statement on b's
// database.
func UpgradeFromLegacyNumbering(t *testing.T, b Upgradable, exec func(sql string) error) {
	t.Helper()
	ctx := context.Background()
	legacy := migrations.Legacy[b.Name()]
	ms, err := migrations.For(b.Name())
	if err != nil || legacy == nil {
		t.Fatalf("migrations of %q: %v (legacy %v)", b.Name(), err, legacy)
	}
	byName := map[string]int{}
	for _, m := range ms {
		byName[m.Name] = m.Version
	}
	last := byName[legacy[len(legacy)-1]]
	if err := b.MigrateTo(ctx, last); err != nil {
		t.Fatalf("migrate to %d: %v", last, err)
	}
	quoted := make([]string, len(legacy))
	for i, name := range legacy {
		quoted[i] = "'" + name + "'"
	}
	stmts := []string{`DELETE FROM schema_migrations WHERE name NOT IN (` + strings.Join(quoted, ", ") + `)`}
	for i, name := range legacy {
		stmts = append(stmts, fmt.Sprintf(`UPDATE schema_migrations SET version = %d WHERE name = '%s'`, 1000+i+1, name))
	}
	stmts = append(stmts, `UPDATE schema_migrations SET version = version - 1000`)
	for _, q := range stmts {
		if err := exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := b.CheckSchema(ctx); err == nil {
		t.Fatal("a database under the old numbering passes CheckSchema")
	}
	if err := b.Migrate(ctx); err != nil {
		t.Fatalf("migrate from the old numbering: %v", err)
	}
	if err := b.CheckSchema(ctx); err != nil {
		t.Fatalf("after the upgrade: %v", err)
	}
	got, err := b.AppliedMigrations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(ms) {
		t.Errorf("%d migrations recorded after the upgrade, want %d: %v", len(got), len(ms), got)
	}
	for _, m := range ms {
		if got[m.Version] != m.Name {
			t.Errorf("version %d recorded as %q, want %q", m.Version, got[m.Version], m.Name)
		}
	}
	if err := b.Migrate(ctx); err != nil {
		t.Fatalf("migrate again: %v", err)
	}
	clk := &clock{t: time.Now().UTC().Truncate(time.Second)}
	s := store.New(b, store.Config{Now: clk.now})
	c, _ := signedCase(t, s, clk)
	v, err := s.VerifyRecord(ctx, c.ID)
	if err != nil || v.Bad != nil {
		t.Fatalf("verify after the upgrade: %+v, %v", v, err)
	}
	if _, _, err := s.AddAddendum(ctx, actor, c.ID, uuid.New(), "written after the upgrade", "late finding"); err != nil {
		t.Fatalf("addendum after the upgrade: %v", err)
	}
}
