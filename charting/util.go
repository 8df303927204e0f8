package charting

import (
	"math"
	"strconv"
	"time"
)

// finiteIn reports whether x is finite and lo <= x <= hi.
func finiteIn(x, lo, hi float64) bool {
	return !math.IsNaN(x) && !math.IsInf(x, 0) && x >= lo && x <= hi
}

func fieldIndex(field string, i int) string {
	return field + "[" + strconv.Itoa(i) + "]"
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
