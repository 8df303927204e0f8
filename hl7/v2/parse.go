package v2

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// Limits bound what Parse accepts, so that hostile input cannot make it
// allocate without bound. Every element (field, repetition, component,
// subcomponent) costs a few dozen bytes in the tree, so the element count,
// not just the byte size, is what bounds memory.
type Limits struct {
	MaxBytes    int // whole message; default 16 MiB, the MLLP frame default
	MaxSegments int // default 100 000
	MaxElements int // delimiters in the message; default 1 Mi (some 25 000 OBX rows)
}

// DefaultLimits returns the limits Parse uses.
func DefaultLimits() Limits {
	return Limits{MaxBytes: 16 << 20, MaxSegments: 100_000, MaxElements: 1 << 20}
}

// ParseError reports why a message was rejected. It names the segment by
// position only: the content of a message never appears in an error.
type ParseError struct {
	Segment int    // 1-based; 0 for the message as a whole
	Reason  string // what is wrong, without content
}

func (e *ParseError) Error() string {
	if e.Segment == 0 {
		return "hl7: " + e.Reason
	}
	return fmt.Sprintf("hl7: segment %d: %s", e.Segment, e.Reason)
}

// ErrTooLarge is wrapped by the ParseError for input beyond the Limits.
var ErrTooLarge = errors.New("message exceeds the parser's limits")

// Parse parses one message with DefaultLimits.
func Parse(b []byte) (*Message, error) { return ParseLimits(b, DefaultLimits()) }

// ParseLimits parses one HL7 v2 message and returns it in canonical form.
//
// It is tolerant where senders commonly differ and strict elsewhere:
// segments may end in CR, LF or CRLF, blank lines are skipped and the last
// terminator may be missing; but the message must start with MSH and valid
// delimiters, hold exactly one MSH, use well-formed segment IDs, and contain
// no control characters other than tab and the terminators (they would be
// data corruption or an attempt to break MLLP framing). MSH-2 may carry the
// v2.7 truncation character as a fifth encoding character. Batches (FHS/BHS)
// are not accepted. Text is decoded (see Delimiters.Unescape) but its
// character set is not checked: MSH-18 is the receiver's business.
func ParseLimits(b []byte, lim Limits) (*Message, error) {
	if lim.MaxBytes > 0 && len(b) > lim.MaxBytes {
		return nil, &ParseError{Reason: ErrTooLarge.Error() + " (bytes)"}
	}
	if len(b) < 8 || string(b[:3]) != "MSH" {
		return nil, &ParseError{Reason: "a message must start with an MSH segment"}
	}
	enc := b[4:]
	if i := bytes.IndexAny(enc, string([]byte{b[3], '\r', '\n'})); i >= 0 {
		enc = enc[:i]
	}
	d, ok := delimitersFrom(b[3], string(enc))
	if !ok {
		return nil, &ParseError{Segment: 1, Reason: "MSH-1/MSH-2 must be four (or five) distinct punctuation delimiters"}
	}
	elements, segments := 0, 0
	for i, c := range b {
		switch c {
		case d.Field, d.Component, d.Repetition, d.Subcomponent:
			elements++
		case '\r', '\n':
			segments++
		case '\t':
		default:
			if c < 0x20 {
				return nil, &ParseError{Reason: fmt.Sprintf("control character 0x%02X at byte %d", c, i)}
			}
		}
	}
	// CRLF counts twice here; the exact segment count is checked below.
	if lim.MaxElements > 0 && elements > lim.MaxElements || lim.MaxSegments > 0 && segments > 2*lim.MaxSegments+2 {
		return nil, &ParseError{Reason: ErrTooLarge.Error() + " (elements or segments)"}
	}

	text := string(b) // one copy; every value is a substring of it or decoded from it
	m := &Message{Segments: make([]Segment, 0, min(segments+1, 1024))}
	for line := range splitLines(text) {
		if line == "" {
			continue
		}
		n := len(m.Segments) + 1
		if lim.MaxSegments > 0 && n > lim.MaxSegments {
			return nil, &ParseError{Reason: ErrTooLarge.Error() + " (segments)"}
		}
		seg, err := parseSegment(line, d, n == 1)
		if err != nil {
			err.Segment = n
			return nil, err
		}
		m.Segments = append(m.Segments, seg)
	}
	return m, nil
}

// splitLines yields the segments of text split on CR, LF or CRLF.
func splitLines(text string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for text != "" {
			i := strings.IndexAny(text, "\r\n")
			if i < 0 {
				yield(text)
				return
			}
			if !yield(text[:i]) {
				return
			}
			text = text[i+1:]
		}
	}
}

func parseSegment(line string, d Delimiters, first bool) (Segment, *ParseError) {
	id, rest, _ := strings.Cut(line, string(d.Field))
	if !validSegmentID(id) {
		return Segment{}, &ParseError{Reason: "invalid segment ID"}
	}
	if first != (id == "MSH") {
		if first {
			return Segment{}, &ParseError{Reason: "a message must start with an MSH segment"}
		}
		return Segment{}, &ParseError{Reason: "only the first segment may be MSH (batches are not accepted)"}
	}
	if len(id) == len(line) {
		return Segment{ID: id}, nil
	}
	fields := make([]Field, 0, strings.Count(rest, string(d.Field))+2)
	if first {
		enc, after, more := strings.Cut(rest, string(d.Field))
		fields = append(fields, Text(string(d.Field)), Text(enc))
		if !more {
			return Segment{ID: id, Fields: fields}, nil
		}
		rest = after
	}
	for f := range strings.SplitSeq(rest, string(d.Field)) {
		fields = append(fields, parseField(f, d))
	}
	return Segment{ID: id, Fields: trimFields(fields, first)}, nil
}

func parseField(s string, d Delimiters) Field {
	if s == "" {
		return nil
	}
	// Every slice is sized by counting its separators first: appending
	// would allocate about twice as much for a hostile run of delimiters.
	f := make(Field, 0, strings.Count(s, string(d.Repetition))+1)
	for r := range strings.SplitSeq(s, string(d.Repetition)) {
		var rep Repetition
		if r != "" {
			rep = make(Repetition, 0, strings.Count(r, string(d.Component))+1)
			for c := range strings.SplitSeq(r, string(d.Component)) {
				var comp Component
				if c != "" {
					comp = make(Component, 0, strings.Count(c, string(d.Subcomponent))+1)
					for sub := range strings.SplitSeq(c, string(d.Subcomponent)) {
						comp = append(comp, d.UnescapeValue(sub))
					}
				}
				rep = append(rep, trimComp(comp))
			}
		}
		f = append(f, trimRep(rep))
	}
	return trimField(f)
}
