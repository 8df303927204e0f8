package v2

import (
	"errors"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

func TestParseStructure(t *testing.T) {
	in := "MSH|^~\\&|APP^1.2.3^ISO|FAC|||20261128091500+0100||ORU^R01^ORU_R01|CTRL1|P|2.6\r" +
		"PID|||MRN1^^^H\\T\\A&1.2&ISO^MR||M\\S\\ller^J\\F\\o~Second^Name\r" +
		"NTE|1||a\\.br\\b \\E\\ c\r"
	m, err := Parse([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	checks := map[string]string{
		"MSH-1":     "|",
		"MSH-2":     `^~\&`,
		"MSH-3":     "APP",
		"MSH-3.2":   "1.2.3",
		"MSH-9.3":   "ORU_R01",
		"MSH-10":    "CTRL1",
		"MSH-12":    "2.6",
		"PID-3":     "MRN1",
		"PID-3.4":   "H&A",
		"PID-3.4.2": "1.2",
		"PID-3.5":   "MR",
		"PID-5":     "M^ller",
		"PID-5.2":   "J|o",
		"NTE-3":     "a\nb \\ c",
		"PID-99":    "",
		"XYZ-1":     "",
		"bad":       "",
	}
	for path, want := range checks {
		if got := m.Get(path); got != want {
			t.Errorf("%s = %q, want %q", path, got, want)
		}
	}
	if got := m.Segment("PID").Field(5).Get(2, 1, 1); got != "Second" {
		t.Errorf("PID-5(2).1 = %q", got)
	}
	out, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != in {
		t.Errorf("re-encoded\n%q\nwant\n%q", out, in)
	}
}

func TestParseTerminators(t *testing.T) {
	want := "MSH|^~\\&|A\rPID|||1\rOBX|1\r"
	for _, in := range []string{
		"MSH|^~\\&|A\rPID|||1\rOBX|1\r",
		"MSH|^~\\&|A\nPID|||1\nOBX|1\n",
		"MSH|^~\\&|A\r\nPID|||1\r\nOBX|1\r\n",
		"MSH|^~\\&|A\r\nPID|||1\r\n\r\nOBX|1",
		"MSH|^~\\&|A||\rPID|||1^^~\rOBX|1|||\r",
	} {
		m, err := Parse([]byte(in))
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		out, err := m.Encode()
		if err != nil || string(out) != want {
			t.Errorf("%q re-encoded as %q (%v)", in, out, err)
		}
	}
}

func TestParseRejects(t *testing.T) {
	for name, in := range map[string]string{
		"empty":             "",
		"not MSH":           "PID|||1\r",
		"short MSH":         "MSH|^~\\",
		"duplicate delims":  "MSH|^^\\&|A\r",
		"letter delimiter":  "MSH|^~\\A|A\r",
		"six enc chars":     "MSH|^~\\&#!|A\r",
		"three enc chars":   "MSH|^~\\|A\r",
		"second MSH":        "MSH|^~\\&|A\rMSH|^~\\&|B\r",
		"bad segment ID":    "MSH|^~\\&|A\rpid|1\r",
		"long segment ID":   "MSH|^~\\&|A\rPIDX|1\r",
		"NUL":               "MSH|^~\\&|A\x00\r",
		"MLLP start":        "MSH|^~\\&|A\rPID|\x0b\r",
		"MLLP end":          "MSH|^~\\&|A\rPID|\x1c\r",
		"batch header":      "FHS|^~\\&\rMSH|^~\\&|A\r",
		"leading blank":     "\rMSH|^~\\&|A\r",
		"no segment ID":     "MSH|^~\\&|A\r|x\r",
		"digit first in ID": "MSH|^~\\&|A\r1AB|x\r",
	} {
		if _, err := Parse([]byte(in)); err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), "A\x00") {
			t.Errorf("%s: error echoes content: %v", name, err)
		}
	}
}

func TestParseTruncationCharacter(t *testing.T) {
	in := "MSH|^~\\&#|A\rNTE|1||a\\P\\b#c\r"
	m, err := Parse([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Get("NTE-3"); got != "a#b#c" {
		t.Errorf("NTE-3 = %q", got)
	}
	out, err := m.Encode()
	if err != nil || string(out) != "MSH|^~\\&#|A\rNTE|1||a\\P\\b\\P\\c\r" {
		t.Errorf("Encode = %q, %v", out, err)
	}
}

func TestParseLimits(t *testing.T) {
	lim := Limits{MaxBytes: 1000, MaxSegments: 3, MaxElements: 50}
	for name, in := range map[string]string{
		"bytes":    "MSH|^~\\&|" + strings.Repeat("a", 1000),
		"segments": "MSH|^~\\&\rPID\rPID\rPID\r",
		"elements": "MSH|^~\\&|" + strings.Repeat("^", 60),
	} {
		_, err := ParseLimits([]byte(in), lim)
		var pe *ParseError
		if !errors.As(err, &pe) || !strings.Contains(pe.Reason, ErrTooLarge.Error()) {
			t.Errorf("%s: got %v", name, err)
		}
	}
	for _, ok := range []string{"MSH|^~\\&\rPID\rPID\r", "MSH|^~\\&\r\nPID\r\nPID\r\n"} {
		if _, err := ParseLimits([]byte(ok), lim); err != nil {
			t.Errorf("within limits: %q: %v", ok, err)
		}
	}
}

func TestCanonical(t *testing.T) {
	m := &Message{Segments: []Segment{
		{ID: "MSH", Fields: []Field{Text("|"), Text(`^~\&`), Text("A"), {}, {Repetition{Component{""}}}}},
		{ID: "PID", Fields: []Field{nil, nil, {Repetition{Component{"1"}, Component{}, Component{"", ""}}, Repetition{}}, Text(""), {}}},
	}}
	want := &Message{Segments: []Segment{
		{ID: "MSH", Fields: []Field{Text("|"), Text(`^~\&`), Text("A")}},
		{ID: "PID", Fields: []Field{nil, nil, Text("1")}},
	}}
	got := Canonical(m)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Canonical = %#v", got)
	}
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != "MSH|^~\\&|A\rPID|||1\r" {
		t.Errorf("Encode = %q", b)
	}
	back, err := Parse(b)
	if err != nil || !reflect.DeepEqual(back, want) {
		t.Errorf("Parse(Encode) = %#v, %v", back, err)
	}
}

func TestEncodeRejects(t *testing.T) {
	for name, m := range map[string]*Message{
		"empty":      {},
		"no MSH":     {Segments: []Segment{{ID: "PID"}}},
		"no delims":  {Segments: []Segment{{ID: "MSH"}}},
		"bad delims": {Segments: []Segment{{ID: "MSH", Fields: []Field{Text("|"), Text("^^\\&")}}}},
		"bad ID":     {Segments: []Segment{{ID: "MSH", Fields: []Field{Text("|"), Text(`^~\&`)}}, {ID: "P|D"}}},
		"second MSH": {Segments: []Segment{{ID: "MSH", Fields: []Field{Text("|"), Text(`^~\&`)}}, {ID: "MSH", Fields: []Field{Text("|"), Text(`^~\&`)}}}},
		"lowercase":  {Segments: []Segment{{ID: "MSH", Fields: []Field{Text("|"), Text(`^~\&`)}}, {ID: "pid"}}},
		"long MSH-1": {Segments: []Segment{{ID: "MSH", Fields: []Field{Text("||"), Text(`^~\&`)}}}},
	} {
		if _, err := m.Encode(); err == nil {
			t.Errorf("%s: encoded", name)
		}
	}
}

// TestParseAllocationBounded checks the worst cases the default limits
// allow: a message that is nothing but delimiters makes the most tree per
// byte. Whatever the input, Parse allocates a bounded amount, and input
// past the limits is refused before any tree is built.
func TestParseAllocationBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates tens of MB")
	}
	n := DefaultLimits().MaxElements - 16
	alloc := func(in []byte) (uint64, error) {
		var a, b runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&a)
		_, err := Parse(in)
		runtime.ReadMemStats(&b)
		return b.TotalAlloc - a.TotalAlloc, err
	}
	for _, body := range []string{strings.Repeat("^", n), strings.Repeat("~", n), strings.Repeat("|", n),
		strings.Repeat("&", n), strings.Repeat("a^", n), strings.Repeat("\rZZZ", DefaultLimits().MaxSegments-2)} {
		got, err := alloc([]byte("MSH|^~\\&|" + body))
		if err != nil {
			t.Fatalf("%q...: %v", body[:2], err)
		}
		if got > 64<<20 {
			t.Errorf("%q... (%d bytes) allocated %d MB", body[:2], len(body), got>>20)
		}
	}
	over := []byte("MSH|^~\\&|" + strings.Repeat("^", n+100))
	got, err := alloc(over)
	if err == nil || got > uint64(2*len(over)) {
		t.Errorf("over the element limit: err %v, allocated %d bytes for %d", err, got, len(over))
	}
}
