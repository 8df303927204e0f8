package main

import (
	"bytes"
	"fmt"
	"os"

	"perfusion/charting/deid"
)

// envExportKeyFile names the file holding the de-identification key.
const envExportKeyFile = "PERFUSION_EXPORT_KEY_FILE"

// loadExportKey reads the key that pseudonymises cases in de-identified
// extracts. It comes from a file (never a flag value, which would show in
// process listings) and is never logged; errors name the path only. An
// empty path disables extracts.
func loadExportKey(path string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read export key: %w", err)
	}
	key := bytes.TrimSpace(b)
	if len(key) < deid.MinKeyLen {
		return nil, fmt.Errorf("export key in %s: must be at least %d bytes", path, deid.MinKeyLen)
	}
	return key, nil
}
