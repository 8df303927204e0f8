//go:build !unix

package main

import (
	"fmt"
	"os"
)

// lockFile opens the lock file without locking it: on this platform the
// user must not start two pumpsims with the same arguments and spool
// directory at once.
func lockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("run lock: %w", err)
	}
	return f, nil
}

func unlockFile(f *os.File) { f.Close() }
