package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"

	"perfusion/charting/deid"
	"perfusion/store"
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

// refreshStaleMetrics recomputes, in the background, the quality metrics of
// closed or signed cases that have none or stale ones (imported from an
// archive, a refresh that failed, or new metric definitions after an
// upgrade). The returned channel closes when it is done or ctx ends.
func refreshStaleMetrics(ctx context.Context, st *store.Store, log *slog.Logger) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		n, err := st.RefreshStaleMetrics(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("stale quality metrics not all refreshed", "refreshed", n, "err", err)
		case n > 0:
			log.Info("stale quality metrics refreshed", "cases", n)
		}
	}()
	return done
}
