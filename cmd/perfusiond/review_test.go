package main

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
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
