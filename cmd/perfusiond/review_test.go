package main

import (
	"context"
	"flag"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/store"
	"perfusion/store/sqlite"
)

func TestMetricsFlags(t *testing.T) {
	tests := []struct {
		args    []string
		do2i    float64
		maps    []float64
		wantErr bool
	}{
		{nil, 280, []float64{40, 50}, false},
		{[]string{"--metrics-do2i-threshold", "300", "--metrics-map-thresholds", "45, 55,65"}, 300, []float64{45, 55, 65}, false},
		{[]string{"--metrics-do2i-threshold", "-1"}, 0, nil, true},
		{[]string{"--metrics-do2i-threshold", "NaN"}, 0, nil, true},
		{[]string{"--metrics-map-thresholds", "40,x"}, 0, nil, true},
		{[]string{"--metrics-map-thresholds", "400"}, 0, nil, true},
	}
	for _, tc := range tests {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		get := metricsFlags(fs, envFlags{})
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		cfg, err := get()
		if (err != nil) != tc.wantErr {
			t.Fatalf("%v: err %v, want error %v", tc.args, err, tc.wantErr)
		}
		if err == nil && (cfg.DO2iThreshold != tc.do2i || !slices.Equal(cfg.MAPThresholds, tc.maps)) {
			t.Fatalf("%v: %v %v", tc.args, cfg.DO2iThreshold, cfg.MAPThresholds)
		}
	}
}

// TestFullFlowRuleFlags: the full-flow rule's flags set the site's config
// and its bounds are checked; a population may set its own rule.
func TestFullFlowRuleFlags(t *testing.T) {
	parse := func(args ...string) (*charting.MetricsConfig, error) {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		get := metricsFlags(fs, envFlags{})
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return get()
	}
	cfg, err := parse()
	def := charting.DefaultMetricsConfig()
	if err != nil || cfg.FullFlowPct != def.FullFlowPct || cfg.FullFlowSustainMinutes != def.FullFlowSustainMinutes ||
		cfg.FullFlowAfterOnMinutes != def.FullFlowAfterOnMinutes || cfg.WeaningBeforeOffMinutes != def.WeaningBeforeOffMinutes {
		t.Fatalf("defaults: %v %+v", err, cfg)
	}
	pops := filepath.Join(t.TempDir(), "pops.json")
	os.WriteFile(pops, []byte(`[{"name": "neonate", "max_weight_kg": 5, "full_flow_pct": 70}]`), 0o600)
	cfg, err = parse("--metrics-full-flow-pct", "85", "--metrics-full-flow-sustain-minutes", "2",
		"--metrics-full-flow-after-on-minutes", "3", "--metrics-weaning-before-off-minutes", "8", "--metrics-populations", pops)
	if err != nil || cfg.FullFlowPct != 85 || cfg.FullFlowSustainMinutes != 2 || cfg.FullFlowAfterOnMinutes != 3 || cfg.WeaningBeforeOffMinutes != 8 {
		t.Fatalf("set: %v %+v", err, cfg)
	}
	if neo := cfg.Populations[0].Config; neo.FullFlowPct != 70 || neo.WeaningBeforeOffMinutes != 8 {
		t.Fatalf("population: %+v", neo)
	}
	for _, args := range [][]string{
		{"--metrics-full-flow-pct", "101"}, {"--metrics-full-flow-pct", "NaN"}, {"--metrics-full-flow-sustain-minutes", "-1"},
		{"--metrics-full-flow-after-on-minutes", "500"}, {"--metrics-weaning-before-off-minutes", "-2"},
	} {
		if _, err := parse(args...); err == nil || !strings.Contains(err.Error(), strings.TrimPrefix(args[0], "--")) {
			t.Errorf("%v: %v, want an error naming the flag", args, err)
		}
	}
}

// TestServeRecomputesOldMetrics: after an upgrade that bumps the metric
// definitions, a closed case's stored metrics of the older version are
// recomputed in the background when perfusiond starts.
func TestServeRecomputesOldMetrics(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	env := map[string]string{envDataDir: dir, envListen: "127.0.0.1:0"}
	srv := startServe(t, env)
	id := uuid.MustParse(createCase(t, srv.addr, dir))
	srv.stop()
	srv.code <- <-srv.code // stopped; left for the cleanup that waits for it

	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(dir, dbFileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st := store.New(db, store.Config{})
	// An ECMO run of 30 minutes at 4 L/min, once a minute, without
	// bypass events: its window is the data.
	start := time.Now().Add(-time.Hour).Truncate(time.Minute)
	flow := charting.Series{Channel: "pump_flow"}
	for i := range 30 {
		flow.TimesMs = append(flow.TimesMs, start.Add(time.Duration(i)*time.Minute).UnixMilli())
		flow.Values = append(flow.Values, 4)
	}
	if res := st.AppendSamples(ctx, "gateway-1", []*charting.SampleBatch{{CaseID: id, SourceID: "ecmo", Seq: 1, Series: []charting.Series{flow}}}); res[0].Err != nil {
		t.Fatal(res[0].Err)
	}
	if _, err := st.CloseCase(ctx, "perfusionist-1", id); err != nil {
		t.Fatal(err)
	}
	// Store them as the previous version computed them: no window.
	row, err := db.GetCaseMetrics(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	row.Metrics.Version = charting.MetricDefinitionsVersion - 1
	row.Metrics.Runs = nil
	delete(row.Metrics.Values, "full_flow_minutes")
	if err := db.PutCaseMetrics(ctx, row); err != nil {
		t.Fatal(err)
	}

	srv = startServe(t, env)
	deadline := time.Now().Add(20 * time.Second)
	for {
		row, err = db.GetCaseMetrics(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if row.Metrics.Version == charting.MetricDefinitionsVersion {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics still of version %d\n%s", row.Metrics.Version, srv.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if v, ok := row.Metrics.Values["full_flow_minutes"]; !ok || v != 29 || len(row.Metrics.Runs) != 1 {
		t.Fatalf("recomputed: full_flow_minutes %v (present %v), runs %+v", v, ok, row.Metrics.Runs)
	}
}

func TestLoadExportKey(t *testing.T) {
	dir := t.TempDir()
	good, short := filepath.Join(dir, "good"), filepath.Join(dir, "short")
	os.WriteFile(good, []byte(strings.Repeat("s", 40)+"\n"), 0o600)
	os.WriteFile(short, []byte("tooshort-secret-value"), 0o600)
	if k, err := loadExportKey(good); err != nil || len(k) != 40 {
		t.Fatalf("good key: %v, %d bytes", err, len(k))
	}
	if k, err := loadExportKey(""); err != nil || k != nil {
		t.Fatalf("no key: %v %v", k, err)
	}
	_, err := loadExportKey(short)
	if err == nil || strings.Contains(err.Error(), "tooshort") {
		t.Fatalf("short key: %v (must fail without quoting the key)", err)
	}
	if _, err := loadExportKey(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("missing file accepted")
	}
}

// TestMetricsPopulationsFlag: a populations file takes the site's flags for
// what it leaves out; misspelt, nested, unnamed or weightless populations
// are refused with the file's path, never half-applied.
func TestMetricsPopulationsFlag(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	parse := func(args ...string) error {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		get := metricsFlags(fs, envFlags{})
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		cfg, err := get()
		if err == nil && len(cfg.Populations) == 0 {
			t.Fatalf("%v: no populations", args)
		}
		if err == nil {
			neo := cfg.Populations[0]
			if neo.Name != "neonate" || neo.MaxWeightKg != 5 || neo.Config.DO2iThreshold != 340 ||
				!slices.Equal(neo.Config.MAPThresholds, []float64{25, 30}) || neo.Config.SvO2Threshold != 60 {
				t.Fatalf("neonate population %+v", neo)
			}
			if child := cfg.Populations[1]; child.Config.DO2iThreshold != 300 || !slices.Equal(child.Config.MAPThresholds, []float64{45}) {
				t.Fatalf("child population takes the site's DO2i 300: %+v", child)
			}
		}
		return err
	}
	good := write("good.json", `[{"name": "neonate", "max_weight_kg": 5, "do2i_threshold": 340, "map_thresholds": [25, 30]},
		{"name": "child", "max_weight_kg": 30}]`)
	if err := parse("--metrics-do2i-threshold", "300", "--metrics-map-thresholds", "45", "--metrics-populations", good); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		"misspelt.json": `[{"name": "neonate", "max_weight_kg": 5, "do2i_treshold": 340}]`,
		"nested.json":   `[{"name": "neonate", "max_weight_kg": 5, "populations": [{"name": "x", "max_weight_kg": 1}]}]`,
		"unnamed.json":  `[{"max_weight_kg": 5}]`,
		"twice.json":    `[{"name": "a", "max_weight_kg": 5}, {"name": "a", "max_weight_kg": 9}]`,
		"weight.json":   `[{"name": "neonate", "max_weight_kg": 0}]`,
		"badmap.json":   `[{"name": "neonate", "max_weight_kg": 5, "map_thresholds": [500]}]`,
		"object.json":   `{"name": "neonate"}`,
		"fullflow.json": `[{"name": "neonate", "max_weight_kg": 5, "full_flow_pct": 150}]`,
	} {
		path := write(name, body)
		err := parse("--metrics-populations", path)
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: %v, want an error naming the file", name, err)
		}
	}
	if err := parse("--metrics-populations", filepath.Join(dir, "missing.json")); err == nil {
		t.Error("a missing file was accepted")
	}
}
