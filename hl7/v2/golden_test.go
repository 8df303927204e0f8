package v2

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// goldenMessages builds every golden message from the reference case.
func goldenMessages(t *testing.T) map[string]*Message {
	t.Helper()
	must := func(m *Message, err error) *Message {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	summary := must(BuildSummary(refHeader(1), refSummary()))
	ackHeader := Header{
		SendingApplication: HD{NamespaceID: "EHR"},
		SendingFacility:    HD{NamespaceID: "GENHOSP"},
		ControlID:          "ACK-000981",
		Time:               refTime("10:45").Add(2 * time.Second),
		Location:           refZone,
	}
	return map[string]*Message{
		"oru_summary_cpb.hl7":         summary,
		"oru_summary_cpb_amended.hl7": must(BuildSummary(refHeader(2), refAmended())),
		"mdm_t02_document.hl7":        must(BuildDocument(refDocHeader(1), refDocument())),
		"mdm_t10_addendum.hl7":        must(BuildDocument(refDocHeader(2), refDocumentAddendum())),
		"pcd01_device.hl7":            must(BuildDeviceReport(refDeviceHeader(), refDeviceReport())),
		"ack_aa.hl7":                  must(BuildAck(ackHeader, summary, AA, nil)),
		"ack_ae.hl7": must(BuildAck(ackHeader, summary, AE, &AckError{
			Code: ErrUnknownKeyIdentifier, Text: "Encounter not found; message held for review"})),
	}
}

func TestGolden(t *testing.T) {
	for name, m := range goldenMessages(t) {
		t.Run(name, func(t *testing.T) {
			got, err := m.Encode()
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", name)
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("output differs from %s (run go test -update and review the diff):\n%s", path, lineDiff(want, got))
			}
			// The golden bytes parse back to the tree that was built, and
			// re-encode to the same bytes.
			back, err := Parse(want)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back, m) {
				t.Errorf("Parse(golden) differs from the built message")
			}
			again, _ := back.Encode()
			if !bytes.Equal(again, want) {
				t.Errorf("Encode(Parse(golden)) differs from golden")
			}
		})
	}
}

// TestGoldenLocalCodesListed checks that every 99PERF code in the golden
// messages is in LocalCodes, the table the interface specification is
// generated from.
func TestGoldenLocalCodesListed(t *testing.T) {
	listed := make(map[string]bool)
	for _, c := range LocalCodes(nil) {
		if listed[c.Code] {
			t.Errorf("local code %q listed twice", c.Code)
		}
		listed[c.Code] = true
		if c.Display == "" || c.Definition == "" || c.Use == "" || c.Group == "" {
			t.Errorf("local code %q is not fully described", c.Code)
		}
	}
	used := 0
	for name, m := range goldenMessages(t) {
		for _, s := range m.Segments {
			for fi, f := range s.Fields {
				for _, r := range f {
					for ci := 2; ci < len(r); ci += 3 { // CWE triplets: code^text^system
						if len(r[ci]) > 0 && r[ci][0] == SystemLocal {
							used++
							if code := r[ci-2]; len(code) == 0 || !listed[code[0]] {
								t.Errorf("%s %s-%d: local code %v not in LocalCodes", name, s.ID, fi+1, code)
							}
						}
					}
				}
			}
		}
	}
	if used < 40 {
		t.Errorf("only %d local codes found in the golden messages; the check is not looking", used)
	}
}

// lineDiff shows the segments that differ, one per line.
func lineDiff(want, got []byte) string {
	w := strings.Split(string(want), "\r")
	g := strings.Split(string(got), "\r")
	var b strings.Builder
	for i := 0; i < max(len(w), len(g)); i++ {
		var a, c string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			c = g[i]
		}
		if a != c {
			b.WriteString("- " + a + "\n+ " + c + "\n")
		}
	}
	return b.String()
}
