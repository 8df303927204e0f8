package charting

import (
	"bytes"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// finiteIn reports whether x is finite and lo <= x <= hi.
func finiteIn(x, lo, hi float64) bool {
	return !math.IsNaN(x) && !math.IsInf(x, 0) && x >= lo && x <= hi
}

func fieldIndex(field string, i int) string {
	return field + "[" + strconv.Itoa(i) + "]"
}

// rejectNUL adds a violation when any text in x contains U+0000.
// PostgreSQL cannot store it in text or JSON, and no clinical text needs it,
// so both stores refuse it up front with a clear error.
func rejectNUL(v *Violations, field string, x any) {
	b, err := canonicalJSON(x)
	if err != nil || bytes.Contains(b, []byte(`\u0000`)) {
		v.Add(field, "text must not contain NUL characters")
	}
}

// checkLen rejects text that is too long or not valid UTF-8.
func checkLen(v *Violations, field, s string, max int) {
	if !utf8.ValidString(s) {
		v.Add(field, "must be valid UTF-8")
		return
	}
	if utf8.RuneCountInString(s) > max {
		v.Add(field, "must be at most %d characters", max)
	}
}

// Timestamp precision of the record. PostgreSQL keeps microseconds, so every
// time is truncated to them before it is hashed or stored; otherwise a value
// read back would no longer hash to what was written.
const Precision = time.Microsecond

// NormTime returns t in UTC truncated to the record's precision.
func NormTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(Precision)
}
