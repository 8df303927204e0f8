package charting

import (
	"crypto/sha256"
	"encoding/binary"
	"math"
	"strconv"
	"time"

	"github.com/google/uuid"
)

// Limits on one sample batch. A batch larger than this is a client bug or an
// attack; real gateways send a second or a few seconds of data at a time.
const (
	MaxSeriesPerBatch  = 256
	MaxSamplesPerBatch = 10000
	MaxSourceIDLen     = 64
	// MaxFutureSkew is how far ahead of the server clock a device time may
	// be. Device clocks drift (by 24 minutes on average in one survey), but
	// data from the future would corrupt every time-based metric.
	MaxFutureSkew = 5 * time.Minute
)

// SampleBatch is a batch of samples from one source, numbered per source.
type SampleBatch struct {
	CaseID     uuid.UUID
	SourceID   string
	Seq        int64
	Series     []Series
	RecordedAt time.Time // set by the server
	Actor      string    // set by the server
}

// SampleCount returns the number of samples in the batch.
func (b *SampleBatch) SampleCount() int {
	n := 0
	for _, s := range b.Series {
		n += s.Len()
	}
	return n
}

// TimeRange returns the first and last device time in the batch.
func (b *SampleBatch) TimeRange() (minMs, maxMs int64) {
	minMs, maxMs = math.MaxInt64, math.MinInt64
	for _, s := range b.Series {
		if n := s.Len(); n > 0 {
			minMs = min(minMs, s.TimesMs[0])
			maxMs = max(maxMs, s.TimesMs[n-1])
		}
	}
	return minMs, maxMs
}

// ValidateBatch checks a batch against the catalogue: known channels, equal
// lengths, strictly increasing times not in the future, finite values within
// the plausible range. Values at invalid indexes are set to 0, so a device's
// placeholder never reaches the record as a number. The whole batch is
// rejected on any violation.
func ValidateBatch(cat *Catalogue, b *SampleBatch, now time.Time) error {
	var v Violations
	if b.SourceID == "" || len(b.SourceID) > MaxSourceIDLen {
		v.Add("batch.source_id", "required, at most %d bytes", MaxSourceIDLen)
	}
	if b.Seq < 1 {
		v.Add("batch.sequence", "must be at least 1")
	}
	if len(b.Series) == 0 || len(b.Series) > MaxSeriesPerBatch {
		v.Add("batch.series", "must hold 1 to %d series", MaxSeriesPerBatch)
	}
	if n := b.SampleCount(); n > MaxSamplesPerBatch {
		v.Add("batch.series", "holds %d samples; at most %d per batch", n, MaxSamplesPerBatch)
		return v.Err()
	}
	limit := now.Add(MaxFutureSkew).UnixMilli()
	seen := make(map[string]bool, len(b.Series))
	for i := range b.Series {
		validateSeries(cat, &b.Series[i], "batch.series["+strconv.Itoa(i)+"]", limit, seen, &v)
		if len(v) > 20 {
			break // enough to tell the client what is wrong
		}
	}
	return v.Err()
}

func validateSeries(cat *Catalogue, s *Series, f string, limitMs int64, seen map[string]bool, v *Violations) {
	ch, ok := cat.Lookup(s.Channel)
	switch {
	case !ok:
		v.Add(f+".channel", "unknown channel %q", s.Channel)
	case seen[s.Channel]:
		v.Add(f+".channel", "channel %q appears twice in the batch", s.Channel)
	}
	seen[s.Channel] = true
	n := s.Len()
	if n == 0 {
		v.Add(f+".occurred_at_unix_ms", "must hold at least one sample")
		return
	}
	if len(s.Values) != n {
		v.Add(f+".values", "has %d values for %d times", len(s.Values), n)
		return
	}
	if s.Invalid != nil && len(s.Invalid) != n {
		v.Add(f+".invalid_indexes", "does not match the samples")
		return
	}
	for j := 0; j < n; j++ {
		t := s.TimesMs[j]
		if j > 0 && t <= s.TimesMs[j-1] {
			v.Add(f+".occurred_at_unix_ms["+strconv.Itoa(j)+"]", "times must be strictly increasing")
			return
		}
		if t > limitMs {
			v.Add(f+".occurred_at_unix_ms["+strconv.Itoa(j)+"]", "is more than %s ahead of the server clock", MaxFutureSkew)
			return
		}
		if t < 0 {
			v.Add(f+".occurred_at_unix_ms["+strconv.Itoa(j)+"]", "must be after 1970")
			return
		}
		if s.IsInvalid(j) {
			s.Values[j] = 0
			continue
		}
		x := s.Values[j]
		if !ok {
			continue
		}
		if math.IsNaN(x) || math.IsInf(x, 0) {
			v.Add(f+".values["+strconv.Itoa(j)+"]", "must be finite; mark device-invalid readings with invalid_indexes")
			return
		}
		if x < ch.Min || x > ch.Max {
			v.Add(f+".values["+strconv.Itoa(j)+"]", "%g %s is outside the plausible range %g to %g", x, ch.Unit, ch.Min, ch.Max)
			return
		}
	}
}

// SampleDigest returns the SHA-256 of a canonical binary encoding of the
// batch's content. The ledger covers sample batches by this digest, and
// verification recomputes it from the decoded stored block, so any change to
// a stored sample is detected whatever the storage encoding.
//
// Encoding: "perfusion.samples.v1", then source id (uvarint length + bytes),
// sequence (8 bytes big-endian), series count (uvarint), and per series:
// channel (uvarint length + bytes), sample count (uvarint), then per sample
// time (8 bytes BE), value bits (8 bytes BE), invalid (1 byte).
func SampleDigest(sourceID string, seq int64, series []Series) Hash {
	h := sha256.New()
	var buf [binary.MaxVarintLen64 + 17]byte
	h.Write([]byte("perfusion.samples.v1"))
	writeString := func(s string) {
		h.Write(binary.AppendUvarint(buf[:0], uint64(len(s))))
		h.Write([]byte(s))
	}
	writeString(sourceID)
	h.Write(binary.BigEndian.AppendUint64(buf[:0], uint64(seq)))
	h.Write(binary.AppendUvarint(buf[:0], uint64(len(series))))
	for _, s := range series {
		writeString(s.Channel)
		h.Write(binary.AppendUvarint(buf[:0], uint64(s.Len())))
		for i := range s.TimesMs {
			b := binary.BigEndian.AppendUint64(buf[:0], uint64(s.TimesMs[i]))
			b = binary.BigEndian.AppendUint64(b, math.Float64bits(s.Values[i]))
			inv := byte(0)
			if s.IsInvalid(i) {
				inv = 1
			}
			h.Write(append(b, inv))
		}
	}
	var out Hash
	h.Sum(out[:0])
	return out
}
