package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWarnOpenPermissions: a data directory at 0755 and a store at 0644
// (made by hand, or restored from a backup) are named in a warning with the
// chmod that fixes them; 0700 and 0600 are not.
func TestWarnOpenPermissions(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, dbFileName)
	if err := os.WriteFile(db, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	warnOpenPermissions(slog.New(slog.NewTextHandler(&buf, nil)), dir, db)
	out := buf.String()
	if strings.Count(out, "open to other users") != 2 || !strings.Contains(out, "chmod 0700 "+dir) || !strings.Contains(out, "chmod 0600 "+db) {
		t.Fatalf("warnings:\n%s", out)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(db, 0o600); err != nil {
		t.Fatal(err)
	}
	buf.Reset()
	warnOpenPermissions(slog.New(slog.NewTextHandler(&buf, nil)), dir, db)
	if buf.Len() != 0 {
		t.Fatalf("warned about owner-only modes:\n%s", buf.String())
	}
}
