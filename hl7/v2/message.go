package v2

import (
	"strconv"
	"strings"
)

// Message is an HL7 v2 message: its segments in order, the first being MSH.
// Every string in the tree is decoded text; escaping happens only when the
// message is encoded, so callers never handle escape sequences.
//
// The tree has one canonical form, which Parse returns and Encode writes:
// an empty element is nil, and no element ends in empty children (an HL7
// encoder drops trailing delimiters, so they carry no information). Canonical
// returns that form of any tree; Parse(Encode(m)) equals Canonical(m).
type Message struct {
	Segments []Segment // in message order, MSH first
}

// Segment is one segment: its three-character ID and its fields. Fields[0]
// is field 1, so Field(n) reads as the HL7 name SEG-n. In MSH, field 1 is
// the field separator and field 2 the encoding characters, both kept as
// they appear and never escaped.
type Segment struct {
	ID     string  // e.g. "PID"
	Fields []Field // Fields[n-1] is field n
}

// Field is one field: its repetitions (separated by ~).
type Field []Repetition

// Repetition is one occurrence of a field: its components (separated by ^).
type Repetition []Component

// Component is one component: its subcomponents (separated by &), each a
// decoded string.
type Component []string

// Text returns a field holding the single value s (nil when s is empty).
func Text(s string) Field {
	if s == "" {
		return nil
	}
	return Field{Repetition{Component{s}}}
}

// Comps returns a field of one repetition with the given components, each a
// single value. Trailing empty components are dropped.
func Comps(cs ...string) Field {
	r := make(Repetition, len(cs))
	for i, c := range cs {
		if c != "" {
			r[i] = Component{c}
		}
	}
	r = trimRep(r)
	if r == nil {
		return nil
	}
	return Field{r}
}

// Subs returns a component made of subcomponents, for composite components
// such as an assigning authority (HD inside CX). Trailing empty
// subcomponents are dropped.
func Subs(ss ...string) Component {
	return trimComp(append(Component(nil), ss...))
}

// Repeat joins fields into one field with a repetition for each non-empty
// input, e.g. two patient names.
func Repeat(fs ...Field) Field {
	var out Field
	for _, f := range fs {
		out = append(out, f...)
	}
	return trimField(out)
}

// Field returns field n (1-based, as in PID-3), or nil when absent.
func (s *Segment) Field(n int) Field {
	if s == nil || n < 1 || n > len(s.Fields) {
		return nil
	}
	return s.Fields[n-1]
}

// SetField sets field n (1-based), growing the segment as needed.
func (s *Segment) SetField(n int, f Field) {
	if n < 1 {
		return
	}
	for len(s.Fields) < n {
		s.Fields = append(s.Fields, nil)
	}
	s.Fields[n-1] = f
}

// Value returns the first subcomponent of the first component of the first
// repetition: the whole value of a simple field.
func (f Field) Value() string { return f.Get(1, 1, 1) }

// Component returns component c (1-based) of the first repetition, first
// subcomponent.
func (f Field) Component(c int) string { return f.Get(1, c, 1) }

// Get returns repetition r, component c, subcomponent s (all 1-based), or
// "" when absent.
func (f Field) Get(r, c, s int) string {
	if r < 1 || r > len(f) {
		return ""
	}
	rep := f[r-1]
	if c < 1 || c > len(rep) {
		return ""
	}
	comp := rep[c-1]
	if s < 1 || s > len(comp) {
		return ""
	}
	return comp[s-1]
}

// Segment returns the first segment with the given ID, or nil.
func (m *Message) Segment(id string) *Segment {
	for i := range m.Segments {
		if m.Segments[i].ID == id {
			return &m.Segments[i]
		}
	}
	return nil
}

// All returns every segment with the given ID, in order.
func (m *Message) All(id string) []*Segment {
	var out []*Segment
	for i := range m.Segments {
		if m.Segments[i].ID == id {
			out = append(out, &m.Segments[i])
		}
	}
	return out
}

// Get returns the value at a path such as "MSH-10", "PID-3.4" or
// "PID-3.4.2" (segment-field[.component[.subcomponent]], first occurrence of
// the segment, first repetition), or "" when absent or malformed.
func (m *Message) Get(path string) string {
	id, rest, ok := strings.Cut(path, "-")
	if !ok {
		return ""
	}
	idx := [3]int{0, 1, 1}
	for i, p := range strings.SplitN(rest, ".", 3) {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 {
			return ""
		}
		idx[i] = n
	}
	return m.Segment(id).Field(idx[0]).Get(1, idx[1], idx[2])
}

// ControlID returns MSH-10, the message control ID.
func (m *Message) ControlID() string { return m.Get("MSH-10") }

// Canonical returns the canonical form of m (see Message): empty elements
// become nil and trailing empty elements are dropped at every level. The
// MSH field separator and encoding characters are kept as they are.
func Canonical(m *Message) *Message {
	out := &Message{Segments: make([]Segment, len(m.Segments))}
	for i, s := range m.Segments {
		fs := make([]Field, len(s.Fields))
		for j, f := range s.Fields {
			fs[j] = trimField(cloneField(f))
		}
		out.Segments[i] = Segment{ID: s.ID, Fields: trimFields(fs, s.ID == "MSH")}
	}
	return out
}

func cloneField(f Field) Field {
	if f == nil {
		return nil
	}
	out := make(Field, len(f))
	for i, r := range f {
		if r != nil {
			out[i] = make(Repetition, len(r))
			for j, c := range r {
				if c != nil {
					out[i][j] = append(Component(nil), c...)
				}
			}
		}
	}
	return out
}

// trimComp drops trailing empty subcomponents; an empty component is nil.
func trimComp(c Component) Component {
	n := len(c)
	for n > 0 && c[n-1] == "" {
		n--
	}
	if n == 0 {
		return nil
	}
	return c[:n:n]
}

func trimRep(r Repetition) Repetition {
	for i := range r {
		r[i] = trimComp(r[i])
	}
	n := len(r)
	for n > 0 && r[n-1] == nil {
		n--
	}
	if n == 0 {
		return nil
	}
	return r[:n:n]
}

func trimField(f Field) Field {
	for i := range f {
		f[i] = trimRep(f[i])
	}
	n := len(f)
	for n > 0 && f[n-1] == nil {
		n--
	}
	if n == 0 {
		return nil
	}
	return f[:n:n]
}

// trimFields drops trailing empty fields; the MSH header keeps its first
// two fields, which are the delimiters themselves.
func trimFields(fs []Field, msh bool) []Field {
	n := len(fs)
	for n > 0 && fs[n-1] == nil && !(msh && n <= 2) {
		n--
	}
	if n == 0 {
		return nil
	}
	return fs[:n:n]
}
