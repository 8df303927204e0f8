package server_test

import (
	"os"
	"path/filepath"
	"testing"

	"perfusion/server"
)

// TestDevKeyCreatedOnceMode0600: the development key is created on first
// use, readable by its owner only, and the same key on every later load.
func TestDevKeyCreatedOnceMode0600(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	k1, err := server.LoadOrCreateDevKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, server.DevKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	k2, err := server.LoadOrCreateDevKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	if k1.KID != k2.KID || !k1.Key.Equal(k2.Key) {
		t.Fatal("the key changed between loads")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("data directory holds %d files, want the key only", len(entries))
	}
}
