package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"os"
	"slices"
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
	envPopulations   = "PERFUSION_METRICS_POPULATIONS"
	envFullFlowPct   = "PERFUSION_METRICS_FULL_FLOW_PCT"
	envFullFlowHold  = "PERFUSION_METRICS_FULL_FLOW_SUSTAIN_MINUTES"
	envFullFlowAfter = "PERFUSION_METRICS_FULL_FLOW_AFTER_ON_MINUTES"
	envWeanBefore    = "PERFUSION_METRICS_WEANING_BEFORE_OFF_MINUTES"
)

// metricsFlags defines the site's quality-metric thresholds. Changing them
// makes every stored case's metrics stale; the server recomputes them in
// the background at start.
func metricsFlags(fs *flag.FlagSet, env envFlags) func() (*charting.MetricsConfig, error) {
	def := charting.DefaultMetricsConfig()
	do2i := fs.Float64("metrics-do2i-threshold", def.DO2iThreshold,
		"DO2i threshold (mL/min/m²) for minutes and area below; the literature uses 262, 272, 280 and 300 (env "+envDO2iThreshold+")")
	maps := fs.String("metrics-map-thresholds", "40,50", "MAP thresholds (mmHg), comma-separated, for minutes below each (env "+envMAPThresholds+")")
	pops := fs.String("metrics-populations", "", "JSON file of patient populations with their own thresholds, chosen by patient weight (env "+envPopulations+")")
	env["metrics-do2i-threshold"], env["metrics-map-thresholds"], env["metrics-populations"] = envDO2iThreshold, envMAPThresholds, envPopulations
	// The full-flow rule: where full_flow or weaning_start was not charted,
	// where established bypass begins and ends (charting.MetricsConfig).
	ffPct := fs.Float64("metrics-full-flow-pct", def.FullFlowPct,
		"full-flow rule: % of a run's full-flow level (its median pump flow) that counts as full flow where full_flow/weaning_start were not charted; 0 turns the flow rule off (env "+envFullFlowPct+")")
	ffHold := fs.Float64("metrics-full-flow-sustain-minutes", def.FullFlowSustainMinutes,
		"full-flow rule: minutes the flow must stay at that level before full flow counts as reached (env "+envFullFlowHold+")")
	ffAfter := fs.Float64("metrics-full-flow-after-on-minutes", def.FullFlowAfterOnMinutes,
		"without usable pump flow: full flow is taken to begin this many minutes after bypass_on (env "+envFullFlowAfter+")")
	weanBefore := fs.Float64("metrics-weaning-before-off-minutes", def.WeaningBeforeOffMinutes,
		"without usable pump flow: weaning is taken to begin this many minutes before bypass_off (env "+envWeanBefore+")")
	env["metrics-full-flow-pct"], env["metrics-full-flow-sustain-minutes"] = envFullFlowPct, envFullFlowHold
	env["metrics-full-flow-after-on-minutes"], env["metrics-weaning-before-off-minutes"] = envFullFlowAfter, envWeanBefore
	return func() (*charting.MetricsConfig, error) {
		cfg := charting.DefaultMetricsConfig()
		if *do2i <= 0 || *do2i > 2000 || math.IsNaN(*do2i) {
			return nil, usageErrorf("--metrics-do2i-threshold must be between 0 and 2000")
		}
		cfg.DO2iThreshold = *do2i
		cfg.FullFlowPct, cfg.FullFlowSustainMinutes = *ffPct, *ffHold
		cfg.FullFlowAfterOnMinutes, cfg.WeaningBeforeOffMinutes = *ffAfter, *weanBefore
		if msg := checkFullFlowRule(cfg); msg != "" {
			return nil, usageErrorf("--metrics-%s", msg)
		}
		cfg.MAPThresholds = nil
		for _, f := range strings.Split(*maps, ",") {
			v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
			if err != nil || v <= 0 || v > 300 {
				return nil, usageErrorf("--metrics-map-thresholds: %q is not a pressure between 0 and 300 mmHg", f)
			}
			cfg.MAPThresholds = append(cfg.MAPThresholds, v)
		}
		if *pops != "" {
			var err error
			if cfg.Populations, err = loadPopulations(*pops, cfg); err != nil {
				return nil, err
			}
		}
		return &cfg, nil
	}
}

// populationFile is one population of a --metrics-populations file: its
// name, the heaviest patient it holds, and any threshold of
// charting.MetricsConfig by its JSON name; thresholds it leaves out are
// the site's.
type populationFile struct {
	Name        string  `json:"name"`
	MaxWeightKg float64 `json:"max_weight_kg"`
	charting.MetricsConfig
}

// loadPopulations reads a --metrics-populations file, for example
//
//	[{"name": "neonate", "max_weight_kg": 5, "do2i_threshold": 340, "map_thresholds": [25, 30]},
//	 {"name": "child", "max_weight_kg": 30, "map_thresholds": [35, 45]}]
//
// Unknown fields are refused, so a misspelt threshold is not silently the
// site's.
func loadPopulations(path string, site charting.MetricsConfig) ([]charting.MetricsPopulation, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, usageErrorf("--metrics-populations: %v", err)
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(b, &raws); err != nil {
		return nil, usageErrorf("--metrics-populations %s: not a JSON array of populations: %v", path, err)
	}
	var out []charting.MetricsPopulation
	names := map[string]bool{}
	for i, raw := range raws {
		// Decoding reuses a slice's array: each population gets its own
		// copy of the site's, or decoding one would rewrite the site's.
		p := populationFile{MetricsConfig: site}
		p.MAPThresholds = slices.Clone(site.MAPThresholds)
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&p); err != nil {
			return nil, usageErrorf("--metrics-populations %s: population %d: %v", path, i, err)
		}
		switch {
		case p.Name == "" || names[p.Name]:
			return nil, usageErrorf("--metrics-populations %s: population %d needs a name of its own", path, i)
		case !(p.MaxWeightKg > 0 && p.MaxWeightKg <= 500):
			return nil, usageErrorf("--metrics-populations %s: %s: max_weight_kg must be between 0 and 500", path, p.Name)
		case !(p.DO2iThreshold > 0 && p.DO2iThreshold <= 2000):
			return nil, usageErrorf("--metrics-populations %s: %s: do2i_threshold must be between 0 and 2000", path, p.Name)
		case len(p.MetricsConfig.Populations) > 0:
			return nil, usageErrorf("--metrics-populations %s: %s: populations do not nest", path, p.Name)
		}
		if msg := checkFullFlowRule(p.MetricsConfig); msg != "" {
			return nil, usageErrorf("--metrics-populations %s: %s: %s", path, p.Name, strings.ReplaceAll(msg, "-", "_"))
		}
		for _, v := range p.MAPThresholds {
			if !(v > 0 && v <= 300) {
				return nil, usageErrorf("--metrics-populations %s: %s: map_thresholds must be pressures between 0 and 300 mmHg", path, p.Name)
			}
		}
		names[p.Name] = true
		out = append(out, charting.MetricsPopulation{Name: p.Name, MaxWeightKg: p.MaxWeightKg, Config: p.MetricsConfig})
	}
	return out, nil
}

// checkFullFlowRule returns what is wrong with cfg's full-flow rule, as
// "<flag name without --metrics-> must …", or "".
func checkFullFlowRule(cfg charting.MetricsConfig) string {
	in := func(v, lo, hi float64) bool { return v >= lo && v <= hi } // false for NaN
	switch {
	case !in(cfg.FullFlowPct, 0, 100):
		return "full-flow-pct must be between 0 and 100"
	case !in(cfg.FullFlowSustainMinutes, 0, 60):
		return "full-flow-sustain-minutes must be between 0 and 60"
	case !in(cfg.FullFlowAfterOnMinutes, 0, 120):
		return "full-flow-after-on-minutes must be between 0 and 120"
	case !in(cfg.WeaningBeforeOffMinutes, 0, 120):
		return "weaning-before-off-minutes must be between 0 and 120"
	}
	return ""
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
