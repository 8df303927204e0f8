package samplecodec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"perfusion/charting"
)

func TestV2ChannelTableCoversCatalogue(t *testing.T) {
	for _, ch := range charting.DefaultCatalogue().Channels() {
		if _, ok := v2ChannelRef[ch.Key]; !ok {
			t.Errorf("channel %q is not in v2Channels: append it (never reorder)", ch.Key)
		}
	}
	seen := map[string]bool{}
	for _, ch := range v2Channels {
		if seen[ch] {
			t.Errorf("v2Channels lists %q twice", ch)
		}
		seen[ch] = true
	}
	// The first entries are stored data: pin a few so an edit that
	// reorders the table fails here.
	if v2Channels[0] != "pump_flow" || v2Channels[20] != "map" || v2Channels[41] != "urine_output" {
		t.Fatal("v2Channels was reordered; blocks already stored would name the wrong channels")
	}
}

// TestV2SharedTimes checks that series with the same times share one time
// column and that a 1-s, 40-channel batch is far smaller than in version 1.
func TestV2SharedTimes(t *testing.T) {
	series, _ := vitals1Hz(40, 1)
	for i := range series {
		series[i].TimesMs = []int64{series[0].TimesMs[0]} // one device clock reading for all
	}
	res := charting.DefaultCatalogue().Resolution
	v1, v2 := EncodeBlockV1(series, res), EncodeBlock(series, res)
	if n, _ := binary.Uvarint(v2[1:]); n != 1 {
		t.Fatalf("%d time columns, want 1", n)
	}
	got, err := DecodeBlock(v2)
	if err != nil {
		t.Fatal(err)
	}
	for i := range series {
		if d := diff(series[i], got[i]); d != "" {
			t.Fatalf("series %d: %s", i, d)
		}
	}
	// Decoded series must not share their times with each other.
	got[0].TimesMs[0]++
	if got[1].TimesMs[0] == got[0].TimesMs[0] {
		t.Fatal("decoded series share a time slice")
	}
	t.Logf("1-s batch of 40 channels: version 1 %d bytes, version 2 %d bytes", len(v1), len(v2))
	if len(v2)*3 > len(v1) {
		t.Errorf("version 2 block is %d bytes, version 1 %d: expected at least 3x smaller", len(v2), len(v1))
	}
}

// TestWalkWant checks that a Walker skips refused series and still visits
// the wanted ones exactly, in both versions.
func TestWalkWant(t *testing.T) {
	series, _ := vitals1Hz(12, 30)
	series[3].Invalid = make([]bool, len(series[3].TimesMs))
	series[3].Invalid[2] = true
	series[5].Channel = "not_in_the_table"
	res := charting.DefaultCatalogue().Resolution
	for _, block := range [][]byte{EncodeBlock(series, res), EncodeBlockV1(series, res)} {
		var w Walker
		var got []int
		err := w.Walk(block, func(name []byte) bool { return len(name)%2 == 0 }, func(name []byte, s charting.Series) error {
			for i := range series {
				if series[i].Channel == string(name) {
					s.Channel = series[i].Channel
					if d := diff(series[i], s); d != "" {
						t.Fatalf("version %d series %s: %s", block[0], name, d)
					}
					got = append(got, i)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		var want []int
		for i := range series {
			if len(series[i].Channel)%2 == 0 {
				want = append(want, i)
			}
		}
		if len(got) != len(want) || len(want) == 0 {
			t.Fatalf("version %d: visited %v, want %v", block[0], got, want)
		}
	}
}

func TestV2Corrupt(t *testing.T) {
	uv := func(x uint64) []byte { return binary.AppendUvarint(nil, x) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	b := func(bs ...byte) []byte { return bs }
	col := cat(uv(2), uv(zigzag(1000)), b(0xd0, 0x0f)) // two times, 1000 and 1500
	for _, c := range []struct {
		name string
		blob []byte
		want string
	}{
		{"no column count", b(2), "time column count"},
		{"huge column count", cat(b(2), uv(1<<40)), "cannot fit"},
		{"huge column", cat(b(2, 1), uv(1<<40), b(0)), "cannot fit"},
		{"no series count", cat(b(2, 1), col), "series count"},
		{"huge series count", cat(b(2, 1), col, uv(1<<30)), "cannot fit"},
		{"unknown reference", cat(b(2, 1), col, b(1), uv(uint64(len(v2Channels)+1)), b(0, modeScaled, 1, 0)), "reference"},
		{"name past end", cat(b(2, 1), col, b(1, 0, 9, 'a', 0, 0)), "channel name"},
		{"column out of range", cat(b(2, 1), col, b(1, 1, 1, modeScaled, 1, 0)), "time column 1"},
		{"body past end", cat(b(2, 1), col, b(1, 1, 0, modeScaled, 9, 0)), "body"},
		{"body too short", cat(b(2, 1), col, b(1, 1, 0, modeScaled, 0, 0, 0, 0)), "cannot fit"},
		{"bytes after the body", cat(b(2, 1), col, b(1, 1, 0, modeScaled, 3, 2, 2, 0)), "after the invalid"},
		{"body with no samples", cat(b(2, 1), uv(0), b(1, 1, 0, 0, 1, 0)), "no samples"},
		{"trailing bytes", cat(b(2, 1), col, b(1, 1, 0, modeScaled, 2, 2, 2, 0)), "after the last"},
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
	// The valid block those cases break: one series, two samples.
	ok := cat(b(2, 1), col, b(1, 1, 0, modeScaled, 2, 2, 2))
	if got, err := DecodeBlock(ok); err != nil || len(got) != 1 || got[0].Channel != v2Channels[0] || got[0].TimesMs[1] != 1500 || got[0].Values[1] != -2 {
		t.Fatalf("valid block: %+v, %v", got, err)
	}
}

// FuzzRoundTripV2 steers towards what version 2 does differently: series
// sharing one time column, channels named by the table, empty series, and
// a Walker reused across blocks.
func FuzzRoundTripV2(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{5, 1, 3, 'a', 'b', 'c', 60, 3, 0, 1, 0, 0x10, 0x20, 0x30, 0x40, 2, 9, 0})
	f.Add(bytes.Repeat([]byte{7, 200, 3, 1, 3, 3, 4}, 30))
	f.Fuzz(func(t *testing.T, data []byte) {
		src := &fuzzSource{b: data}
		var series []charting.Series
		res := map[string]float64{}
		for range 1 + int(src.byte()%6) {
			s, r := seriesFrom(src)
			if c := src.byte(); c%3 == 0 {
				s.Channel = v2Channels[int(c)%len(v2Channels)]
			}
			if c := src.byte(); c%2 == 0 && len(series) > 0 {
				// Same times as an earlier series, values cut or padded.
				prev := series[int(c/2)%len(series)]
				n := len(prev.TimesMs)
				vs := append([]float64{}, s.Values...)
				for len(vs) < n {
					vs = append(vs, float64(len(vs))/10)
				}
				s.TimesMs, s.Values = append([]int64{}, prev.TimesMs...), vs[:n]
				if s.Invalid != nil {
					s.Invalid = make([]bool, n)
					for i := range s.Invalid {
						s.Invalid[i] = (int(c)+i)%5 == 0
					}
				}
			}
			series = append(series, s)
			res[s.Channel] = r
		}
		block := EncodeBlock(series, func(ch string) float64 { return res[ch] })
		got, err := DecodeBlock(block)
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		if len(got) != len(series) {
			t.Fatalf("%d series, want %d", len(got), len(series))
		}
		for i := range series {
			if d := diff(series[i], got[i]); d != "" {
				t.Fatalf("series %d: %s", i, d)
			}
		}
		var w Walker
		for range 2 {
			walked, err := walkAll(&w, block)
			if err != nil || len(walked) != len(series) {
				t.Fatalf("walk: %d series, %v", len(walked), err)
			}
			for i := range series {
				if d := diff(series[i], walked[i]); d != "" {
					t.Fatalf("walked series %d: %s", i, d)
				}
			}
		}
	})
}
