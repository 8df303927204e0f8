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
	// MaxFutureSkew is how far ahead of the server clock an operator-entered
	// (clinical) time may be. Device times are not bound by it: they are
	// stored as sent and judged by Case.DeviceWindow instead.
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

// ValidateBatch checks that a batch is well formed. Only what cannot be a
// reading at all refuses it, because a refused batch loses every reading in
// it (the data dictionary: "refuse only what cannot be a reading at all").
// These checks refuse the whole batch, with a field violation each:
//
//   - source id empty or longer than MaxSourceIDLen bytes; sequence below 1;
//   - no series, or more than MaxSeriesPerBatch; more than
//     MaxSamplesPerBatch samples in all;
//   - a channel the catalogue does not know, or one channel twice;
//   - a series without samples, with a number of values or an invalid mask
//     that does not match its times;
//   - times that are not strictly increasing within a series, or negative
//     (before 1970: no device clock counts from before the epoch);
//   - a NaN or ±Inf value at an index not marked invalid.
//
// Nothing is refused for what a reading says. A value outside the channel's
// plausible range is stored as sent and flagged (Channel.Plausible); a
// device time far from the case (a clock reset to 1970, one years ahead) is
// stored as sent and kept out of trends, bucket widths, watches and
// exports (Case.DeviceWindow, Series.Within). Values at invalid indexes are
// set to 0, so a device's placeholder never reaches the record as a number.
//
// The server time is not needed since device times are no longer checked
// against it; the parameter stays so callers need not change.
func ValidateBatch(cat *Catalogue, b *SampleBatch, _ time.Time) error {
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
	seen := make(map[string]bool, len(b.Series))
	for i := range b.Series {
		validateSeries(cat, &b.Series[i], "batch.series["+strconv.Itoa(i)+"]", seen, &v)
		if len(v) > 20 {
			break // enough to tell the client what is wrong
		}
	}
	return v.Err()
}

func validateSeries(cat *Catalogue, s *Series, f string, seen map[string]bool, v *Violations) {
	_, ok := cat.Lookup(s.Channel)
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
		if t < 0 {
			v.Add(f+".occurred_at_unix_ms["+strconv.Itoa(j)+"]", "must not be before 1970")
			return
		}
		if s.IsInvalid(j) {
			s.Values[j] = 0
			continue
		}
		if x := s.Values[j]; math.IsNaN(x) || math.IsInf(x, 0) {
			v.Add(f+".values["+strconv.Itoa(j)+"]", "must be finite; mark device-invalid readings with invalid_indexes")
			return
		}
	}
}

// Within returns the samples of s whose device time lies in w, in order;
// s itself when all of them do (the usual case: no copy). Every reader that
// must not let an implausibly timed sample drive it (trend buckets and their
// range, watches, exports, metrics) filters a batch's series with its
// window, Case.DeviceWindow(batch.RecordedAt).
func (s Series) Within(w TimeWindow) Series {
	lo, hi := w.From.UnixMilli(), w.To.UnixMilli()
	n := s.Len()
	if n == 0 || s.TimesMs[0] >= lo && s.TimesMs[n-1] <= hi {
		return s
	}
	out := Series{Channel: s.Channel}
	anyInvalid := false
	for i, t := range s.TimesMs {
		if t < lo || t > hi {
			continue
		}
		out.TimesMs = append(out.TimesMs, t)
		out.Values = append(out.Values, s.Values[i])
		if s.IsInvalid(i) {
			anyInvalid = true
		}
	}
	if anyInvalid {
		out.Invalid = make([]bool, 0, out.Len())
		for i, t := range s.TimesMs {
			if t >= lo && t <= hi {
				out.Invalid = append(out.Invalid, s.IsInvalid(i))
			}
		}
	}
	return out
}

// PlausiblyTimed reports whether every device time of a batch, received at
// recordedAt and spanning [minMs, maxMs], lies in the case's device window.
func (c *Case) PlausiblyTimed(recordedAt time.Time, minMs, maxMs int64) bool {
	w := c.DeviceWindow(recordedAt)
	return w.ContainsMs(minMs) && w.ContainsMs(maxMs)
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
