// Package sqlitetest opens throwaway SQLite backends for tests in other
// packages (the server, the conformance suite). It lives outside
// store/sqlite so production binaries do not carry test helpers.
package sqlitetest

import (
	"context"
	"path/filepath"
	"testing"

	"perfusion/store/sqlite"
)

// Open returns a fresh, migrated backend in a file under t.TempDir(). It is
// closed when the test ends; the directory is removed after that.
func Open(t testing.TB) *sqlite.Backend {
	t.Helper()
	ctx := context.Background()
	b, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "perfusion.db"))
	if err != nil {
		t.Fatalf("sqlitetest: open: %v", err)
	}
	// Registered before Migrate so a failed migration still closes the
	// files before TempDir's cleanup removes them.
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("sqlitetest: close: %v", err)
		}
	})
	if err := b.Migrate(ctx); err != nil {
		t.Fatalf("sqlitetest: migrate: %v", err)
	}
	return b
}
