package csvsafe

import (
	"bytes"
	"encoding/csv"
	"testing"
)

func TestCell(t *testing.T) {
	for in, want := range map[string]string{
		"":                               "",
		"OR-3":                           "OR-3",
		"=HYPERLINK(\"http://x\",\"y\")": "'=HYPERLINK(\"http://x\",\"y\")",
		"+1+cmd|' /C calc'!A0":           "'+1+cmd|' /C calc'!A0",
		"-2+3":                           "'-2+3",
		"@SUM(A1:A2)":                    "'@SUM(A1:A2)",
		"\tx":                            "'\tx",
		"\rx":                            "'\rx",
		"-1.5":                           "-1.5",
		"+4":                             "+4",
		"-":                              "-",
		"2026-01-10T08:00:00Z":           "2026-01-10T08:00:00Z",
		"1e-3":                           "1e-3",
	} {
		if got := Cell(in); got != want {
			t.Errorf("Cell(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestWriterRoundTrip(t *testing.T) {
	var b bytes.Buffer
	w := NewWriter(&b)
	if err := w.WriteAll([][]string{{"room", "value"}, {"=cmd", "-3.25"}}); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&b).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if rows[1][0] != "'=cmd" || rows[1][1] != "-3.25" {
		t.Fatalf("rows %q", rows)
	}
}

func FuzzCell(f *testing.F) {
	for _, s := range []string{"", "=1", "-1", "@a", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c := Cell(s)
		if c != s && c != "'"+s {
			t.Fatalf("Cell(%q) = %q: only a leading apostrophe may be added", s, c)
		}
		if c != "" && c[0] != '\'' && len(c) > 0 && (c[0] == '=' || c[0] == '@' || c[0] == '\t' || c[0] == '\r') {
			t.Fatalf("Cell(%q) = %q still starts with a formula character", s, c)
		}
	})
}
