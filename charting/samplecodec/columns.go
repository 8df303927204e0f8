package samplecodec

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
)

// Column coding: the sealed form of a closed case (store/sealed.go) keeps
// each channel's samples over many batches as two columns, times and
// values, cut into frames. See the package documentation, "Columns".

// FrameMs is the span of a frame: a frame holds consecutive samples of one
// UTC minute (times t with the same floor(t / FrameMs)).
const FrameMs = 60_000

// MaxFrameLen is the most samples a frame holds; a minute of a faster
// channel is cut into several frames.
const MaxFrameLen = 4096

// maxColumnScaled bounds |k| in a scaled value column, so that the sum of
// a frame's scaled values (at most MaxFrameLen of them) fits an int64.
const maxColumnScaled = 1 << 50

// Frame is one frame of a time column: Count samples whose times run, never
// decreasing, from First to Last.
type Frame struct {
	Count       int
	First, Last int64
}

// Frames cuts times into frames: a new frame begins at the first sample,
// when the minute changes, when the time goes back, and after MaxFrameLen
// samples.
func Frames(ts []int64) []Frame {
	var out []Frame
	for i, t := range ts {
		n := len(out)
		if i == 0 || t < ts[i-1] || floorDiv(t, FrameMs) != floorDiv(ts[i-1], FrameMs) || out[n-1].Count == MaxFrameLen {
			out = append(out, Frame{Count: 1, First: t, Last: t})
			continue
		}
		out[n-1].Count++
		out[n-1].Last = t
	}
	return out
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// AppendTimeColumn appends ts as a time column: the number of frames, then
// per frame its count, its first time (zigzag delta from the previous
// frame's first), its span (Last − First), the first delta and the deltas
// of deltas bit-packed at one width per frame.
func AppendTimeColumn(dst []byte, ts []int64) []byte {
	frames := Frames(ts)
	dst = binary.AppendUvarint(dst, uint64(len(frames)))
	var prevFirst int64
	i := 0
	var dods []uint64
	for _, f := range frames {
		t := ts[i : i+f.Count]
		i += f.Count
		dst = binary.AppendUvarint(dst, uint64(f.Count))
		dst = binary.AppendUvarint(dst, zigzag(f.First-prevFirst))
		prevFirst = f.First
		dst = binary.AppendUvarint(dst, uint64(f.Last-f.First))
		if f.Count >= 2 {
			dst = binary.AppendUvarint(dst, zigzag(t[1]-t[0]))
		}
		if f.Count >= 3 {
			dods = dods[:0]
			m := int64(math.MaxInt64)
			for j := 2; j < len(t); j++ {
				d := (t[j] - t[j-1]) - (t[j-1] - t[j-2])
				m = min(m, d)
			}
			for j := 2; j < len(t); j++ {
				d := (t[j] - t[j-1]) - (t[j-1] - t[j-2])
				dods = append(dods, uint64(d-m))
			}
			dst = binary.AppendUvarint(dst, zigzag(m))
			dst = appendPacked(dst, dods)
		}
	}
	return dst
}

// TimeColumn reads a time column frame by frame.
type TimeColumn struct {
	b         []byte
	frames    int
	read      int
	prevFirst int64
	// the current frame
	cur   Frame
	body  []byte // its packed deltas of deltas (count >= 3)
	first int64  // its first delta (count >= 2)
	m     int64
	w     uint
}

// NewTimeColumn starts reading a time column.
func NewTimeColumn(b []byte) (*TimeColumn, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return nil, corrupt("time column: frame count")
	}
	return &TimeColumn{b: b[k:], frames: int(n)}, nil
}

// Frames is the number of frames.
func (c *TimeColumn) Frames() int { return c.frames }

// Next reads the next frame's header; false at the end (then Err tells
// whether the column ended cleanly).
func (c *TimeColumn) Next() (Frame, bool, error) {
	if c.read == c.frames {
		if len(c.b) != 0 {
			return Frame{}, false, corrupt("time column: %d bytes after the last frame", len(c.b))
		}
		return Frame{}, false, nil
	}
	c.read++
	var f Frame
	cnt, err := c.uvarint()
	if err != nil || cnt == 0 || cnt > MaxFrameLen {
		return f, false, corrupt("time column: frame %d: count", c.read)
	}
	f.Count = int(cnt)
	zf, err := c.uvarint()
	if err != nil {
		return f, false, corrupt("time column: frame %d: first time", c.read)
	}
	f.First = c.prevFirst + unzigzag(zf)
	c.prevFirst = f.First
	span, err := c.uvarint()
	if err != nil {
		return f, false, corrupt("time column: frame %d: span", c.read)
	}
	f.Last = f.First + int64(span)
	c.body, c.w = nil, 0
	if f.Count >= 2 {
		d, err := c.uvarint()
		if err != nil {
			return f, false, corrupt("time column: frame %d: first delta", c.read)
		}
		c.first = unzigzag(d)
	}
	if f.Count >= 3 {
		m, err := c.uvarint()
		if err != nil {
			return f, false, corrupt("time column: frame %d: delta base", c.read)
		}
		c.m = unzigzag(m)
		if c.body, c.w, err = c.packed(f.Count - 2); err != nil {
			return f, false, corrupt("time column: frame %d: %v", c.read, err)
		}
	}
	c.cur = f
	return f, true, nil
}

// Decode appends the current frame's times to dst. It checks that they
// never decrease and end at the frame's Last.
func (c *TimeColumn) Decode(dst []int64) ([]int64, error) {
	f := c.cur
	t := f.First
	dst = append(dst, t)
	if f.Count >= 2 {
		delta := c.first
		t += delta
		dst = append(dst, t)
		if f.Count >= 3 {
			u := unpacker{b: c.body, w: c.w}
			for j := 2; j < f.Count; j++ {
				delta += c.m + int64(u.next())
				t += delta
				dst = append(dst, t)
			}
		}
	}
	times := dst[len(dst)-f.Count:]
	for j := 1; j < len(times); j++ {
		if times[j] < times[j-1] {
			return nil, corrupt("time column: frame %d: times go back", c.read)
		}
	}
	if times[len(times)-1] != f.Last {
		return nil, corrupt("time column: frame %d: ends at %d, not its recorded last time %d", c.read, times[len(times)-1], f.Last)
	}
	return dst, nil
}

// DecodeTimeColumn decodes a whole time column, appending its times to dst,
// and returns them with the column's frames.
func DecodeTimeColumn(b []byte, dst []int64) ([]int64, []Frame, error) {
	c, err := NewTimeColumn(b)
	if err != nil {
		return nil, nil, err
	}
	frames := make([]Frame, 0, c.Frames())
	for {
		f, ok, err := c.Next()
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			return dst, frames, nil
		}
		frames = append(frames, f)
		if dst, err = c.Decode(dst); err != nil {
			return nil, nil, err
		}
	}
}

func (c *TimeColumn) uvarint() (uint64, error) {
	v, k := binary.Uvarint(c.b)
	if k <= 0 {
		return 0, errShort
	}
	c.b = c.b[k:]
	return v, nil
}

// packed reads a width byte and n values packed at that width.
func (c *TimeColumn) packed(n int) ([]byte, uint, error) {
	body, w, rest, err := readPacked(c.b, n)
	c.b = rest
	return body, w, err
}

// Value columns.

const (
	colScaled     = 0
	colXOR        = 1
	colHasInvalid = 1 << 2
)

// AppendValueColumn appends the values and invalid flags of a channel's
// samples as a value column over the given frames (those of its time
// column: their counts add up to len(vs)). inv may be nil (no sample
// invalid). Values are scaled integers at the resolution's decimal exponent
// when every one of them is exactly such a decimal (the same test as the
// block format's), XOR floats otherwise. Each frame carries its rollup:
// how many samples are invalid and, of the others, the least, the greatest
// and the sum.
func AppendValueColumn(dst []byte, frames []Frame, vs []float64, inv []bool, resolution float64) []byte {
	n := 0
	for _, f := range frames {
		n += f.Count
	}
	if n != len(vs) || (inv != nil && len(inv) != n) {
		panic(fmt.Sprintf("samplecodec: value column of %d values and %d flags over frames of %d samples", len(vs), len(inv), n))
	}
	hasInvalid := false
	for _, f := range inv {
		hasInvalid = hasInvalid || f
	}
	ks, d, ok := scaledColumn(vs, resolution)
	flags := byte(colXOR)
	if ok {
		flags = colScaled | byte(d)<<4
	}
	if hasInvalid {
		flags |= colHasInvalid
	}
	dst = append(dst, flags)
	dst = binary.AppendUvarint(dst, uint64(len(frames)))
	i := 0
	var prevK int64
	var deltas []uint64
	for _, f := range frames {
		lo, hi := i, i+f.Count
		i = hi
		var fi []bool
		nInv := 0
		if hasInvalid {
			fi = inv[lo:hi]
			for _, x := range fi {
				if x {
					nInv++
				}
			}
			dst = binary.AppendUvarint(dst, uint64(nInv))
			if nInv > 0 && nInv < f.Count {
				dst = appendBitmap(dst, fi)
			}
		}
		valid := f.Count - nInv
		if ok {
			k := ks[lo:hi]
			dst = binary.AppendUvarint(dst, zigzag(k[0]-prevK))
			prevK = k[0]
			if f.Count >= 2 {
				m := int64(math.MaxInt64)
				for j := 1; j < len(k); j++ {
					m = min(m, k[j]-k[j-1])
				}
				deltas = deltas[:0]
				for j := 1; j < len(k); j++ {
					deltas = append(deltas, uint64(k[j]-k[j-1]-m))
				}
				dst = binary.AppendUvarint(dst, zigzag(m))
				dst = appendPacked(dst, deltas)
			}
			if valid > 0 {
				kmin, kmax, s := int64(math.MaxInt64), int64(math.MinInt64), int64(0)
				for j, x := range k {
					if fi != nil && fi[j] {
						continue
					}
					kmin, kmax, s = min(kmin, x), max(kmax, x), s+(x-k[0])
				}
				dst = binary.AppendUvarint(dst, zigzag(kmin-k[0]))
				dst = binary.AppendUvarint(dst, uint64(kmax-kmin))
				dst = binary.AppendUvarint(dst, zigzag(s))
			}
			continue
		}
		v := vs[lo:hi]
		if valid > 0 {
			mn, mx, s := math.Inf(1), math.Inf(-1), 0.0
			first := true
			for j, x := range v {
				if fi != nil && fi[j] {
					continue
				}
				if first {
					mn, mx, first = x, x, false
				} else {
					mn, mx = math.Min(mn, x), math.Max(mx, x)
				}
				s += x
			}
			dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(mn))
			dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(mx))
			dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(s))
		}
		body := appendXOR(nil, v)
		dst = binary.AppendUvarint(dst, uint64(len(body)))
		dst = append(dst, body...)
	}
	return dst
}

// scaledColumn returns the scaled integers of vs at the resolution's
// decimal exponent, with common trailing decimal zeros stripped, and
// whether every value is exactly such a decimal with |k| <= 2^50.
func scaledColumn(vs []float64, resolution float64) ([]int64, int, bool) {
	d := decimalExponent(resolution)
	if d < 0 {
		return nil, 0, false
	}
	p := pow10[d]
	ks := make([]int64, len(vs))
	strip := d
	for i, v := range vs {
		k, ok := scaled(v, p)
		if !ok || k > maxColumnScaled || k < -maxColumnScaled {
			return nil, 0, false
		}
		ks[i] = k
		for t := 0; t < strip; t++ {
			if k%ipow10[t+1] != 0 {
				strip = t
				break
			}
		}
	}
	if strip > 0 {
		for i := range ks {
			ks[i] /= ipow10[strip]
		}
	}
	return ks, d - strip, true
}

// Rollup is what a frame of a value column says about its samples without
// decoding them.
type Rollup struct {
	// Count is the frame's samples, Invalid how many the device marked
	// invalid.
	Count, Invalid int
	// Min, Max and Sum are over the valid samples (Count − Invalid > 0).
	// For a scaled column Sum is float64(K) / 10^d, K being the exact sum
	// of the scaled integers: the sum of the decimals rounded once. (The
	// sum of the float64 values added one by one, as a bucket adds them,
	// may differ from it in the last bits; for integer values it never
	// does.)
	Min, Max, Sum float64
}

// ValueColumn reads a value column frame by frame, alongside its time
// column's frames.
type ValueColumn struct {
	b          []byte
	scaledMode bool
	d          int
	hasInvalid bool
	frames     int
	read       int
	prevK      int64
	// the current frame
	count int
	inv   []byte // its invalid bitmap; nil when none or all
	nInv  int
	k0    int64
	m     int64
	w     uint
	body  []byte
}

// NewValueColumn starts reading a value column.
func NewValueColumn(b []byte) (*ValueColumn, error) {
	if len(b) < 1 {
		return nil, corrupt("value column: empty")
	}
	flags := b[0]
	c := &ValueColumn{b: b[1:], hasInvalid: flags&colHasInvalid != 0, d: int(flags >> 4)}
	switch flags & 3 {
	case colScaled:
		c.scaledMode = true
		if c.d > maxExponent {
			return nil, corrupt("value column: exponent %d", c.d)
		}
	case colXOR:
		if c.d != 0 {
			return nil, corrupt("value column: XOR with an exponent")
		}
	default:
		return nil, corrupt("value column: mode %d", flags&3)
	}
	if flags&0b1000 != 0 {
		return nil, corrupt("value column: reserved flag")
	}
	n, k := binary.Uvarint(c.b)
	if k <= 0 || n > uint64(len(c.b)) {
		return nil, corrupt("value column: frame count")
	}
	c.b, c.frames = c.b[k:], int(n)
	return c, nil
}

// Frames is the number of frames.
func (c *ValueColumn) Frames() int { return c.frames }

// Next reads the header of the next frame, which holds count samples, and
// returns its rollup; false at the end.
func (c *ValueColumn) Next(count int) (Rollup, bool, error) {
	if c.read == c.frames {
		if len(c.b) != 0 {
			return Rollup{}, false, corrupt("value column: %d bytes after the last frame", len(c.b))
		}
		return Rollup{}, false, nil
	}
	c.read++
	if count <= 0 || count > MaxFrameLen {
		return Rollup{}, false, corrupt("value column: frame %d of %d samples", c.read, count)
	}
	r := Rollup{Count: count}
	c.count, c.inv, c.nInv, c.body, c.w = count, nil, 0, nil, 0
	if c.hasInvalid {
		n, err := c.uvarint()
		if err != nil || n > uint64(count) {
			return r, false, corrupt("value column: frame %d: invalid count", c.read)
		}
		c.nInv = int(n)
		if c.nInv > 0 && c.nInv < count {
			size := bitmapLen(count)
			if len(c.b) < size {
				return r, false, corrupt("value column: frame %d: invalid bitmap", c.read)
			}
			c.inv, c.b = c.b[:size], c.b[size:]
			set := 0
			for _, x := range c.inv {
				set += bits.OnesCount8(x)
			}
			if set != c.nInv || (count%8 != 0 && c.inv[size-1]>>(count%8) != 0) {
				return r, false, corrupt("value column: frame %d: invalid bitmap does not match its count", c.read)
			}
		}
	}
	r.Invalid = c.nInv
	valid := count - c.nInv
	if c.scaledMode {
		z, err := c.uvarint()
		if err != nil {
			return r, false, corrupt("value column: frame %d: first value", c.read)
		}
		c.k0 = c.prevK + unzigzag(z)
		c.prevK = c.k0
		if count >= 2 {
			m, err := c.uvarint()
			if err != nil {
				return r, false, corrupt("value column: frame %d: delta base", c.read)
			}
			c.m = unzigzag(m)
			if c.body, c.w, c.b, err = readPacked(c.b, count-1); err != nil {
				return r, false, corrupt("value column: frame %d: %v", c.read, err)
			}
		}
		if valid > 0 {
			var zs [3]uint64
			for j := range zs {
				if zs[j], err = c.uvarint(); err != nil {
					return r, false, corrupt("value column: frame %d: rollup", c.read)
				}
			}
			p := pow10[c.d]
			kmin := c.k0 + unzigzag(zs[0])
			kmax := kmin + int64(zs[1])
			k := unzigzag(zs[2]) + int64(valid)*c.k0
			r.Min, r.Max, r.Sum = float64(kmin)/p, float64(kmax)/p, float64(k)/p
		}
		return r, true, nil
	}
	if valid > 0 {
		if len(c.b) < 24 {
			return r, false, corrupt("value column: frame %d: rollup", c.read)
		}
		r.Min = math.Float64frombits(binary.LittleEndian.Uint64(c.b))
		r.Max = math.Float64frombits(binary.LittleEndian.Uint64(c.b[8:]))
		r.Sum = math.Float64frombits(binary.LittleEndian.Uint64(c.b[16:]))
		c.b = c.b[24:]
	}
	n, err := c.uvarint()
	if err != nil || n > uint64(len(c.b)) {
		return r, false, corrupt("value column: frame %d: XOR length", c.read)
	}
	c.body, c.b = c.b[:n], c.b[n:]
	return r, true, nil
}

// Decode appends the current frame's values to vs and, when inv is not
// nil, its invalid flags to *inv.
func (c *ValueColumn) Decode(vs []float64, inv *[]bool) ([]float64, error) {
	n := c.count
	start := len(vs)
	if c.scaledMode {
		p := pow10[c.d]
		k := c.k0
		vs = slices.Grow(vs, n)[:start+n]
		out := vs[start:]
		out[0] = float64(k) / p
		u := unpacker{b: c.body, w: c.w}
		lo, hi := k, k
		if c.w == 0 {
			for j := 1; j < n; j++ {
				k += c.m
				out[j] = float64(k) / p
				lo, hi = min(lo, k), max(hi, k)
			}
		} else {
			for j := 1; j < n; j++ {
				k += c.m + int64(u.next())
				out[j] = float64(k) / p
				lo, hi = min(lo, k), max(hi, k)
			}
		}
		if hi > maxColumnScaled || lo < -maxColumnScaled {
			return nil, corrupt("value column: frame %d: a value out of range", c.read)
		}
	} else {
		vs = append(vs, make([]float64, n)...)
		rest, err := decodeXOR(c.body, vs[start:])
		if err != nil {
			return nil, corrupt("value column: frame %d: %v", c.read, err)
		}
		if len(rest) != 0 {
			return nil, corrupt("value column: frame %d: bytes after its values", c.read)
		}
	}
	if inv != nil {
		for j := 0; j < n; j++ {
			*inv = append(*inv, c.invalid(j))
		}
	}
	return vs, nil
}

// invalid reports whether sample j of the current frame is invalid.
func (c *ValueColumn) invalid(j int) bool {
	switch {
	case c.nInv == 0:
		return false
	case c.nInv == c.count:
		return true
	}
	return c.inv[j/8]>>(j%8)&1 == 1
}

func (c *ValueColumn) uvarint() (uint64, error) {
	v, k := binary.Uvarint(c.b)
	if k <= 0 {
		return 0, errShort
	}
	c.b = c.b[k:]
	return v, nil
}

// HasInvalid reports whether any sample of the column is invalid.
func (c *ValueColumn) HasInvalid() bool { return c.hasInvalid }

// DecodeValueColumn decodes a whole value column over the given frames,
// appending the values to vs and the invalid flags to inv (left nil when
// no sample is invalid).
func DecodeValueColumn(b []byte, frames []Frame, vs []float64) ([]float64, []bool, error) {
	c, err := NewValueColumn(b)
	if err != nil {
		return nil, nil, err
	}
	if c.Frames() != len(frames) {
		return nil, nil, corrupt("value column of %d frames over a time column of %d", c.Frames(), len(frames))
	}
	var inv []bool
	var invp *[]bool
	if c.hasInvalid {
		invp = &inv
	}
	for _, f := range frames {
		if _, _, err := c.Next(f.Count); err != nil {
			return nil, nil, err
		}
		if vs, err = c.Decode(vs, invp); err != nil {
			return nil, nil, err
		}
	}
	if _, ok, err := c.Next(1); ok || err != nil {
		return nil, nil, errors.Join(err, corrupt("value column: more frames than its times"))
	}
	return vs, inv, nil
}

// Bit packing: a width byte w (0..64), then the values' low w bits, least
// significant bit first, in ceil(n*w/8) bytes; unused bits are zero.

func appendPacked(dst []byte, vs []uint64) []byte {
	var all uint64
	for _, v := range vs {
		all |= v
	}
	w := uint(bits.Len64(all))
	dst = append(dst, byte(w))
	if w == 0 {
		return dst
	}
	var acc uint64
	var nacc uint
	for _, v := range vs {
		acc |= v << nacc
		if nacc+w < 64 {
			nacc += w
			continue
		}
		dst = binary.LittleEndian.AppendUint64(dst, acc)
		spill := nacc + w - 64
		acc = 0
		if nacc > 0 {
			acc = v >> (64 - nacc)
		}
		nacc = spill
	}
	for nacc > 0 {
		dst = append(dst, byte(acc))
		acc >>= 8
		nacc -= min(nacc, 8)
	}
	return dst
}

// readPacked reads a width byte and n values packed at that width, and
// returns their bytes, the width and what follows.
func readPacked(b []byte, n int) (body []byte, w uint, rest []byte, err error) {
	if len(b) < 1 {
		return nil, 0, nil, errShort
	}
	w = uint(b[0])
	if w > 64 {
		return nil, 0, nil, fmt.Errorf("bit width %d", w)
	}
	nbits := uint64(n) * uint64(w)
	size := int((nbits + 7) / 8)
	if len(b)-1 < size {
		return nil, 0, nil, errShort
	}
	body, rest = b[1:1+size], b[1+size:]
	if r := nbits % 8; r != 0 && body[size-1]>>r != 0 {
		return nil, 0, nil, errors.New("non-zero padding bits")
	}
	return body, w, rest, nil
}

// unpacker reads values packed at width w; the body's length was checked by
// readPacked, so it never runs out.
type unpacker struct {
	b    []byte
	w    uint
	acc  uint64
	nacc uint
}

func (u *unpacker) next() uint64 {
	if u.w == 0 {
		return 0
	}
	// Fill the accumulator with whole bytes while they fit.
	for u.nacc <= 56 && len(u.b) > 0 {
		u.acc |= uint64(u.b[0]) << u.nacc
		u.b = u.b[1:]
		u.nacc += 8
	}
	if u.w <= u.nacc {
		v := u.acc
		if u.w < 64 {
			v &= 1<<u.w - 1
		}
		u.acc >>= u.w % 64
		if u.w == 64 {
			u.acc = 0
		}
		u.nacc -= u.w
		return v
	}
	// Wider than what is buffered (w > 56): take what is there, then the
	// rest from the following bytes.
	v, got := u.acc, u.nacc
	u.acc, u.nacc = 0, 0
	for got < u.w {
		x := uint64(u.b[0])
		u.b = u.b[1:]
		take := min(u.w-got, 8)
		v |= (x & (1<<take - 1)) << got
		got += take
		if take < 8 {
			u.acc, u.nacc = x>>take, 8-take
		}
	}
	return v
}

// IntegerValues reports whether a value column holds integers only (scaled
// at exponent 0): sums of its values are exact in float64 whatever their
// order, while they stay below 2^53.
func IntegerValues(b []byte) bool {
	return len(b) > 0 && b[0]&3 == colScaled && b[0]>>4 == 0
}
