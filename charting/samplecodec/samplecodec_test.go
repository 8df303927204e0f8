package samplecodec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"testing"

	"perfusion/charting"
)

// diff reports how b differs from a, or "" when b is an exact copy: same
// channel, times and Invalid flags (nil only for nil), bit-identical values.
func diff(a, b charting.Series) string {
	switch {
	case a.Channel != b.Channel:
		return fmt.Sprintf("channel %q, want %q", b.Channel, a.Channel)
	case len(a.TimesMs) != len(b.TimesMs):
		return fmt.Sprintf("%d times, want %d", len(b.TimesMs), len(a.TimesMs))
	case len(a.Values) != len(b.Values):
		return fmt.Sprintf("%d values, want %d", len(b.Values), len(a.Values))
	case (a.Invalid == nil) != (b.Invalid == nil):
		return fmt.Sprintf("Invalid nil %v, want %v", b.Invalid == nil, a.Invalid == nil)
	case len(a.Invalid) != len(b.Invalid):
		return fmt.Sprintf("%d invalid flags, want %d", len(b.Invalid), len(a.Invalid))
	}
	for i := range a.TimesMs {
		if a.TimesMs[i] != b.TimesMs[i] {
			return fmt.Sprintf("time %d is %d, want %d", i, b.TimesMs[i], a.TimesMs[i])
		}
		if x, y := math.Float64bits(a.Values[i]), math.Float64bits(b.Values[i]); x != y {
			return fmt.Sprintf("value %d is %v (%#016x), want %v (%#016x)", i, b.Values[i], y, a.Values[i], x)
		}
	}
	for i := range a.Invalid {
		if a.Invalid[i] != b.Invalid[i] {
			return fmt.Sprintf("invalid %d is %v, want %v", i, b.Invalid[i], a.Invalid[i])
		}
	}
	return ""
}

// dec parses a decimal the way a device gateway would.
func dec(s string) float64 {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		panic(err)
	}
	return v
}

func seq(n int, t0, step int64) []int64 {
	ts := make([]int64, n)
	for i := range ts {
		ts[i] = t0 + int64(i)*step
	}
	return ts
}

func constant(n int, v float64) []float64 {
	vs := make([]float64, n)
	for i := range vs {
		vs[i] = v
	}
	return vs
}

const t2025 = 1_750_000_000_000

var (
	nanPayload = math.Float64frombits(0x7ff8_0000_dead_beef)
	sNaN       = math.Float64frombits(0x7ff0_0000_0000_0001)
	negNaN     = math.Float64frombits(0xfff8_0000_0000_0000)
	negZero    = math.Copysign(0, -1)
	subnormal  = math.Float64frombits(1)
	// point1 + point2 is 0.30000000000000004 (as variables: constant
	// arithmetic in Go is exact and would give 0.3).
	point1, point2 = 0.1, 0.2
)

type roundTripCase struct {
	name string
	s    charting.Series
	res  float64
	// mode is the value mode the encoder should choose; -1 when n == 0.
	mode int
}

func roundTripCases() []roundTripCase {
	irregular := []int64{t2025, t2025 + 1, t2025 + 999, t2025 + 2003, t2025 + 2004, t2025 + 60_000, t2025 + 60_001}
	allInvalid := make([]bool, 70)
	for i := range allInvalid {
		allInvalid[i] = true
	}
	someInvalid := make([]bool, 70)
	someInvalid[0], someInvalid[5], someInvalid[6], someInvalid[69] = true, true, true, true
	alternating := make([]bool, 200)
	for i := range alternating {
		alternating[i] = i%3 == 0
	}
	flows := []float64{4.37, 4.38, 4.36, 4.37, 4.41, 0.05, 0, 6.99, 7}
	temps := []float64{36.6, 36.6, 36.7, 36.5, 28.1, 4, 42, 37.0, 36.9}
	press := []float64{-120, 75, 76, 75, 400, 0, -150, 50, 51}
	mostlyDecimal := constant(100, 4.37)
	mostlyDecimal[0], mostlyDecimal[40], mostlyDecimal[99] = math.NaN(), negZero, math.Inf(1)
	mostlyFloat := make([]float64, 50)
	for i := range mostlyFloat {
		mostlyFloat[i] = math.Sin(float64(i)) * 80
	}
	mostlyFloat[7] = 4.37
	invalidVals := constant(70, 36.6)
	for i, f := range someInvalid {
		if f {
			invalidVals[i] = 0
		}
	}
	invalidJunk := constant(70, 36.6)
	invalidJunk[5], invalidJunk[6] = -9999, math.NaN()

	return []roundTripCase{
		{"empty", charting.Series{Channel: "pump_flow"}, 0.01, -1},
		{"empty non-nil Invalid", charting.Series{Channel: "x", TimesMs: []int64{}, Values: []float64{}, Invalid: []bool{}}, 0.01, -1},
		{"empty channel name", charting.Series{TimesMs: []int64{1}, Values: []float64{1}}, 1, modeScaled},
		{"one sample", charting.Series{Channel: "pump_flow", TimesMs: []int64{t2025}, Values: []float64{4.37}}, 0.01, modeScaled},
		{"one sample XOR", charting.Series{Channel: "pump_flow", TimesMs: []int64{t2025}, Values: []float64{4.37}}, 0, modeXOR},
		{"one invalid sample", charting.Series{Channel: "map", TimesMs: []int64{t2025}, Values: []float64{0}, Invalid: []bool{true}}, 1, modeScaled},
		{"regular 1 Hz", charting.Series{Channel: "temp_bladder", TimesMs: seq(3600, t2025, 1000), Values: constant(3600, 36.6)}, 0.1, modeScaled},
		{"irregular times", charting.Series{Channel: "pump_flow", TimesMs: irregular, Values: flows[:7]}, 0.01, modeScaled},
		{"negative times", charting.Series{Channel: "t", TimesMs: []int64{-5_000_000_000_000, -1000, -1, 0, 1}, Values: press[:5]}, 1, modeScaled},
		{"huge deltas", charting.Series{Channel: "t", TimesMs: []int64{math.MinInt64, math.MaxInt64, 0, math.MinInt64 + 1, math.MaxInt64, math.MaxInt64 - 1, math.MinInt64}, Values: constant(7, 1)}, 1, modeScaled},
		{"decreasing times", charting.Series{Channel: "t", TimesMs: []int64{10, 5, 5, 0, -3}, Values: constant(5, 2)}, 1, modeScaled},
		{"flows at 0.01", charting.Series{Channel: "pump_flow", TimesMs: seq(len(flows), t2025, 1000), Values: flows}, 0.01, modeScaled},
		{"temperatures at 0.1", charting.Series{Channel: "temp_rectal", TimesMs: seq(len(temps), t2025, 1000), Values: temps}, 0.1, modeScaled},
		{"pressures at 1", charting.Series{Channel: "venous_line_pressure", TimesMs: seq(len(press), t2025, 1000), Values: press}, 1, modeScaled},
		{"resolution 0.5", charting.Series{Channel: "r", TimesMs: seq(4, 0, 1), Values: []float64{0.5, 1, 1.5, -2.5}}, 0.5, modeScaled},
		{"resolution 5", charting.Series{Channel: "r", TimesMs: seq(4, 0, 1), Values: []float64{5, 10, 15, -25}}, 5, modeScaled},
		{"resolution 1e-15", charting.Series{Channel: "r", TimesMs: seq(3, 0, 1), Values: []float64{1e-15, 0.123456789012345, 1}}, 1e-15, modeScaled},
		{"resolution 1/3", charting.Series{Channel: "r", TimesMs: seq(3, 0, 1), Values: []float64{1, 2, 3}}, 1.0 / 3, modeXOR},
		{"resolution NaN", charting.Series{Channel: "r", TimesMs: seq(3, 0, 1), Values: []float64{1, 2, 3}}, math.NaN(), modeXOR},
		{"resolution negative", charting.Series{Channel: "r", TimesMs: seq(3, 0, 1), Values: []float64{1, 2, 3}}, -1, modeXOR},
		{"resolution +Inf", charting.Series{Channel: "r", TimesMs: seq(3, 0, 1), Values: []float64{1, 2, 3}}, math.Inf(1), modeXOR},
		{"NaN Inf -0", charting.Series{Channel: "s", TimesMs: seq(8, t2025, 8), Values: []float64{math.NaN(), nanPayload, sNaN, negNaN, math.Inf(1), math.Inf(-1), negZero, subnormal}}, 0.01, modeXOR},
		{"extremes", charting.Series{Channel: "s", TimesMs: seq(6, 0, 1), Values: []float64{math.MaxFloat64, -math.MaxFloat64, math.SmallestNonzeroFloat64, 1 << 53, 1<<53 + 2, -(1 << 60)}}, 1, modeXOR},
		{"max scaled", charting.Series{Channel: "s", TimesMs: seq(4, 0, 1), Values: []float64{1 << 53, -(1 << 53), 1 << 53, 0}}, 1, modeScaled},
		{"not a decimal at 0.1", charting.Series{Channel: "s", TimesMs: seq(3, 0, 1), Values: []float64{point1 + point2, 0.30000000000000004, 1.0 / 3}}, 0.1, modeXOR},
		{"mostly decimal", charting.Series{Channel: "pump_flow", TimesMs: seq(100, t2025, 1000), Values: mostlyDecimal}, 0.01, modeScaledExc},
		{"mostly float", charting.Series{Channel: "w", TimesMs: seq(50, t2025, 8), Values: mostlyFloat}, 0.01, modeXOR},
		{"all invalid", charting.Series{Channel: "map", TimesMs: seq(70, t2025, 1000), Values: constant(70, 0), Invalid: allInvalid}, 1, modeScaled},
		{"all valid non-nil Invalid", charting.Series{Channel: "map", TimesMs: seq(70, t2025, 1000), Values: constant(70, 70), Invalid: make([]bool, 70)}, 1, modeScaled},
		{"some invalid", charting.Series{Channel: "temp_bladder", TimesMs: seq(70, t2025, 1000), Values: invalidVals, Invalid: someInvalid}, 0.1, modeScaled},
		{"junk at invalid indexes", charting.Series{Channel: "temp_bladder", TimesMs: seq(70, t2025, 1000), Values: invalidJunk, Invalid: someInvalid}, 0.1, modeScaledExc},
		{"alternating invalid (bitmap)", charting.Series{Channel: "c", TimesMs: seq(200, t2025, 1000), Values: constant(200, 1), Invalid: alternating}, 1, modeScaled},
		{"long name", charting.Series{Channel: string(bytes.Repeat([]byte("ü"), 300)), TimesMs: []int64{1}, Values: []float64{1}}, 1, modeScaled},
	}
}

func TestRoundTrip(t *testing.T) {
	cases := roundTripCases()
	var all []charting.Series
	var stream []byte
	res := map[string]float64{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			enc := AppendSeries(nil, c.s, c.res)
			got, rest, err := DecodeSeries(enc)
			if err != nil {
				t.Fatalf("decode: %v (% x)", err, enc)
			}
			if len(rest) != 0 {
				t.Fatalf("%d bytes left over", len(rest))
			}
			if d := diff(c.s, got); d != "" {
				t.Fatal(d)
			}
			if c.s.Len() == 0 {
				if got.TimesMs != nil || got.Values != nil {
					t.Error("empty series should decode with nil slices")
				}
			}
			if c.mode >= 0 {
				if m := int(flagsOf(t, enc) & 3); m != c.mode {
					t.Errorf("value mode %d, want %d", m, c.mode)
				}
			}
			t.Logf("%d samples in %d bytes", c.s.Len(), len(enc))
		})
		all = append(all, c.s)
		stream = AppendSeries(stream, c.s, c.res)
		res[c.s.Channel] = c.res
	}

	// Series appended one after another decode one by one.
	rest := stream
	for i, c := range cases {
		var got charting.Series
		var err error
		got, rest, err = DecodeSeries(rest)
		if err != nil {
			t.Fatalf("stream series %d: %v", i, err)
		}
		if d := diff(c.s, got); d != "" {
			t.Fatalf("stream series %d: %s", i, d)
		}
	}
	if len(rest) != 0 {
		t.Fatalf("stream: %d bytes left over", len(rest))
	}

	// And as one block, with and without resolutions.
	for _, c := range []struct {
		version byte
		rf      func(string) float64
	}{{1, nil}, {1, func(ch string) float64 { return res[ch] }}, {2, nil}, {2, func(ch string) float64 { return res[ch] }}} {
		block := EncodeBlock(all, c.rf)
		if c.version == 1 {
			block = EncodeBlockV1(all, c.rf)
		}
		if block[0] != c.version {
			t.Fatalf("version byte %d, want %d", block[0], c.version)
		}
		got, err := DecodeBlock(block)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(all) {
			t.Fatalf("%d series, want %d", len(got), len(all))
		}
		for i := range all {
			if d := diff(all[i], got[i]); d != "" {
				t.Fatalf("block series %d: %s", i, d)
			}
		}
	}
	if got, err := DecodeBlock(EncodeBlock(nil, nil)); err != nil || len(got) != 0 {
		t.Fatalf("empty block: %v, %v", got, err)
	}
	if got, err := DecodeBlock(EncodeBlockV1(nil, nil)); err != nil || len(got) != 0 {
		t.Fatalf("empty version 1 block: %v, %v", got, err)
	}
}

// flagsOf returns the flags byte of an encoded series.
func flagsOf(t *testing.T, enc []byte) byte {
	t.Helper()
	l, k := binary.Uvarint(enc)
	enc = enc[k+int(l):]
	_, k = binary.Uvarint(enc)
	return enc[k]
}

func TestScaledQualifies(t *testing.T) {
	for _, c := range []struct {
		s   string
		res float64
	}{
		{"4.37", 0.01}, {"36.6", 0.1}, {"-120", 1}, {"0.05", 0.01}, {"0", 0.01},
		{"7.35", 0.01}, {"6.99", 0.01}, {"0.1", 0.1}, {"0.3", 0.1}, {"-0.01", 0.01},
		{"4.37", 0.001}, {"1234567.89", 0.01}, {"42", 0.1}, {"99.99", 0.01},
	} {
		v := dec(c.s)
		d := decimalExponent(c.res)
		k, ok := scaled(v, pow10[d])
		if !ok {
			t.Errorf("%s at %v does not qualify", c.s, c.res)
			continue
		}
		if got := float64(k) / pow10[d]; math.Float64bits(got) != math.Float64bits(v) {
			t.Errorf("%s: %d/10^%d = %v", c.s, k, d, got)
		}
	}
	// Every decimal with two places in the flow range qualifies.
	for k := -100000; k <= 100000; k++ {
		v := dec(strconv.FormatFloat(float64(k)/100, 'f', 2, 64))
		if _, ok := scaled(v, 100); !ok {
			t.Fatalf("%v does not qualify at 0.01", v)
		}
	}
	for _, v := range []float64{point1 + point2, negZero, math.NaN(), math.Inf(1), math.Inf(-1), subnormal, 1 << 54, 4.375} {
		if _, ok := scaled(v, 100); ok {
			t.Errorf("%v (%#x) qualifies at 0.01", v, math.Float64bits(v))
		}
	}
}

func TestDecimalExponent(t *testing.T) {
	for _, c := range []struct {
		res float64
		d   int
	}{
		{1, 0}, {0.1, 1}, {0.01, 2}, {0.001, 3}, {0.5, 1}, {0.25, 2}, {5, 0}, {100, 0},
		{1e-15, 15}, {1e-16, -1}, {0, -1}, {-0.01, -1}, {math.NaN(), -1}, {math.Inf(1), -1}, {1.0 / 3, -1},
	} {
		if d := decimalExponent(c.res); d != c.d {
			t.Errorf("decimalExponent(%v) = %d, want %d", c.res, d, c.d)
		}
	}
}

// Values that need fewer places than the resolution are stored with fewer,
// and still come back exactly.
func TestExponentStripped(t *testing.T) {
	s := charting.Series{Channel: "f", TimesMs: seq(4, 0, 1000), Values: []float64{36.5, 37, 36.9, 0}}
	enc := AppendSeries(nil, s, 0.001)
	if d := flagsOf(t, enc) >> 4; d != 1 {
		t.Errorf("exponent %d, want 1", d)
	}
	got, _, err := DecodeSeries(enc)
	if err != nil {
		t.Fatal(err)
	}
	if d := diff(s, got); d != "" {
		t.Fatal(d)
	}
}

func TestAppendSeriesPanicsOnMismatch(t *testing.T) {
	for _, s := range []charting.Series{
		{Channel: "a", TimesMs: []int64{1, 2}, Values: []float64{1}},
		{Channel: "a", TimesMs: []int64{1, 2}, Values: []float64{1, 2}, Invalid: []bool{true}},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("no panic for %+v", s)
				}
			}()
			AppendSeries(nil, s, 1)
		}()
	}
}

// Every strict prefix of a block is an error, never a panic.
func TestTruncated(t *testing.T) {
	var all []charting.Series
	for _, c := range roundTripCases() {
		all = append(all, c.s)
		enc := AppendSeries(nil, c.s, c.res)
		for i := range enc {
			if _, _, err := DecodeSeries(enc[:i]); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("%s: prefix of %d/%d bytes: %v", c.name, i, len(enc), err)
			}
		}
	}
	block := EncodeBlock(all, func(string) float64 { return 0.01 })
	for i := range block {
		if _, err := DecodeBlock(block[:i]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("block prefix of %d/%d bytes: %v", i, len(block), err)
		}
	}
	if _, err := DecodeBlock(append(block, 0)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("trailing byte: %v", err)
	}
}

// Flipping any bit of a block gives an error or some series, never a panic.
func TestBitFlips(t *testing.T) {
	for _, c := range roundTripCases() {
		block := EncodeBlock([]charting.Series{c.s}, func(string) float64 { return c.res })
		for i := range len(block) * 8 {
			b := bytes.Clone(block)
			b[i/8] ^= 1 << (i % 8)
			got, err := DecodeBlock(b)
			if err != nil && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("%s: error does not wrap ErrCorrupt: %v", c.name, err)
			}
			if err == nil {
				checkStable(t, got)
			}
		}
	}
}

func TestCorrupt(t *testing.T) {
	uv := func(x uint64) []byte { return binary.AppendUvarint(nil, x) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	b := func(bs ...byte) []byte { return bs }
	// series "a", n samples, flags
	head := func(n uint64, flags byte) []byte { return cat(b(1, 'a'), uv(n), b(flags)) }
	t0 := uv(zigzag(1000))
	for _, c := range []struct {
		name string
		blob []byte
		want string
	}{
		{"no version", nil, "empty block"},
		{"version 0", b(0, 0), "version"},
		{"version 3", b(3, 0), "version"},
		{"bad count varint", b(1, 0x80), "count"},
		{"huge series count", cat(b(1), uv(1<<40), head(0, 0)), "cannot fit"},
		{"name past end", cat(b(1, 1), uv(100), []byte("abc")), "channel name"},
		{"missing flags", cat(b(1, 1, 1, 'a'), uv(0)), "flags"},
		{"reserved value mode", cat(b(1, 1), head(1, 3), t0, b(0)), "flags"},
		{"reserved invalid mode", cat(b(1, 1), head(0, 3<<2)), "flags"},
		{"exponent with XOR", cat(b(1, 1), head(0, 1<<4)), "exponent"},
		{"scaled with no samples", cat(b(1, 1), head(0, modeScaled)), "no samples"},
		{"huge sample count", cat(b(1, 1), head(1<<62, modeScaled), t0, b(0, 0)), "cannot fit"},
		{"max sample count", cat(b(1, 1), head(math.MaxUint64, modeXOR), t0, b(0, 0)), "cannot fit"},
		{"count beyond data", cat(b(1, 1), head(10_000, modeScaled), t0, bytes.Repeat(b(127), 20)), "cannot fit"},
		{"time run past end", cat(b(1, 1), head(3, modeScaled), t0, b(7), b(0, 0, 0)), "past the last"},
		{"run token too long", cat(b(1, 1), head(3, modeScaled), t0, uv(129), b(0, 0, 0)), "bad token"},
		{"escape truncated", cat(b(1, 1), head(2, modeScaled), t0, b(1)), "truncated"},
		{"value run past end", cat(b(1, 1), head(2, modeScaled), t0, b(2), b(7)), "past the last"},
		{"XOR truncated", cat(b(1, 1), head(2, modeXOR), t0, b(2), make([]byte, 8)), "truncated"},
		{"XOR window before set", cat(b(1, 1), head(2, modeXOR), t0, b(2), make([]byte, 8), b(0x80, 0, 0)), "window"},
		{"XOR too many bits", cat(b(1, 1), head(2, modeXOR), t0, b(2), make([]byte, 8), b(0xff, 0xf8)), "significant"},
		{"XOR padding", cat(b(1, 1), head(2, modeXOR), t0, b(2), make([]byte, 8), b(0x01)), "padding"},
		{"no exceptions", cat(b(1, 1), head(2, modeScaledExc), t0, b(2), b(2, 0), uv(0)), "exceptions"},
		{"too many exceptions", cat(b(1, 1), head(2, modeScaledExc), t0, b(2), b(2, 0), uv(3)), "exceptions"},
		{"exception out of range", cat(b(1, 1), head(2, modeScaledExc), t0, b(2), b(2, 0), uv(1), uv(2), make([]byte, 8)), "out of range"},
		{"exceptions out of range", cat(b(1, 1), head(2, modeScaledExc), t0, b(2), b(2, 0), uv(2), uv(1), make([]byte, 8), uv(0), make([]byte, 8)), "out of range"},
		{"exception truncated", cat(b(1, 1), head(2, modeScaledExc), t0, b(2), b(2, 0), uv(1), uv(1), make([]byte, 7)), "truncated"},
		{"empty later run", cat(b(1, 1), head(3, modeScaled|invalidRuns<<2), t0, b(2, 0), b(0, 0, 0), b(1, 0, 2)), "empty run"},
		{"runs too long", cat(b(1, 1), head(3, modeScaled|invalidRuns<<2), t0, b(2, 0), b(0, 0, 0), b(1, 3)), "exceed"},
		{"runs too short", cat(b(1, 1), head(3, modeScaled|invalidRuns<<2), t0, b(2, 0), b(0, 0, 0), b(1, 1)), "truncated"},
		{"bitmap padding", cat(b(1, 1), head(3, modeScaled|invalidBitmap<<2), t0, b(2, 0), b(0, 0, 0), b(0x09)), "padding"},
		{"trailing bytes", cat(b(1, 1), head(0, 0), b(0)), "after the last"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := DecodeBlock(c.blob)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("got %v, want ErrCorrupt", err)
			}
			if !bytes.Contains([]byte(err.Error()), []byte(c.want)) {
				t.Errorf("error %q does not say %q", err, c.want)
			}
		})
	}
}

// A small hostile block cannot make the decoder allocate much.
func TestHostileAllocation(t *testing.T) {
	// 1 KiB of zero-run tokens claiming as many samples as it can hold.
	body := bytes.Repeat([]byte{maxRun<<1 | 1}, 1024)
	n := uint64(len(body)) * maxRun
	blob := append([]byte{1, 1, 1, 'a'}, binary.AppendUvarint(nil, n)...)
	blob = append(blob, modeScaled)
	blob = append(blob, body...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := DecodeBlock(blob)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("got %v", err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
		t.Errorf("allocated %d bytes for a %d-byte block", alloc, len(blob))
	}
}

// checkStable re-encodes decoded series with several resolutions and checks
// that they decode to the same again.
func checkStable(t *testing.T, series []charting.Series) {
	t.Helper()
	for _, r := range []float64{0, 1, 0.01} {
		again, err := DecodeBlock(EncodeBlock(series, func(string) float64 { return r }))
		if err != nil {
			t.Fatalf("re-decode at %v: %v", r, err)
		}
		if len(again) != len(series) {
			t.Fatalf("re-decode at %v: %d series, want %d", r, len(again), len(series))
		}
		for i := range series {
			if d := diff(series[i], again[i]); d != "" {
				t.Fatalf("re-decode at %v, series %d: %s", r, i, d)
			}
		}
	}
}

// The realistic 1 Hz workload stays within 2 bytes a sample.
func TestRealisticSize(t *testing.T) {
	series, samples := vitals1Hz(40, 60)
	block := EncodeBlock(series, charting.DefaultCatalogue().Resolution)
	if got, err := DecodeBlock(block); err != nil {
		t.Fatal(err)
	} else {
		for i := range series {
			if d := diff(series[i], got[i]); d != "" {
				t.Fatal(d)
			}
		}
	}
	per := float64(len(block)) / float64(samples)
	t.Logf("%d samples in %d bytes: %.2f B/sample", samples, len(block), per)
	if per > 2 {
		t.Errorf("%.2f bytes a sample, want at most 2", per)
	}
}

// fuzzSource turns fuzz bytes into numbers, with zeros once it runs out.
type fuzzSource struct{ b []byte }

func (f *fuzzSource) byte() byte {
	if len(f.b) == 0 {
		return 0
	}
	c := f.b[0]
	f.b = f.b[1:]
	return c
}

func (f *fuzzSource) u64() uint64 {
	var x [8]byte
	n := copy(x[:], f.b)
	f.b = f.b[n:]
	return binary.LittleEndian.Uint64(x[:])
}

var fuzzResolutions = []float64{0, 1, 0.1, 0.01, 0.001, 0.5, 0.25, 5, 1e-15, 1.0 / 3, -1, math.NaN(), math.Inf(1), 1e300, 1e-300}

var specials = []float64{0, negZero, 1, -1, math.NaN(), nanPayload, sNaN, negNaN, math.Inf(1), math.Inf(-1),
	subnormal, -subnormal, math.SmallestNonzeroFloat64, math.MaxFloat64, -math.MaxFloat64, 1 << 53, 1<<53 + 2, -(1 << 53), point1 + point2, 4.37, 36.6}

// seriesFrom builds a series, and the resolution to encode it with, from fuzz
// bytes, steering towards the shapes the codec treats specially.
func seriesFrom(f *fuzzSource) (charting.Series, float64) {
	var s charting.Series
	name := make([]byte, f.byte()%6)
	for i := range name {
		name[i] = f.byte()
	}
	s.Channel = string(name)
	n := int(f.byte())
	if n > 200 {
		n = 1000 + n // some long series, for long runs
	}
	res := fuzzResolutions[int(f.byte())%len(fuzzResolutions)]
	timeMode, valueMode, invMode := f.byte(), f.byte(), f.byte()
	s.TimesMs = make([]int64, n)
	s.Values = make([]float64, n)
	t := int64(f.u64())
	step := int64(int8(f.byte())) * 100
	d := int(f.byte() % 4)
	var k int64
	for i := range n {
		switch timeMode % 4 {
		case 0: // regular cadence with jitter
			t += step
			s.TimesMs[i] = t + int64(int8(f.byte()))%4
		case 1: // anything
			s.TimesMs[i] = int64(f.u64())
		case 2: // small irregular steps
			t += int64(f.byte())
			s.TimesMs[i] = t
		default: // regular, wrapping
			s.TimesMs[i] = t + int64(i)*step*1_000_000_000_000
		}
		switch valueMode % 5 {
		case 0: // any bits
			s.Values[i] = math.Float64frombits(f.u64())
		case 1: // decimals, random walk
			k += int64(int8(f.byte()))
			s.Values[i] = dec(strconv.FormatFloat(float64(k)/pow10[d], 'f', d, 64))
		case 2: // specials
			s.Values[i] = specials[int(f.byte())%len(specials)]
		case 3: // decimals with some specials
			if c := f.byte(); c < 20 {
				s.Values[i] = specials[int(c)%len(specials)]
			} else {
				k += int64(int8(c)) >> 2
				s.Values[i] = dec(strconv.FormatFloat(float64(k)/pow10[d], 'f', d, 64))
			}
		default: // large scaled integers
			s.Values[i] = float64(int64(f.u64()) >> (f.byte() % 64))
		}
	}
	switch invMode % 4 {
	case 1:
		s.Invalid = make([]bool, n)
	case 2, 3:
		s.Invalid = make([]bool, n)
		for i := range s.Invalid {
			if invMode%4 == 2 {
				s.Invalid[i] = f.byte()&1 == 1
			} else {
				s.Invalid[i] = f.byte() < 8 // long runs
			}
		}
	}
	return s, res
}

func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{3, 'a', 'b', 'c', 60, 3, 0, 1, 0, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x01, 10, 2})
	f.Add([]byte{1, 'x', 255, 0, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add(bytes.Repeat([]byte{7, 200, 3, 1, 3, 3}, 50))
	f.Fuzz(func(t *testing.T, data []byte) {
		src := &fuzzSource{b: data}
		var series []charting.Series
		var stream []byte
		res := map[string]float64{}
		for range 1 + int(src.byte()%3) {
			s, r := seriesFrom(src)
			enc := AppendSeries(nil, s, r)
			got, rest, err := DecodeSeries(enc)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if len(rest) != 0 {
				t.Fatalf("%d bytes left over", len(rest))
			}
			if d := diff(s, got); d != "" {
				t.Fatalf("resolution %v: %s", r, d)
			}
			series = append(series, s)
			stream = append(stream, enc...)
			res[s.Channel] = r
		}
		rest := stream
		for i := range series {
			var got charting.Series
			var err error
			if got, rest, err = DecodeSeries(rest); err != nil {
				t.Fatalf("stream series %d: %v", i, err)
			}
			if d := diff(series[i], got); d != "" {
				t.Fatalf("stream series %d: %s", i, d)
			}
		}
		for _, enc := range []func([]charting.Series, func(string) float64) []byte{EncodeBlock, EncodeBlockV1} {
			got, err := DecodeBlock(enc(series, func(ch string) float64 { return res[ch] }))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(series) {
				t.Fatalf("%d series, want %d", len(got), len(series))
			}
			for i := range series {
				if d := diff(series[i], got[i]); d != "" {
					t.Fatalf("block series %d: %s", i, d)
				}
			}
		}
	})
}

func FuzzDecode(f *testing.F) {
	var all []charting.Series
	for _, c := range roundTripCases() {
		f.Add(EncodeBlock([]charting.Series{c.s}, func(string) float64 { return c.res }))
		all = append(all, c.s)
	}
	f.Add(EncodeBlock(all, func(string) float64 { return 0.01 }))
	series, _ := vitals1Hz(3, 20)
	f.Add(EncodeBlock(series, charting.DefaultCatalogue().Resolution))
	f.Add(EncodeBlockV1(series, charting.DefaultCatalogue().Resolution))
	f.Add(EncodeBlockV1(all, func(string) float64 { return 0.01 }))
	f.Add([]byte{})
	f.Add([]byte{1, 0})
	f.Add([]byte{1, 1, 1, 'a', 0xff, 0xff, 0xff, 0xff, 0x0f, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		if s, rest, err := DecodeSeries(data); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
		} else {
			if len(rest) > len(data) {
				t.Fatal("rest longer than input")
			}
			checkStable(t, []charting.Series{s})
		}
		got, err := DecodeBlock(data)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		checkStable(t, got)
	})
}
