package samplecodec

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"

	"perfusion/charting"
)

// Version1 is the first block format version, which EncodeBlockV1 writes and
// DecodeBlock reads. It is part of the stored data: a different layout must
// get a new version (see Version2), never a change to this one.
const Version1 = 1

// ErrCorrupt is wrapped by every decoding error, so that callers can tell a
// damaged or foreign block (errors.Is(err, ErrCorrupt)) from their own
// failures.
var ErrCorrupt = errors.New("samplecodec: corrupt data")

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

// Value modes, invalid modes and the layout of the flags byte (see the
// package documentation).
const (
	modeXOR        = 0
	modeScaled     = 1
	modeScaledExc  = 2
	invalidNone    = 0
	invalidRuns    = 1
	invalidBitmap  = 2
	maxExponent    = 15
	maxRun         = 63 // zeros in one run token: keeps the token to one byte
	tokenEscape    = 1
	maxExactScaled = 1 << 53 // |k| up to which float64(k) is exact
)

// pow10 holds 10^d exactly (every power up to 10^22 is a float64).
var pow10 = [maxExponent + 1]float64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15}

// ipow10 holds 10^d as integers, to strip common trailing decimal zeros.
var ipow10 = [maxExponent + 1]int64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15}

// EncodeBlockV1 encodes a batch's series as one stored block of format
// version 1: the version byte (1), the number of series and each series as
// AppendSeries writes it. The store writes version 2 (EncodeBlock); this
// stays to test that version 1 blocks, which records hold, still decode.
// resolution gives each channel's resolution (0 when unknown, which stores
// the channel's values as XOR floats); it may be nil.
//
// EncodeBlock panics if a series' Values, or non-nil Invalid, is not as long
// as its TimesMs: it stores batches that charting.ValidateBatch accepted, and
// silently storing something else than was given would be worse.
func EncodeBlockV1(series []charting.Series, resolution func(channel string) float64) []byte {
	size := 1 + binary.MaxVarintLen64
	for i := range series {
		size += len(series[i].Channel) + 16 + 3*len(series[i].TimesMs)
	}
	dst := make([]byte, 0, size)
	dst = append(dst, Version1)
	dst = binary.AppendUvarint(dst, uint64(len(series)))
	for _, s := range series {
		r := 0.0
		if resolution != nil {
			r = resolution(s.Channel)
		}
		dst = AppendSeries(dst, s, r)
	}
	return dst
}

// DecodeBlock decodes a block written by EncodeBlock (version 2) or
// EncodeBlockV1. Any damage (a wrong
// version, a truncated or over-long block, an impossible count) gives an
// error wrapping ErrCorrupt, never a panic, and the decoder allocates no
// more than a small multiple of len(b), so a hostile block cannot exhaust
// memory. The result shares no memory with b.
func DecodeBlock(b []byte) ([]charting.Series, error) {
	if len(b) == 0 {
		return nil, corrupt("empty block")
	}
	if b[0] == Version2 {
		return decodeBlockV2(b[1:])
	}
	if b[0] != Version1 {
		return nil, corrupt("unknown block version %d", b[0])
	}
	count, k := binary.Uvarint(b[1:])
	if k <= 0 {
		return nil, corrupt("block: bad series count")
	}
	rest := b[1+k:]
	// A series takes at least 3 bytes: name length, count and flags.
	if count > uint64(len(rest))/3 {
		return nil, corrupt("block: %d series cannot fit in %d bytes", count, len(rest))
	}
	out := make([]charting.Series, 0, count)
	for i := range int(count) {
		s, r, err := DecodeSeries(rest)
		if err != nil {
			return nil, fmt.Errorf("block series %d: %w", i, err)
		}
		out = append(out, s)
		rest = r
	}
	if len(rest) != 0 {
		return nil, corrupt("block: %d bytes after the last series", len(rest))
	}
	return out, nil
}

// AppendSeries appends the encoding of one series, channel name included, to
// dst and returns the extended slice. resolution is the channel's value
// resolution (for example 0.01, 0.1 or 1); 0 means "no known resolution"
// and stores every value as an XOR float. A resolution only selects the
// compact coding: values that are not decimals at that resolution are still
// stored exactly.
//
// AppendSeries panics if s.Values, or a non-nil s.Invalid, is not as long as
// s.TimesMs (see EncodeBlock).
func AppendSeries(dst []byte, s charting.Series, resolution float64) []byte {
	n := len(s.TimesMs)
	if len(s.Values) != n || (s.Invalid != nil && len(s.Invalid) != n) {
		panic(fmt.Sprintf("samplecodec: series %q has %d times, %d values and %d invalid flags",
			s.Channel, n, len(s.Values), len(s.Invalid)))
	}
	dst = binary.AppendUvarint(dst, uint64(len(s.Channel)))
	dst = append(dst, s.Channel...)
	dst = binary.AppendUvarint(dst, uint64(n))
	flagsAt := len(dst)
	dst = append(dst, 0)
	invMode := byte(invalidNone)
	if s.Invalid != nil {
		invMode = invalidRuns
		if n > 0 && bitmapLen(n) < runsLen(s.Invalid) {
			invMode = invalidBitmap
		}
	}
	if n == 0 {
		dst[flagsAt] = invMode << 2
		return dst
	}
	dst = appendTimes(dst, s.TimesMs)
	var valFlags byte
	dst, valFlags = appendValues(dst, s.Values, decimalExponent(resolution))
	switch invMode {
	case invalidRuns:
		dst = appendRuns(dst, s.Invalid)
	case invalidBitmap:
		dst = appendBitmap(dst, s.Invalid)
	}
	dst[flagsAt] = valFlags | invMode<<2
	return dst
}

// DecodeSeries decodes one series written by AppendSeries from the start of
// b and returns it with the bytes that follow it. Errors wrap ErrCorrupt; see
// DecodeBlock for the guarantees on hostile input.
func DecodeSeries(b []byte) (s charting.Series, rest []byte, err error) {
	var sc scratch // fresh buffers: the result owns its memory
	name, s, rest, err := decodeSeries(b, &sc)
	if err != nil {
		return charting.Series{}, nil, err
	}
	s.Channel = string(name)
	return s, rest, nil
}

// scratch holds the buffers a series is decoded into. A zero scratch
// allocates exactly what a series needs; Walker reuses one across series.
type scratch struct {
	times []int64
	vals  []float64
	inv   []bool
}

func (sc *scratch) size(n int) {
	if cap(sc.times) < n {
		sc.times, sc.vals = make([]int64, n), make([]float64, n)
	}
	sc.times, sc.vals = sc.times[:n], sc.vals[:n]
}

func (sc *scratch) invalid(n int) []bool {
	if cap(sc.inv) < n {
		sc.inv = make([]bool, n)
	}
	sc.inv = sc.inv[:n]
	clear(sc.inv)
	return sc.inv
}

// decodeSeries decodes one series into sc's buffers. The returned series
// (without its Channel) uses them; name is a slice of b.
func decodeSeries(b []byte, sc *scratch) (name []byte, s charting.Series, rest []byte, err error) {
	nameLen, k := binary.Uvarint(b)
	if k <= 0 {
		return nil, s, nil, corrupt("series: bad channel name length")
	}
	b = b[k:]
	if nameLen > uint64(len(b)) {
		return nil, s, nil, corrupt("series: channel name of %d bytes in %d remaining", nameLen, len(b))
	}
	name = b[:nameLen:nameLen]
	b = b[nameLen:]
	fail := func(format string, args ...any) ([]byte, charting.Series, []byte, error) {
		return nil, charting.Series{}, nil, corrupt("series %q: %s", name, fmt.Sprintf(format, args...))
	}
	count, k := binary.Uvarint(b)
	if k <= 0 {
		return fail("bad sample count")
	}
	b = b[k:]
	if len(b) == 0 {
		return fail("missing flags")
	}
	flags := b[0]
	b = b[1:]
	valMode, invMode, d := flags&3, flags>>2&3, int(flags>>4)
	if valMode > modeScaledExc || invMode > invalidBitmap {
		return fail("bad flags %#02x", flags)
	}
	if valMode == modeXOR && d != 0 {
		return fail("decimal exponent %d with XOR values", d)
	}
	if count == 0 {
		if valMode != modeXOR {
			return fail("value mode %d with no samples", valMode)
		}
		if invMode != invalidNone {
			s.Invalid = []bool{}
		}
		return name, s, b, nil
	}
	// Refuse counts the input cannot hold before allocating for them: the
	// first time takes a byte and every further time at least 1/63 of one;
	// values at least 1/63 byte each when scaled, 1 bit each (64 for the
	// first) as XOR; the invalid flags at least a byte.
	if count > uint64(len(b))*maxRun {
		return fail("%d samples cannot fit in %d bytes", count, len(b))
	}
	need := 1 + (count-1+maxRun-1)/maxRun
	if valMode == modeXOR {
		need += (count + 63 + 7) / 8
	} else {
		need += (count + maxRun - 1) / maxRun
	}
	if invMode != invalidNone {
		need++
	}
	if need > uint64(len(b)) {
		return fail("%d samples cannot fit in %d bytes", count, len(b))
	}
	n := int(count)
	sc.size(n)
	s.TimesMs, s.Values = sc.times, sc.vals
	if b, err = decodeTimes(b, s.TimesMs); err != nil {
		return fail("times: %v", err)
	}
	switch valMode {
	case modeXOR:
		b, err = decodeXOR(b, s.Values)
	default:
		b, err = decodeScaled(b, s.Values, pow10[d])
		if err == nil && valMode == modeScaledExc {
			b, err = decodeExceptions(b, s.Values)
		}
	}
	if err != nil {
		return fail("values: %v", err)
	}
	switch invMode {
	case invalidRuns:
		s.Invalid = sc.invalid(n)
		b, err = decodeRuns(b, s.Invalid)
	case invalidBitmap:
		s.Invalid = sc.invalid(n)
		b, err = decodeBitmap(b, s.Invalid)
	}
	if err != nil {
		return fail("invalid flags: %v", err)
	}
	return name, s, b, nil
}

func zigzag(x int64) uint64   { return uint64(x<<1) ^ uint64(x>>63) }
func unzigzag(u uint64) int64 { return int64(u>>1) ^ -int64(u&1) }

// intWriter writes an int stream: zigzag varint tokens with runs of zeros.
type intWriter struct {
	dst   []byte
	zeros int
}

func (w *intWriter) put(x int64) {
	if x == 0 {
		w.zeros++
		if w.zeros == maxRun {
			w.flush()
		}
		return
	}
	w.flush()
	if z := zigzag(x); z < 1<<63 {
		w.dst = binary.AppendUvarint(w.dst, z<<1)
	} else {
		w.dst = append(w.dst, tokenEscape)
		w.dst = binary.AppendUvarint(w.dst, z)
	}
}

func (w *intWriter) flush() {
	if w.zeros > 0 {
		w.dst = append(w.dst, byte(w.zeros<<1|1))
		w.zeros = 0
	}
}

// intReader reads an int stream.
type intReader struct {
	b     []byte
	zeros int
}

var (
	errShort = errors.New("truncated")
	errToken = errors.New("bad token")
)

func (r *intReader) next() (int64, error) {
	if r.zeros > 0 {
		r.zeros--
		return 0, nil
	}
	u, k := binary.Uvarint(r.b)
	if k <= 0 {
		return 0, errShort
	}
	r.b = r.b[k:]
	if u&1 == 0 {
		return unzigzag(u >> 1), nil
	}
	if u == tokenEscape {
		z, k := binary.Uvarint(r.b)
		if k <= 0 {
			return 0, errShort
		}
		r.b = r.b[k:]
		return unzigzag(z), nil
	}
	if u > maxRun<<1|1 {
		return 0, errToken
	}
	r.zeros = int(u>>1) - 1
	return 0, nil
}

// done checks that no run went past the end of the stream.
func (r *intReader) done() error {
	if r.zeros != 0 {
		return errors.New("run of zeros past the last sample")
	}
	return nil
}

func appendTimes(dst []byte, ts []int64) []byte {
	dst = binary.AppendUvarint(dst, zigzag(ts[0]))
	w := intWriter{dst: dst}
	var prevDelta int64
	for i := 1; i < len(ts); i++ {
		delta := ts[i] - ts[i-1]
		w.put(delta - prevDelta)
		prevDelta = delta
	}
	w.flush()
	return w.dst
}

func decodeTimes(b []byte, ts []int64) ([]byte, error) {
	n := len(ts)
	z, k := binary.Uvarint(b)
	if k <= 0 {
		return nil, errShort
	}
	t := unzigzag(z)
	ts[0] = t
	r := intReader{b: b[k:]}
	var delta int64
	for i := 1; i < n; i++ {
		dod, err := r.next()
		if err != nil {
			return nil, err
		}
		delta += dod
		t += delta
		ts[i] = t
	}
	return r.b, r.done()
}

// decimalExponent returns the smallest d in 0..15 for which resolution is
// (very nearly) an integer multiple of 10^-d, or -1 when there is none, in
// which case the values are stored as XOR floats. The result only selects
// the encoding: exactness is checked value by value.
func decimalExponent(resolution float64) int {
	if !(resolution > 0) || math.IsInf(resolution, 0) {
		return -1
	}
	for d, p := range pow10 {
		x := resolution * p
		// An absolute tolerance: res*10^d is off by no more than a few
		// ulps of a small number, while a relative one would let 1/3 pass
		// at a large d.
		if r := math.Round(x); r >= 1 && math.Abs(x-r) <= 1e-6 {
			return d
		}
	}
	return -1
}

// scaled returns k with float64(k)/10^d bit-identical to v (the decoder's
// computation), and whether there is one.
func scaled(v, p float64) (int64, bool) {
	x := math.Round(v * p)
	if !(x >= -maxExactScaled && x <= maxExactScaled) { // also NaN
		return 0, false
	}
	k := int64(x)
	return k, math.Float64bits(float64(k)/p) == math.Float64bits(v)
}

// appendValues appends the values in the most compact mode it finds and
// returns the value bits of the flags byte.
func appendValues(dst []byte, vs []float64, d int) ([]byte, byte) {
	if d < 0 {
		return appendXOR(dst, vs), modeXOR
	}
	// First pass: how many values qualify, and how many decimal places the
	// qualifying ones need (values 36.0, 37.5 at resolution 0.01 need only
	// d=1, which keeps the deltas small).
	p := pow10[d]
	exceptions, strip := 0, d
	for _, v := range vs {
		k, ok := scaled(v, p)
		if !ok {
			exceptions++
			continue
		}
		for t := 0; t < strip; t++ {
			if k%ipow10[t+1] != 0 {
				strip = t
				break
			}
		}
	}
	if exceptions == len(vs) {
		return appendXOR(dst, vs), modeXOR
	}
	// k/10^d = (k/10^strip)/10^(d-strip) is the same rational number, and
	// both divisions are correctly rounded, so every value that qualified
	// at d qualifies at d-strip.
	d -= strip
	p = pow10[d]
	start := len(dst)
	w := intWriter{dst: dst}
	var prev int64
	var exc []int
	for i, v := range vs {
		k, ok := scaled(v, p)
		if !ok {
			exc = append(exc, i)
			k = prev // a delta of 0 leaves the neighbours' deltas alone
		}
		w.put(k - prev)
		prev = k
	}
	w.flush()
	dst = w.dst
	if len(exc) == 0 {
		return dst, modeScaled | byte(d)<<4
	}
	dst = binary.AppendUvarint(dst, uint64(len(exc)))
	last := -1
	for _, i := range exc {
		dst = binary.AppendUvarint(dst, uint64(i-last-1))
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(vs[i]))
		last = i
	}
	// Mixed series: keep whichever of the two codings is shorter.
	mid := len(dst)
	dst = appendXOR(dst, vs)
	if len(dst)-mid < mid-start {
		n := copy(dst[start:], dst[mid:])
		return dst[:start+n], modeXOR
	}
	return dst[:mid], modeScaledExc | byte(d)<<4
}

func decodeScaled(b []byte, vs []float64, p float64) ([]byte, error) {
	r := intReader{b: b}
	var k int64
	for i := range vs {
		delta, err := r.next()
		if err != nil {
			return nil, err
		}
		k += delta
		vs[i] = float64(k) / p
	}
	return r.b, r.done()
}

func decodeExceptions(b []byte, vs []float64) ([]byte, error) {
	e, k := binary.Uvarint(b)
	if k <= 0 {
		return nil, errShort
	}
	b = b[k:]
	if e == 0 || e > uint64(len(vs)) {
		return nil, fmt.Errorf("%d exceptions in %d values", e, len(vs))
	}
	next := uint64(0) // lowest index the next exception may have
	for range e {
		gap, k := binary.Uvarint(b)
		if k <= 0 {
			return nil, errShort
		}
		b = b[k:]
		if gap >= uint64(len(vs))-next {
			return nil, errors.New("exception index out of range")
		}
		i := next + gap
		if len(b) < 8 {
			return nil, errShort
		}
		vs[i] = math.Float64frombits(binary.LittleEndian.Uint64(b))
		b = b[8:]
		next = i + 1
	}
	return b, nil
}

// bitWriter appends bits, most significant first, to dst.
type bitWriter struct {
	dst []byte
	acc uint64 // pending bits in the low n bits
	n   uint
}

// write appends the low nbits (at most 32) bits of v.
func (w *bitWriter) write(v uint64, nbits uint) {
	w.acc = w.acc<<nbits | v&(1<<nbits-1)
	w.n += nbits
	for w.n >= 8 {
		w.n -= 8
		w.dst = append(w.dst, byte(w.acc>>w.n))
	}
}

// write64 appends the low nbits (at most 64) bits of v.
func (w *bitWriter) write64(v uint64, nbits uint) {
	if nbits > 32 {
		w.write(v>>32, nbits-32)
		nbits = 32
	}
	w.write(v, nbits)
}

func (w *bitWriter) flush() []byte {
	if w.n > 0 {
		w.dst = append(w.dst, byte(w.acc<<(8-w.n)))
		w.n = 0
	}
	return w.dst
}

// bitReader reads bits, most significant first.
type bitReader struct {
	b   []byte
	acc uint64 // unread bits in the low n bits
	n   uint
}

// read reads nbits (at most 32) bits.
func (r *bitReader) read(nbits uint) (uint64, bool) {
	for r.n < nbits {
		if len(r.b) == 0 {
			return 0, false
		}
		r.acc = r.acc<<8 | uint64(r.b[0])
		r.b = r.b[1:]
		r.n += 8
	}
	r.n -= nbits
	return r.acc >> r.n & (1<<nbits - 1), true
}

// read64 reads nbits (at most 64) bits.
func (r *bitReader) read64(nbits uint) (uint64, bool) {
	var hi uint64
	if nbits > 32 {
		var ok bool
		if hi, ok = r.read(nbits - 32); !ok {
			return 0, false
		}
		nbits = 32
	}
	lo, ok := r.read(nbits)
	return hi<<nbits | lo, ok
}

func appendXOR(dst []byte, vs []float64) []byte {
	w := bitWriter{dst: dst}
	prev := math.Float64bits(vs[0])
	w.write64(prev, 64)
	var lead, trail uint
	window := false
	for _, v := range vs[1:] {
		cur := math.Float64bits(v)
		x := cur ^ prev
		prev = cur
		if x == 0 {
			w.write(0, 1)
			continue
		}
		lz, tz := uint(bits.LeadingZeros64(x)), uint(bits.TrailingZeros64(x))
		lz = min(lz, 31)
		if window && lz >= lead && tz >= trail {
			w.write(0b10, 2)
			w.write64(x>>trail, 64-lead-trail)
			continue
		}
		sig := 64 - lz - tz
		w.write(0b11<<11|uint64(lz)<<6|uint64(sig&63), 13)
		w.write64(x>>tz, sig)
		lead, trail, window = lz, tz, true
	}
	return w.flush()
}

func decodeXOR(b []byte, vs []float64) ([]byte, error) {
	r := bitReader{b: b}
	prev, ok := r.read64(64)
	if !ok {
		return nil, errShort
	}
	vs[0] = math.Float64frombits(prev)
	var lead, trail uint
	window := false
	for i := 1; i < len(vs); i++ {
		c, ok := r.read(1)
		if !ok {
			return nil, errShort
		}
		if c == 1 {
			if c, ok = r.read(1); !ok {
				return nil, errShort
			}
			if c == 1 {
				h, ok := r.read(11)
				if !ok {
					return nil, errShort
				}
				lz, sig := uint(h>>6), uint(h&63)
				if sig == 0 {
					sig = 64
				}
				if lz+sig > 64 {
					return nil, fmt.Errorf("value %d: %d leading zeros and %d significant bits", i, lz, sig)
				}
				lead, trail, window = lz, 64-lz-sig, true
			} else if !window {
				return nil, fmt.Errorf("value %d: reuses a window before one is set", i)
			}
			x, ok := r.read64(64 - lead - trail)
			if !ok {
				return nil, errShort
			}
			prev ^= x << trail
		}
		vs[i] = math.Float64frombits(prev)
	}
	if r.acc&(1<<r.n-1) != 0 {
		return nil, errors.New("non-zero padding bits")
	}
	return r.b, nil
}

// runsLen is the size of the runs coding of inv.
func runsLen(inv []bool) int {
	size, run, cur := 0, 0, false
	for _, f := range inv {
		if f != cur {
			size += uvarintLen(run)
			run, cur = 0, f
		}
		run++
	}
	return size + uvarintLen(run)
}

func uvarintLen(x int) int { return (bits.Len64(uint64(x)|1) + 6) / 7 }

func bitmapLen(n int) int { return (n + 7) / 8 }

func appendRuns(dst []byte, inv []bool) []byte {
	run, cur := 0, false
	for _, f := range inv {
		if f != cur {
			dst = binary.AppendUvarint(dst, uint64(run))
			run, cur = 0, f
		}
		run++
	}
	if len(inv) > 0 {
		dst = binary.AppendUvarint(dst, uint64(run))
	}
	return dst
}

func decodeRuns(b []byte, inv []bool) ([]byte, error) {
	n := len(inv)
	cur := false
	for i, first := 0, true; i < n; first = false {
		run, k := binary.Uvarint(b)
		if k <= 0 {
			return nil, errShort
		}
		b = b[k:]
		if run == 0 && !first {
			return nil, errors.New("empty run")
		}
		if run > uint64(n-i) {
			return nil, errors.New("runs exceed the sample count")
		}
		if cur {
			for j := range int(run) {
				inv[i+j] = true
			}
		}
		i += int(run)
		cur = !cur
	}
	return b, nil
}

func appendBitmap(dst []byte, inv []bool) []byte {
	for i := 0; i < len(inv); i += 8 {
		var c byte
		for j := 0; j < 8 && i+j < len(inv); j++ {
			if inv[i+j] {
				c |= 1 << j
			}
		}
		dst = append(dst, c)
	}
	return dst
}

func decodeBitmap(b []byte, inv []bool) ([]byte, error) {
	n := len(inv)
	size := bitmapLen(n)
	if len(b) < size {
		return nil, errShort
	}
	for i := range inv {
		inv[i] = b[i/8]>>(i%8)&1 == 1
	}
	if n%8 != 0 && b[size-1]>>(n%8) != 0 {
		return nil, errors.New("non-zero padding bits")
	}
	return b[size:], nil
}
