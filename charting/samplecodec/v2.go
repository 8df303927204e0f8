package samplecodec

import (
	"encoding/binary"
	"fmt"
	"slices"

	"perfusion/charting"
)

// Version2 is the block format that EncodeBlock writes (see the package
// documentation, "Block version 2"). Version 1 blocks stay readable.
const Version2 = 2

// v2ChannelRef maps a channel of v2Channels to its reference (index + 1).
var v2ChannelRef = func() map[string]uint64 {
	m := make(map[string]uint64, len(v2Channels))
	for i, ch := range v2Channels {
		m[ch] = uint64(i + 1)
	}
	return m
}()

// v2ChannelNames holds v2Channels as byte slices for the decoder, which
// hands names out as slices.
var v2ChannelNames = func() [][]byte {
	out := make([][]byte, len(v2Channels))
	for i, ch := range v2Channels {
		out[i] = []byte(ch)
	}
	return out
}()

// EncodeBlock encodes a batch's series as one stored block in format
// version 2: the series' distinct timestamp columns once each, then every
// series as a channel reference, the index of its timestamp column, its
// flags, and its values and invalid flags behind a byte length (so a reader
// can skip channels it does not want). resolution gives each channel's
// resolution (0 when unknown, which stores the channel's values as XOR
// floats); it may be nil.
//
// EncodeBlock panics if a series' Values, or non-nil Invalid, is not as long
// as its TimesMs: it stores batches that charting.ValidateBatch accepted, and
// silently storing something else than was given would be worse.
func EncodeBlock(series []charting.Series, resolution func(channel string) float64) []byte {
	var cols [][]int64
	colOf := make([]int, len(series))
	size := 8
	for i, s := range series {
		n := len(s.TimesMs)
		if len(s.Values) != n || (s.Invalid != nil && len(s.Invalid) != n) {
			panic(fmt.Sprintf("samplecodec: series %q has %d times, %d values and %d invalid flags",
				s.Channel, n, len(s.Values), len(s.Invalid)))
		}
		j := slices.IndexFunc(cols, func(c []int64) bool { return slices.Equal(c, s.TimesMs) })
		if j < 0 {
			j = len(cols)
			cols = append(cols, s.TimesMs)
			size += 8 + 2*n
		}
		colOf[i] = j
		size += 6 + 2*n
	}
	dst := make([]byte, 0, size)
	dst = append(dst, Version2)
	dst = binary.AppendUvarint(dst, uint64(len(cols)))
	for _, c := range cols {
		dst = binary.AppendUvarint(dst, uint64(len(c)))
		if len(c) > 0 {
			dst = appendTimes(dst, c)
		}
	}
	dst = binary.AppendUvarint(dst, uint64(len(series)))
	var body []byte
	for i, s := range series {
		if ref, ok := v2ChannelRef[s.Channel]; ok {
			dst = binary.AppendUvarint(dst, ref)
		} else {
			dst = append(dst, 0)
			dst = binary.AppendUvarint(dst, uint64(len(s.Channel)))
			dst = append(dst, s.Channel...)
		}
		dst = binary.AppendUvarint(dst, uint64(colOf[i]))
		r := 0.0
		if resolution != nil {
			r = resolution(s.Channel)
		}
		var flags byte
		body, flags = appendBody(body[:0], s, r)
		dst = append(dst, flags)
		dst = binary.AppendUvarint(dst, uint64(len(body)))
		dst = append(dst, body...)
	}
	return dst
}

// appendBody appends a series' values and invalid flags as version 1 codes
// them after the times, and returns the flags byte.
func appendBody(dst []byte, s charting.Series, resolution float64) ([]byte, byte) {
	n := len(s.TimesMs)
	invMode := byte(invalidNone)
	if s.Invalid != nil {
		invMode = invalidRuns
		if n > 0 && bitmapLen(n) < runsLen(s.Invalid) {
			invMode = invalidBitmap
		}
	}
	if n == 0 {
		return dst, invMode << 2
	}
	var valFlags byte
	dst, valFlags = appendValues(dst, s.Values, decimalExponent(resolution))
	switch invMode {
	case invalidRuns:
		dst = appendRuns(dst, s.Invalid)
	case invalidBitmap:
		dst = appendBitmap(dst, s.Invalid)
	}
	return dst, valFlags | invMode<<2
}

// walkV2 visits the series of a version 2 block (b without its version
// byte); see Walker.Walk. Series that want refuses are skipped by their
// length without decoding their values.
func (w *Walker) walkV2(b []byte, want func(channel []byte) bool, fn func(channel []byte, s charting.Series) error) error {
	ncols, k := binary.Uvarint(b)
	if k <= 0 {
		return corrupt("block: bad time column count")
	}
	b = b[k:]
	if ncols > uint64(len(b)) { // a column takes at least a byte
		return corrupt("block: %d time columns cannot fit in %d bytes", ncols, len(b))
	}
	// Columns are decoded into one buffer; w.cols holds their bounds.
	w.colEnd = w.colEnd[:0]
	w.colBuf = w.colBuf[:0]
	for i := range int(ncols) {
		n, k := binary.Uvarint(b)
		if k <= 0 {
			return corrupt("time column %d: bad count", i)
		}
		b = b[k:]
		// The first time takes a byte and every further one at least 1/63.
		if n > 0 && (n-1)/maxRun+1 > uint64(len(b)) {
			return corrupt("time column %d: %d times cannot fit in %d bytes", i, n, len(b))
		}
		start := len(w.colBuf)
		w.colBuf = slices.Grow(w.colBuf, int(n))[:start+int(n)]
		if n > 0 {
			var err error
			if b, err = decodeTimes(b, w.colBuf[start:]); err != nil {
				return corrupt("time column %d: %v", i, err)
			}
		}
		w.colEnd = append(w.colEnd, len(w.colBuf))
	}
	count, k := binary.Uvarint(b)
	if k <= 0 {
		return corrupt("block: bad series count")
	}
	b = b[k:]
	// A series takes at least 4 bytes: reference, column, flags, length.
	if count > uint64(len(b))/4 {
		return corrupt("block: %d series cannot fit in %d bytes", count, len(b))
	}
	for i := range int(count) {
		name, times, flags, body, rest, err := w.seriesHeaderV2(b)
		if err != nil {
			return fmt.Errorf("block series %d: %w", i, err)
		}
		b = rest
		if want != nil && !want(name) {
			continue
		}
		s, err := w.bodyV2(times, flags, body)
		if err != nil {
			return fmt.Errorf("block series %d: series %q: %w", i, name, err)
		}
		if err := fn(name, s); err != nil {
			return err
		}
	}
	if len(b) != 0 {
		return corrupt("block: %d bytes after the last series", len(b))
	}
	return nil
}

// seriesHeaderV2 reads a version 2 series up to its body.
func (w *Walker) seriesHeaderV2(b []byte) (name []byte, times []int64, flags byte, body, rest []byte, err error) {
	fail := func(format string, args ...any) ([]byte, []int64, byte, []byte, []byte, error) {
		return nil, nil, 0, nil, nil, corrupt("series: %s", fmt.Sprintf(format, args...))
	}
	ref, k := binary.Uvarint(b)
	if k <= 0 {
		return fail("bad channel reference")
	}
	b = b[k:]
	switch {
	case ref == 0:
		n, k := binary.Uvarint(b)
		if k <= 0 {
			return fail("bad channel name length")
		}
		b = b[k:]
		if n > uint64(len(b)) {
			return fail("channel name of %d bytes in %d remaining", n, len(b))
		}
		name, b = b[:n:n], b[n:]
	case ref <= uint64(len(v2ChannelNames)):
		name = v2ChannelNames[ref-1]
	default:
		return fail("unknown channel reference %d", ref)
	}
	col, k := binary.Uvarint(b)
	if k <= 0 {
		return fail("bad time column")
	}
	b = b[k:]
	if col >= uint64(len(w.colEnd)) {
		return fail("time column %d of %d", col, len(w.colEnd))
	}
	start := 0
	if col > 0 {
		start = w.colEnd[col-1]
	}
	times = w.colBuf[start:w.colEnd[col]:w.colEnd[col]]
	if len(b) == 0 {
		return fail("missing flags")
	}
	flags, b = b[0], b[1:]
	size, k := binary.Uvarint(b)
	if k <= 0 {
		return fail("bad length")
	}
	b = b[k:]
	if size > uint64(len(b)) {
		return fail("body of %d bytes in %d remaining", size, len(b))
	}
	return name, times, flags, b[:size:size], b[size:], nil
}

// bodyV2 decodes a version 2 series' values and invalid flags into the
// Walker's buffers.
func (w *Walker) bodyV2(times []int64, flags byte, body []byte) (charting.Series, error) {
	var s charting.Series
	valMode, invMode, d := flags&3, flags>>2&3, int(flags>>4)
	if valMode > modeScaledExc || invMode > invalidBitmap {
		return s, corrupt("bad flags %#02x", flags)
	}
	if valMode == modeXOR && d != 0 {
		return s, corrupt("decimal exponent %d with XOR values", d)
	}
	n := len(times)
	if n == 0 {
		if valMode != modeXOR || len(body) != 0 {
			return s, corrupt("value mode %d or %d bytes with no samples", valMode, len(body))
		}
		if invMode != invalidNone {
			s.Invalid = []bool{}
		}
		return s, nil
	}
	// Refuse counts the body cannot hold before allocating for them (see
	// DecodeSeries).
	need := uint64(n+maxRun-1) / maxRun
	if valMode == modeXOR {
		need = uint64(n+63+7) / 8
	}
	if invMode != invalidNone {
		need++
	}
	if need > uint64(len(body)) {
		return s, corrupt("%d samples cannot fit in %d bytes", n, len(body))
	}
	if cap(w.sc.vals) < n {
		w.sc.vals = make([]float64, n)
	}
	s.TimesMs, s.Values = times, w.sc.vals[:n]
	var err error
	switch valMode {
	case modeXOR:
		body, err = decodeXOR(body, s.Values)
	default:
		body, err = decodeScaled(body, s.Values, pow10[d])
		if err == nil && valMode == modeScaledExc {
			body, err = decodeExceptions(body, s.Values)
		}
	}
	if err != nil {
		return s, corrupt("values: %v", err)
	}
	switch invMode {
	case invalidRuns:
		s.Invalid = w.sc.invalid(n)
		body, err = decodeRuns(body, s.Invalid)
	case invalidBitmap:
		s.Invalid = w.sc.invalid(n)
		body, err = decodeBitmap(body, s.Invalid)
	}
	if err != nil {
		return s, corrupt("invalid flags: %v", err)
	}
	if len(body) != 0 {
		return s, corrupt("%d bytes after the invalid flags", len(body))
	}
	return s, nil
}

// decodeBlockV2 decodes a version 2 block into series that own their
// memory.
func decodeBlockV2(b []byte) ([]charting.Series, error) {
	var w Walker
	var taken []*int64 // first elements of the time columns handed out
	out := make([]charting.Series, 0, 8)
	err := w.walkV2(b, nil, func(name []byte, s charting.Series) error {
		// The values and invalid flags were decoded into fresh buffers
		// (the Walker's are handed over below). This Walker's time columns
		// are not reused either, so the first series of each column takes
		// it as it is (capacity-limited, so appending to it cannot reach
		// the next column); later series of the same column get a copy.
		c := charting.Series{Channel: string(name), Values: s.Values, Invalid: s.Invalid}
		if len(s.TimesMs) > 0 {
			c.TimesMs = s.TimesMs
			if first := &s.TimesMs[0]; slices.Contains(taken, first) {
				c.TimesMs = slices.Clone(s.TimesMs)
			} else {
				taken = append(taken, first)
			}
		} else {
			c.Values = nil
		}
		w.sc.vals, w.sc.inv = nil, nil
		out = append(out, c)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
