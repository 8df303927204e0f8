package v2

import "strings"

// Delimiters are the separator characters of a message, taken from MSH-1
// and MSH-2. This package always writes the standard set (StdDelimiters);
// the parser accepts any valid set, because HL7 lets a sender choose.
type Delimiters struct {
	Field        byte // MSH-1, normally |
	Component    byte // normally ^
	Repetition   byte // normally ~
	Escape       byte // normally \
	Subcomponent byte // normally &
	// Truncation is the fifth encoding character that HL7 v2.7 added
	// (normally #), or 0 when MSH-2 has four. This package writes v2.6 and
	// never sets it, but accepts it from receivers on newer versions.
	Truncation byte
}

// StdDelimiters returns the delimiters HL7 recommends and IHE PCD requires:
// | ^ ~ \ &.
func StdDelimiters() Delimiters {
	return Delimiters{Field: '|', Component: '^', Repetition: '~', Escape: '\\', Subcomponent: '&'}
}

// EncodingCharacters returns MSH-2: component, repetition, escape and
// subcomponent separator, in that order.
func (d Delimiters) EncodingCharacters() string {
	enc := []byte{d.Component, d.Repetition, d.Escape, d.Subcomponent}
	if d.Truncation != 0 {
		enc = append(enc, d.Truncation)
	}
	return string(enc)
}

// delimitersFrom builds Delimiters from MSH-1 and MSH-2, reporting whether
// they are well formed.
func delimitersFrom(field byte, enc string) (Delimiters, bool) {
	if len(enc) != 4 && len(enc) != 5 {
		return Delimiters{}, false
	}
	d := Delimiters{Field: field, Component: enc[0], Repetition: enc[1], Escape: enc[2], Subcomponent: enc[3]}
	if len(enc) == 5 {
		d.Truncation = enc[4]
	}
	return d, d.valid()
}

// valid reports whether the delimiters are usable: distinct printable ASCII
// punctuation. Letters, digits and spaces would be ambiguous with data, and
// CR/LF end segments.
func (d Delimiters) valid() bool {
	all := []byte{d.Field, d.Component, d.Repetition, d.Escape, d.Subcomponent}
	if d.Truncation != 0 {
		all = append(all, d.Truncation)
	}
	for i, c := range all {
		if c <= ' ' || c >= 0x7f || isAlnum(c) {
			return false
		}
		for _, o := range all[:i] {
			if o == c {
				return false
			}
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z'
}

// Escape returns s escaped for use as one HL7 value with the standard
// delimiters. See Delimiters.EscapeValue.
func Escape(s string) string { return StdDelimiters().EscapeValue(s) }

// Unescape decodes the escape sequences in one HL7 value written with the
// standard delimiters. See Delimiters.Unescape.
func Unescape(s string) string { return StdDelimiters().UnescapeValue(s) }

// EscapeValue returns s with every delimiter replaced by its escape sequence
// (\F\ \S\ \T\ \R\ \E\), a line feed by \.br\ and any other C0 control
// character by \Xhh\, so that the value can never end a field, a segment or
// an MLLP frame (0x0B, 0x1C). Tab and all bytes from 0x20 up, including UTF-8
// sequences, pass through.
//
// The escape character is handled in the same single pass as the others,
// which is what "escape \ first" achieves in a replace-per-delimiter
// implementation: a backslash is never mistaken for part of a sequence this
// function wrote.
func (d Delimiters) EscapeValue(s string) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if d.needsEscape(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 5*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !d.needsEscape(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte(d.Escape)
		switch {
		case d.Truncation != 0 && c == d.Truncation:
			b.WriteByte('P')
		case c == d.Field:
			b.WriteByte('F')
		case c == d.Component:
			b.WriteByte('S')
		case c == d.Subcomponent:
			b.WriteByte('T')
		case c == d.Repetition:
			b.WriteByte('R')
		case c == d.Escape:
			b.WriteByte('E')
		case c == '\n':
			b.WriteString(".br")
		default:
			const hex = "0123456789ABCDEF"
			b.WriteByte('X')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
		}
		b.WriteByte(d.Escape)
	}
	return b.String()
}

func (d Delimiters) needsEscape(c byte) bool {
	switch c {
	case d.Field, d.Component, d.Subcomponent, d.Repetition, d.Escape:
		return true
	case '\t':
		return false
	}
	return c < 0x20 || d.Truncation != 0 && c == d.Truncation
}

// UnescapeValue decodes one HL7 value: \F\ \S\ \T\ \R\ \E\ become the
// delimiters, \.br\ a line feed, \Xhh..\ the bytes it spells. Any other
// sequence (highlighting, character-set switches, local \Z..\) and a lone
// escape character are kept as they are, so no text is lost.
//
// Decoding is one left-to-right pass, so \E\ is decoded "last" in the sense
// that matters: the backslash it yields never starts another sequence.
func (d Delimiters) UnescapeValue(s string) string {
	i := strings.IndexByte(s, d.Escape)
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i >= 0 {
		b.WriteString(s[:i])
		s = s[i+1:]
		j := strings.IndexByte(s, d.Escape)
		if j < 0 { // unterminated: keep the escape character as text
			b.WriteByte(d.Escape)
			break
		}
		if !d.decodeSeq(&b, s[:j]) {
			b.WriteByte(d.Escape)
			b.WriteString(s[:j])
			b.WriteByte(d.Escape)
		}
		s = s[j+1:]
		i = strings.IndexByte(s, d.Escape)
	}
	b.WriteString(s)
	return b.String()
}

// decodeSeq writes the meaning of the sequence between two escape
// characters and reports whether it was one this package understands.
func (d Delimiters) decodeSeq(b *strings.Builder, seq string) bool {
	switch seq {
	case "F":
		b.WriteByte(d.Field)
	case "S":
		b.WriteByte(d.Component)
	case "T":
		b.WriteByte(d.Subcomponent)
	case "R":
		b.WriteByte(d.Repetition)
	case "E":
		b.WriteByte(d.Escape)
	case "P":
		if d.Truncation == 0 {
			return false
		}
		b.WriteByte(d.Truncation)
	case ".br":
		b.WriteByte('\n')
	default:
		if len(seq) < 3 || seq[0] != 'X' || len(seq)%2 != 1 {
			return false
		}
		hex := seq[1:]
		for k := 0; k < len(hex); k++ {
			if unhex(hex[k]) < 0 {
				return false
			}
		}
		for k := 0; k < len(hex); k += 2 {
			b.WriteByte(byte(unhex(hex[k])<<4 | unhex(hex[k+1])))
		}
	}
	return true
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	}
	return -1
}
