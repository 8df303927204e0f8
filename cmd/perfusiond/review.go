package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strconv"
	"strings"

	"perfusion/charting"
	"perfusion/charting/deid"
	"perfusion/store"
)

// Environment variables of the review flags.
const (
	envExportKeyFile = "PERFUSION_EXPORT_KEY_FILE"
	envDO2iThreshold = "PERFUSION_METRICS_DO2I_THRESHOLD"
	envMAPThresholds = "PERFUSION_METRICS_MAP_THRESHOLDS"
)

// metricsFlags defines the site's quality-metric thresholds. Changing them
// makes every stored case's metrics stale; the server recomputes them in
// the background at start.
func metricsFlags(fs *flag.FlagSet, env envFlags) func() (*charting.MetricsConfig, error) {
	def := charting.DefaultMetricsConfig()
	do2i := fs.Float64("metrics-do2i-threshold", def.DO2iThreshold,
		"DO2i threshold (mL/min/m²) for minutes and area below; the literature uses 262, 272, 280 and 300 (env "+envDO2iThreshold+")")
	maps := fs.String("metrics-map-thresholds", "40,50", "MAP thresholds (mmHg), comma-separated, for minutes below each (env "+envMAPThresholds+")")
	env["metrics-do2i-threshold"], env["metrics-map-thresholds"] = envDO2iThreshold, envMAPThresholds
	return func() (*charting.MetricsConfig, error) {
		cfg := charting.DefaultMetricsConfig()
		if *do2i <= 0 || *do2i > 2000 || math.IsNaN(*do2i) {
			return nil, usageErrorf("--metrics-do2i-threshold must be between 0 and 2000")
		}
		cfg.DO2iThreshold = *do2i
		cfg.MAPThresholds = nil
		for _, f := range strings.Split(*maps, ",") {
			v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
			if err != nil || v <= 0 || v > 300 {
				return nil, usageErrorf("--metrics-map-thresholds: %q is not a pressure between 0 and 300 mmHg", f)
			}
			cfg.MAPThresholds = append(cfg.MAPThresholds, v)
		}
		return &cfg, nil
	}
}

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
