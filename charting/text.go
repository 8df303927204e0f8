package charting

import (
	"fmt"
	"reflect"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Text rules. Every text the record stores is checked by these, for every
// store alike, so whatever one store accepted the other imports: PostgreSQL
// cannot store U+0000 in text, SQLite can, and a record that moved between
// them must not fail half-way. Control characters have no place in
// clinical text (they hide content on screens and in HL7 messages, where a
// CR ends a segment), except line breaks and tabs in free text.

// Length limits of text fields that have no rule of their own.
const (
	MaxLineLen = 1000 // one-line text: names, codes, identifiers
	MaxTextLen = 8000 // free text: notes, comments, reasons
)

// multilineFields are the JSON (and proto) field names whose text may span
// lines.
var multilineFields = map[string]bool{"text": true, "comment": true, "reason": true, "description": true}

// Multiline reports whether a field of this name may hold line breaks.
func Multiline(name string) bool { return multilineFields[name] }

// TextProblem returns what is wrong with s as text of a field, or "".
func TextProblem(s string, max int, multiline bool) string {
	if !utf8.ValidString(s) {
		return "must be valid UTF-8"
	}
	n := 0
	for _, r := range s {
		n++
		switch {
		case r == 0:
			return "must not contain NUL characters"
		case multiline && (r == '\n' || r == '\r' || r == '\t'):
		case unicode.IsControl(r):
			if multiline {
				return fmt.Sprintf("must not contain control characters (U+%04X); line breaks and tabs are allowed", r)
			}
			return fmt.Sprintf("must be one line without control characters (U+%04X)", r)
		}
	}
	if max > 0 && n > max {
		return fmt.Sprintf("must be at most %d characters", max)
	}
	return ""
}

// CheckText adds a violation when s breaks the text rules.
func CheckText(v *Violations, field, s string, max int, multiline bool) {
	if p := TextProblem(s, max, multiline); p != "" {
		v.Add(field, "%s", p)
	}
}

// checkLen checks a one-line text field with its own length limit.
func checkLen(v *Violations, field, s string, max int) {
	CheckText(v, field, s, max, Multiline(lastName(field)))
}

func lastName(field string) string {
	if i := strings.LastIndexByte(field, '.'); i >= 0 {
		field = field[i+1:]
	}
	if i := strings.IndexByte(field, '['); i >= 0 {
		field = field[:i]
	}
	return field
}

// checkAllText applies the text rules to every string reachable from x
// (structs, pointers, slices), naming each by its JSON path under prefix.
// Fields with a stricter rule of their own are checked again there; this
// is the floor every stored text stands on, so a field added later cannot
// escape it.
func checkAllText(v *Violations, prefix string, x any) {
	walkText(v, prefix, reflect.ValueOf(x), "")
}

func walkText(v *Violations, path string, x reflect.Value, name string) {
	switch x.Kind() {
	case reflect.String:
		max := MaxLineLen
		if Multiline(name) {
			max = MaxTextLen
		}
		CheckText(v, path, x.String(), max, Multiline(name))
	case reflect.Pointer, reflect.Interface:
		if !x.IsNil() {
			walkText(v, path, x.Elem(), name)
		}
	case reflect.Slice, reflect.Array:
		for i := range x.Len() {
			walkText(v, fieldIndex(path, i), x.Index(i), name)
		}
	case reflect.Struct:
		t := x.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if !f.IsExported() || tag == "-" {
				continue
			}
			if tag == "" {
				tag = strings.ToLower(f.Name)
			}
			walkText(v, joinField(path, tag), x.Field(i), tag)
		}
	}
}

func joinField(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// TextViolations applies the text rules to every string reachable from x,
// naming each by its JSON path under prefix. The archive import uses it to
// find, in a record written before the rules (or by a store that kept what
// another cannot), each text that the rules refuse.
func TextViolations(prefix string, x any) Violations {
	var v Violations
	checkAllText(&v, prefix, x)
	return v
}
