//go:build !unix

package perfusion

import (
	"fmt"
	"os"
)

// lockDir opens the lock file without locking it: on this platform the
// caller must make sure only one streamer uses a spool directory.
func lockDir(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("perfusion: spool lock: %w", err)
	}
	return f, nil
}

func unlockDir(f *os.File) { f.Close() }
