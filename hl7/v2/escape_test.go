package v2

import "testing"

func TestEscape(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"plain text", "plain text"},
		{"a|b", `a\F\b`},
		{"a^b", `a\S\b`},
		{"a&b", `a\T\b`},
		{"a~b", `a\R\b`},
		{`a\b`, `a\E\b`},
		{`\F\`, `\E\F\E\`}, // a literal escape sequence must survive as text
		{"|^&~\\", `\F\\S\\T\\R\\E\`},
		{"line 1\nline 2", `line 1\.br\line 2`},
		{"cr\rhere", `cr\X0D\here`},
		{"mllp \x0b \x1c", `mllp \X0B\ \X1C\`},
		{"nul \x00", `nul \X00\`},
		{"tab\tkept", "tab\tkept"},
		{"Łukasz Żółć", "Łukasz Żółć"},
	} {
		if got := Escape(tc.in); got != tc.want {
			t.Errorf("Escape(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if got := Unescape(tc.want); got != tc.in {
			t.Errorf("Unescape(%q) = %q, want %q", tc.want, got, tc.in)
		}
	}
}

func TestUnescapeForeign(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`\X41424344\`, "ABCD"},
		{`\x0d\`, `\x0d\`},           // lower-case X is not a hex escape
		{`\X4\`, `\X4\`},             // odd number of digits: kept
		{`\XZZ\`, `\XZZ\`},           // not hex: kept
		{`\H\bold\N\`, `\H\bold\N\`}, // highlighting is kept as text, not lost
		{`\.sp\`, `\.sp\`},
		{`unterminated \F`, `unterminated \F`},
		{`\\`, `\\`},
		{`\E\F\`, `\F\`}, // \E\ yields a backslash that starts nothing
		{`\E\\F\`, `\|`},
		{`\Zlocal\`, `\Zlocal\`},
	} {
		if got := Unescape(tc.in); got != tc.want {
			t.Errorf("Unescape(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestCustomDelimiters(t *testing.T) {
	d := Delimiters{Field: '#', Component: '!', Repetition: '*', Escape: '$', Subcomponent: '%'}
	if !d.valid() {
		t.Fatal("custom delimiters rejected")
	}
	in := "a#b!c*d$e%f|^~\\&"
	enc := d.EscapeValue(in)
	if enc != `a$F$b$S$c$R$d$E$e$T$f|^~\&` {
		t.Errorf("EscapeValue = %q", enc)
	}
	if got := d.UnescapeValue(enc); got != in {
		t.Errorf("UnescapeValue = %q", got)
	}
	for _, bad := range []Delimiters{
		{Field: '|', Component: '|', Repetition: '~', Escape: '\\', Subcomponent: '&'},
		{Field: 'A', Component: '^', Repetition: '~', Escape: '\\', Subcomponent: '&'},
		{Field: ' ', Component: '^', Repetition: '~', Escape: '\\', Subcomponent: '&'},
		{Field: '\r', Component: '^', Repetition: '~', Escape: '\\', Subcomponent: '&'},
	} {
		if bad.valid() {
			t.Errorf("%q accepted", []byte{bad.Field, bad.Component, bad.Repetition, bad.Escape, bad.Subcomponent})
		}
	}
}
