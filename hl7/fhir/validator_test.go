package fhir

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestIndependentValidator validates every golden bundle, and every
// resource in it, against the FHIR R4 StructureDefinitions with
// @medplum/core's validateResource, written independently of this
// package. It needs node and the packages testdata/validator/setup.sh
// installs; without them it skips, except in CI (CI set), where a missing
// validator is a failure.
func TestIndependentValidator(t *testing.T) {
	dir := filepath.Join("testdata", "validator")
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(filepath.Join(dir, "node_modules", "@medplum", "core", "package.json"))
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("FHIR validator unavailable in CI (%v): run hl7/fhir/testdata/validator/setup.sh before go test", err)
		}
		t.Skipf("FHIR validator unavailable (%v): run testdata/validator/setup.sh", err)
	}
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, node, append([]string{filepath.Join(dir, "validate.js")}, files...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("validator failed: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
