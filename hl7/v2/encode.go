package v2

import (
	"errors"
	"fmt"
)

// Encode writes the message in HL7 v2 encoding: segments ending in CR,
// values escaped, trailing empty elements dropped. The delimiters are those
// in MSH-1 and MSH-2 (this package's builders always use StdDelimiters).
// It fails on a message Parse would reject: no leading MSH, invalid
// delimiters, a malformed segment ID or a second MSH.
func (m *Message) Encode() ([]byte, error) {
	d, err := m.delimiters()
	if err != nil {
		return nil, err
	}
	size := 0
	for _, s := range m.Segments {
		size += 4 + 8*len(s.Fields)
	}
	b := make([]byte, 0, size)
	for i := range m.Segments {
		s := &m.Segments[i]
		if !validSegmentID(s.ID) {
			return nil, fmt.Errorf("hl7: segment %d: invalid segment ID", i+1)
		}
		if i > 0 && s.ID == "MSH" {
			return nil, fmt.Errorf("hl7: segment %d: only the first segment may be MSH", i+1)
		}
		segStart := len(b)
		b = append(b, s.ID...)
		first := 0
		if i == 0 {
			b = append(b, d.Field)
			b = append(b, s.Fields[1].Value()...)
			first = 2
		}
		for _, f := range s.Fields[first:] {
			b = append(b, d.Field)
			b = appendField(b, d, f)
		}
		b = trimTrailing(b, d.Field, segStart+len(s.ID))
		b = append(b, '\r')
	}
	return b, nil
}

// delimiters reads and checks MSH-1 and MSH-2 of the first segment.
func (m *Message) delimiters() (Delimiters, error) {
	if len(m.Segments) == 0 || m.Segments[0].ID != "MSH" {
		return Delimiters{}, errors.New("hl7: a message must start with an MSH segment")
	}
	msh := &m.Segments[0]
	fs := msh.Field(1).Value()
	if len(fs) != 1 {
		return Delimiters{}, errors.New("hl7: MSH-1 must be one character")
	}
	d, ok := delimitersFrom(fs[0], msh.Field(2).Value())
	if !ok {
		return Delimiters{}, errors.New("hl7: MSH-2 must hold four (or five) encoding characters, all distinct punctuation")
	}
	return d, nil
}

func appendField(b []byte, d Delimiters, f Field) []byte {
	start := len(b)
	for i, r := range f {
		if i > 0 {
			b = append(b, d.Repetition)
		}
		rs := len(b)
		for j, c := range r {
			if j > 0 {
				b = append(b, d.Component)
			}
			cs := len(b)
			for k, sub := range c {
				if k > 0 {
					b = append(b, d.Subcomponent)
				}
				b = append(b, d.EscapeValue(sub)...)
			}
			b = trimTrailing(b, d.Subcomponent, cs)
		}
		b = trimTrailing(b, d.Component, rs)
	}
	return trimTrailing(b, d.Repetition, start)
}

// trimTrailing drops trailing separators c written after position from.
// Escaped values never contain a raw separator (an escape sequence ends in
// the escape character), so trailing separators always stand for trailing
// empty elements, which canonical HL7 omits.
func trimTrailing(b []byte, c byte, from int) []byte {
	n := len(b)
	for n > from && b[n-1] == c {
		n--
	}
	return b[:n]
}

// validSegmentID reports whether id is three upper-case letters or digits
// starting with a letter (Z segments included).
func validSegmentID(id string) bool {
	if len(id) != 3 || id[0] < 'A' || id[0] > 'Z' {
		return false
	}
	for i := 1; i < 3; i++ {
		c := id[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
