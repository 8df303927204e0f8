//go:build unix

package main

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"testing"
	"time"
)

// TestRunLockedBySameArguments: while one pumpsim runs some cases, another
// with the same arguments and spool directory must not drive them too (two
// writers of one device source); it fails at once, before any call.
func TestRunLockedBySameArguments(t *testing.T) {
	cfg := Config{Addr: "127.0.0.1:1", Principal: "pumpsim-test", Seed: 9, Cases: 1, Duration: time.Hour,
		SpoolDir: t.TempDir(), Out: io.Discard}
	held, err := lockFile(filepath.Join(cfg.SpoolDir, "pumpsim-"+argsOf(cfg).fingerprint()+".lock"))
	if err != nil {
		t.Fatal(err)
	}
	defer unlockFile(held)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := run(ctx, cfg); !errors.Is(err, errRunLocked) {
		t.Fatalf("second pumpsim on the same run: %v, want %v", err, errRunLocked)
	}
}
