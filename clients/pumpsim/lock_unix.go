//go:build unix

package main

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// errRunLocked says another pumpsim holds the run.
var errRunLocked = errors.New("another pumpsim with the same arguments is running on this spool directory")

// lockFile takes an exclusive advisory lock on path, so two pumpsims never
// drive the same cases. The kernel drops it when the process dies, so a
// crash leaves no stale lock.
func lockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("run lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w (%s is locked)", errRunLocked, path)
		}
		return nil, fmt.Errorf("run lock: %w", err)
	}
	return f, nil
}

func unlockFile(f *os.File) {
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	f.Close()
}
