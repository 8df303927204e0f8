// Package samplecodec is the lossless, compact binary encoding of sample
// series that the store keeps in a bytea/blob column, one block per sample
// batch.
//
// Device values carry a fixed resolution (flow 0.01 L/min, temperature
// 0.1 °C, pressure 1 mmHg), so most of them are short decimals. Such a series
// is stored as scaled integers (value × 10^d) with delta, zigzag and varint
// coding, about a byte a sample. Anything that is not exactly such a decimal
// (NaN with any payload, -0, ±Inf, subnormals, waveform values with full
// float precision, or a channel of unknown resolution) is stored with
// Gorilla-style XOR float coding, so the codec is lossless for every input:
// a decoded value is bit for bit the value that was encoded. Timestamps are
// stored as delta-of-delta, which for a regular cadence is almost free.
//
// # Stability
//
// This is a stored format. Blocks written today are read for as long as the
// record is kept (decades, for a clinical record), so the layout of version 1
// described here must never change, not even in the choices the decoder
// accepts. An encoder may make different choices within the format (for
// example pick a different decimal exponent or mode), because every choice
// is spelled out in the data. A new layout gets a new version byte, and
// DecodeBlock must keep reading version 1.
//
// # Primitives
//
//   - uvarint: unsigned LEB128 as written by encoding/binary.AppendUvarint
//     (7 bits a byte, low group first, high bit set on all but the last byte),
//     at most 10 bytes.
//   - zigzag(x) for an int64 x is uint64(x<<1) ^ uint64(x>>63), so that small
//     negative and positive numbers both become small unsigned numbers.
//   - Integer arithmetic on times and scaled values is int64 arithmetic that
//     wraps on overflow (two's complement), in both encoder and decoder, so
//     any int64 sequence round-trips, however large its deltas.
//
// An int stream of m items is a sequence of tokens, each a uvarint u:
//
//	u even              one item whose zigzag is u>>1 (items with zigzag < 2^63)
//	u == 1              escape: one item whose zigzag is the uvarint that follows
//	                    (the encoder uses it only for items with zigzag >= 2^63)
//	u odd, 3..127       c = u>>1 items equal to 0 (a run of 1..63 zeros)
//	u odd, > 127        corrupt
//
// The stream ends after exactly m items; a run that goes past m items is
// corrupt. Capping runs at 63 keeps a run token to one byte and bounds what a
// hostile block can make the decoder allocate to 63 items per input byte.
//
// # Block
//
//	byte     version, 1
//	uvarint  number of series
//	series   each series, in order (below)
//
// Nothing may follow the last series.
//
// # Series
//
//	uvarint  length of the channel name in bytes, then the name (UTF-8, not checked)
//	uvarint  n, number of samples
//	byte     flags:
//	           bits 0-1  value mode: 0 XOR, 1 scaled, 2 scaled with exceptions (3 corrupt)
//	           bits 2-3  invalid mode: 0 none (Invalid nil), 1 runs, 2 bitmap (3 corrupt)
//	           bits 4-7  decimal exponent d, 0..15, in the scaled modes; 0 in XOR mode
//
// When n is 0 the series ends here: the value mode and d must be 0, and an
// invalid mode of 1 or 2 means a non-nil empty Invalid. Otherwise there
// follow, in order, the times, the values and the invalid flags.
//
// Times:
//
//	uvarint     zigzag(t[0])
//	int stream  n-1 items: t[1]-t[0], then for i >= 2 the delta of deltas
//	            (t[i]-t[i-1]) - (t[i-1]-t[i-2])
//
// Values, value mode 0 (XOR): a bit stream, most significant bit of each byte
// first, padded with 0 bits to a whole byte (non-zero padding is corrupt).
// Let bits(v) be math.Float64bits(v):
//
//	64 bits   bits(v[0])
//	then for each i >= 1, with x = bits(v[i]) ^ bits(v[i-1]):
//	  '0'                        x == 0
//	  '10' + w bits              x's set bits lie within the current window of
//	                             leading zeros L and trailing zeros T:
//	                             w = 64-L-T bits of x>>T. Corrupt when no window
//	                             has been set yet.
//	  '11' + 5 bits L + 6 bits w + w bits
//	                             sets the window: L leading zeros (0..31),
//	                             w significant bits (0 means 64), T = 64-L-w,
//	                             then w bits of x>>T. L+w > 64 is corrupt.
//
// Values, value mode 1 (scaled): an int stream of n items: k[0], then
// k[i]-k[i-1]. Each value is float64(k[i]) / 10^d, computed as one IEEE 754
// division of the float64 of the int64 by the exactly representable float64
// 10^d (correctly rounded, round to nearest even). This is the canonical
// decoding: for a decimal with at most d places and |k| <= 2^53 it is exactly
// the float64 that strconv.ParseFloat gives for the decimal, so 4.37 (d=2),
// 36.6 (d=1), -120 (d=0) and 0.05 (d=2) all qualify. The encoder stores a
// value this way only after checking that this computation gives back its
// bits.
//
// Values, value mode 2 (scaled with exceptions): as mode 1, then
//
//	uvarint  e, the number of exceptions, 1..n
//	e times: uvarint gap, then 8 bytes little-endian bits of the value
//
// The index of the first exception is its gap; each following index is the
// previous index + 1 + gap; indexes must be below n. The value at an
// exception index is the stored bits, whatever the scaled stream decodes to
// there (the encoder writes a delta of 0 there, so the exception does not
// disturb the deltas around it).
//
// Invalid, mode 0: nothing; Invalid is nil. Mode 1 (runs): uvarint run
// lengths, alternately valid (false) and invalid (true), starting with a valid
// run; the first run may be 0 (the first sample is invalid), every later run
// is at least 1, and the runs add up to exactly n. Mode 2 (bitmap): (n+7)/8
// bytes, sample i invalid when bit i%8 of byte i/8 is set (least significant
// bit first); unused bits are 0. The encoder writes the shorter of the two,
// runs on a tie.
//
// # Block version 2
//
// Version 2 (written by EncodeBlock since version 1 was found to spend most
// of a short batch's block on per-series headers: a 1-s, 40-channel batch
// took 901 bytes in version 1 and takes 248 in version 2) stores each
// distinct timestamp column once, names channels by a frozen table, and
// puts a byte length before each series' values so a reader can skip the
// channels it does not want. Values and invalid flags are coded exactly as
// in version 1.
//
//	byte     version, 2
//	uvarint  T, number of time columns
//	T times:
//	  uvarint     n, number of times in the column
//	  when n > 0: uvarint zigzag(t[0]), then an int stream of n-1 items as
//	              in version 1's times (first delta, then deltas of deltas)
//	uvarint  number of series
//	each series:
//	  uvarint  channel reference r: 0 means a uvarint name length and the
//	           name (UTF-8, not checked) follow; 1..len(v2Channels) means
//	           the channel v2Channels[r-1] (v2channels.go; that table only
//	           ever grows); anything else is corrupt
//	  uvarint  index of the series' time column (< T); the series has that
//	           column's n samples at its times
//	  byte     flags, as in version 1
//	  uvarint  L, the length in bytes of what follows
//	  L bytes  the values then the invalid flags, as in version 1; nothing
//	           when n is 0 (then the value mode and d must be 0). The L
//	           bytes must be used exactly.
//
// Nothing may follow the last series. Several series may share a column,
// and a column may be used by none (the encoder writes only used columns,
// in order of first use). The decoder's guarantees are those of version
// 1: counts the input cannot hold are refused before allocating, and
// decoded series share no memory with the block or with each other's
// values (series of one column may share its backing array, in disjoint,
// capacity-limited slices).
//
// # Columns
//
// The sealed form of a closed case (store/sealed.go) keeps a channel's
// samples over many batches as a time column and a value column
// (AppendTimeColumn, AppendValueColumn). Both are cut into the same frames:
// runs of consecutive samples of one UTC minute (floor(t / 60000)), a new
// frame starting also where the time goes back and after 4096 samples, so a
// frame's times never decrease. A frame can be read alone: a reader skips
// the frames it does not need by their headers.
//
// Bit packing: a byte w (0..64), then n values of w bits each, least
// significant bit first, in ceil(n·w/8) bytes whose unused bits are zero.
//
// Time column:
//
//	uvarint  F, number of frames
//	F times:
//	  uvarint  count (1..4096)
//	  uvarint  zigzag(first − previous frame's first), the first frame's from 0
//	  uvarint  last − first
//	  when count >= 2: uvarint zigzag(t[1] − t[0])
//	  when count >= 3: uvarint zigzag(m), m the least delta of deltas, then the
//	           count−2 deltas of deltas minus m, bit-packed
//
// A frame whose decoded times decrease or do not end at its last is corrupt.
//
// Value column, over the frames of its time column:
//
//	byte     flags: bits 0-1 mode (0 scaled, 1 XOR; 2, 3 corrupt), bit 2 some
//	         sample is invalid, bit 3 zero, bits 4-7 the decimal exponent d
//	         (scaled; 0 in XOR mode)
//	uvarint  F, number of frames (as the time column's)
//	F times, for a frame of n samples:
//	  when bit 2: uvarint i, invalid samples (0..n); when 0 < i < n a bitmap
//	           of n bits (bit j of byte j/8 for sample j), i of them set
//	  scaled:  uvarint zigzag(k[0] − previous frame's k[0]), the first frame's from 0;
//	           when n >= 2: uvarint zigzag(m), m the least of k[j] − k[j−1],
//	           then the n−1 deltas minus m, bit-packed;
//	           when n − i > 0 (the rollup, over valid samples): uvarint
//	           zigzag(kmin − k[0]), uvarint kmax − kmin, uvarint zigzag(Σ(k − k[0]))
//	  XOR:     when n − i > 0 (the rollup): min, max and sum (sequential, from
//	           0) as 8-byte little-endian float64 bits; then uvarint L and L
//	           bytes of the frame's values in version 1's XOR coding
//
// A scaled value is float64(k) / 10^d as in version 1; the encoder uses
// scaled mode only when every value of the column is exactly such a
// decimal with |k| <= 2^50, so a frame's sum of scaled integers fits an
// int64. A frame's rollup gives its invalid count and, over its valid
// samples, least, greatest and sum (for a scaled column float64 of the
// exact integer sum divided by 10^d: a float sum of the values added one by
// one may differ from it in the last bits unless they are integers).
//
// # Semantics
//
//   - Round trip: decoding an encoded series gives the same channel, the same
//     times and bit-identical values. Values at invalid indexes are stored
//     like any other value and come back exactly.
//   - Invalid: nil decodes as nil; a non-nil Invalid, even all false or
//     empty, decodes as a non-nil slice with the same flags. The encoding of
//     an all-false Invalid costs one or two bytes.
//   - An empty series decodes with nil TimesMs and Values.
//   - The codec does not require times to increase; validation is the
//     caller's job (charting.ValidateBatch).
//
// # Limits
//
//   - Channel names and sample counts are limited only by the int type and
//     memory; the decoder refuses counts that the remaining input cannot
//     hold, so it never allocates more than a small multiple (at most about
//     32 samples, 17 bytes each, per input byte) of its input.
//   - Scaled coding needs the resolution to be 10^-d times an integer for
//     some d in 0..15 (1, 0.1, 0.01, 0.5, 0.25, 5 all are); other
//     resolutions (0 meaning unknown, 1/3, negative, NaN) always use XOR.
//   - Values that are not decimals at the resolution cost XOR rates, from a
//     bit (a repeated value) to about 10 bytes each; a few in an otherwise
//     decimal series cost about 10 bytes each as exceptions.
package samplecodec
