package v2

import (
	"bytes"
	"reflect"
	"testing"
)

var parseSeeds = []string{
	"MSH|^~\\&|APP|FAC|||20261128091500+0100||ORU^R01^ORU_R01|C1|P|2.6|||AL|NE||UNICODE UTF-8\rPID|||1^^^H&1.2&ISO^MR||Müller^José^^^^^L\rOBX|1|NM|x^y^99PERF|1.1.1.1|1.5|^^^Cel^Cel^UCUM\r",
	"MSH|^~\\&|A\nNTE|1||a\\.br\\b\\X0D0A\\c\\E\\\\F\\\\S\\\\T\\\\R\\\n",
	"MSH|^~\\&#|A\r\nNTE|1||a\\P\\\r\n",
	"MSH#!*$%#A!B*C%D#E$F$\r",
	"MSH|^~\\&\rMSA|AA|X\rERR|||207^Application internal error^HL70357|E\r",
	"MSH|^~\\&|||||||||||||||||||||\rPID|~~~|^^^|&&&\r",
	"MSH|^~\\&|\\X\\|\\Xzz\\|\\H\\\\N\\|\\\r",
}

// FuzzParse feeds arbitrary bytes to the parser. It must never panic, and
// whatever it accepts must encode and parse back to the same tree: the
// canonical form is a fixed point.
func FuzzParse(f *testing.F) {
	for _, s := range parseSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			return
		}
		out, err := m.Encode()
		if err != nil {
			t.Fatalf("parsed message does not encode: %v", err)
		}
		m2, err := Parse(out)
		if err != nil {
			t.Fatalf("encoded message does not parse: %v\n%q", err, out)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("parse(encode(parse(b))) != parse(b)\n%q\n%q", b, out)
		}
		out2, err := m2.Encode()
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("encoding is not stable: %q vs %q", out, out2)
		}
	})
}

// FuzzRoundTrip builds messages from arbitrary strings placed at every level
// of the tree and checks that Parse(Encode(m)) equals Canonical(m) and that
// Encode(Parse(b)) reproduces what Encode wrote.
func FuzzRoundTrip(f *testing.F) {
	f.Add("Müller", "|^&~\\", "line1\nline2\r\n", uint8(0))
	f.Add("", "", "", uint8(7))
	f.Add("\\E\\", "\\.br\\", "\x0b\x1c\x00\t", uint8(3))
	f.Add("\xff\xfe", "#", " ", uint8(255))
	f.Fuzz(func(t *testing.T, a, b, c string, shape uint8) {
		m := &Message{Segments: []Segment{
			{ID: "MSH", Fields: []Field{Text("|"), Text(`^~\&`), Comps(a, b), nil, nil, nil, Text(c), nil, Comps("ORU", "R01", "ORU_R01"), Text(a)}},
			{ID: "PID", Fields: []Field{nil, nil,
				{Repetition{Component{a}, nil, nil, Subs(b, c, a)}},
				nil,
				Repeat(Comps(a, b, c), Comps(c), Text(b)),
			}},
			{ID: "NTE", Fields: []Field{Text("1"), nil, Text(a + b + c)}},
			{ID: "ZPF", Fields: []Field{{Repetition{Component{a, b}, Component{c}}, nil, Repetition{Component{"", c}}}}},
		}}
		// Vary where the empty elements fall, so trimming is exercised.
		if shape&1 != 0 {
			m.Segments[1].Fields = append(m.Segments[1].Fields, nil, Text(""), Comps("", ""))
		}
		if shape&2 != 0 {
			m.Segments = append(m.Segments, Segment{ID: "OBX"})
		}
		if shape&4 != 0 {
			m.Segments[3].Fields = append(m.Segments[3].Fields, Field{Repetition{Component{c, "", ""}, nil}})
		}
		out, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if bytes.ContainsAny(out, "\n\x00\x0b\x1c") || bytes.Count(out, []byte{'\r'}) != len(m.Segments) {
			t.Fatalf("encoded values leak terminators or framing bytes: %q", out)
		}
		back, err := Parse(out)
		if err != nil {
			t.Fatalf("parse: %v\n%q", err, out)
		}
		if want := Canonical(m); !reflect.DeepEqual(back, want) {
			t.Fatalf("parse(encode(m)) != canonical(m)\n got %#v\nwant %#v", back, want)
		}
		again, err := back.Encode()
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("encode(parse(b)) != b: %q vs %q", again, out)
		}
	})
}

// FuzzEscape checks that unescaping undoes escaping for every string.
func FuzzEscape(f *testing.F) {
	f.Add("a|b^c&d~e\\f\ng\rh\x00")
	f.Fuzz(func(t *testing.T, s string) {
		if got := Unescape(Escape(s)); got != s {
			t.Fatalf("Unescape(Escape(%q)) = %q", s, got)
		}
		_ = Unescape(s) // must not panic on anything
	})
}
