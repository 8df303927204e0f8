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
