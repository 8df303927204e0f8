package v2

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestIndependentParser parses every golden message with hl7parser, an npm
// HL7 v2 parser written independently of this package, and checks that it
// decodes every field, repetition, component and subcomponent to the same
// text as Parse. It needs node and the packages that
// testdata/validator/setup.sh installs; without them it skips, except in
// CI (CI set), where a missing validator is a failure.
func TestIndependentParser(t *testing.T) {
	dir := filepath.Join("testdata", "validator")
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(filepath.Join(dir, "node_modules", "hl7parser", "package.json"))
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("HL7 validator unavailable in CI (%v): run hl7/v2/testdata/validator/setup.sh before go test", err)
		}
		t.Skipf("HL7 validator unavailable (%v): run testdata/validator/setup.sh", err)
	}
	files, err := filepath.Glob(filepath.Join("testdata", "*.hl7"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := []string{filepath.Join(dir, "validate.js")}
	args = append(args, files...)
	out, err := exec.CommandContext(ctx, node, args...).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("validator failed: %v\n%s", err, stderr)
	}
	var theirs map[string]any
	if err := json.Unmarshal(out, &theirs); err != nil {
		t.Fatalf("validator output: %v", err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m, err := Parse(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		ours := toValidatorShape(t, m)
		if !reflect.DeepEqual(ours, theirs[name]) {
			o, _ := json.Marshal(ours)
			th, _ := json.Marshal(theirs[name])
			t.Errorf("%s: hl7parser reads it differently\n ours:   %s\n theirs: %s", name, o, th)
		}
	}
}

// toValidatorShape renders a parsed message as validate.js prints it:
// segments with fields from MSH-3 (MSH-1/2 are delimiters), nested arrays,
// null for empty elements. hl7parser keeps \.br\ as text, so line feeds are
// written back as \.br\ for the comparison.
func toValidatorShape(t *testing.T, m *Message) any {
	t.Helper()
	type seg struct {
		ID     string  `json:"id"`
		Fields []Field `json:"fields"`
	}
	var segs []seg
	for _, s := range Canonical(m).Segments {
		fs := s.Fields
		if s.ID == "MSH" {
			fs = fs[2:]
		}
		for _, f := range fs {
			for _, r := range f {
				for _, c := range r {
					for i := range c {
						c[i] = strings.ReplaceAll(c[i], "\n", `\.br\`)
					}
				}
			}
		}
		if fs == nil {
			fs = []Field{}
		}
		segs = append(segs, seg{s.ID, fs})
	}
	b, err := json.Marshal(segs)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}
