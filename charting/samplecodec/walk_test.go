package samplecodec

import (
	"errors"
	"testing"

	"perfusion/charting"
)

// walkAll collects what w.Walk visits, copying the series out of the
// Walker's buffers.
func walkAll(w *Walker, block []byte) ([]charting.Series, error) {
	var out []charting.Series
	err := w.Walk(block, nil, func(name []byte, s charting.Series) error {
		c := charting.Series{Channel: string(name), TimesMs: append([]int64{}, s.TimesMs...), Values: append([]float64{}, s.Values...)}
		if s.Invalid != nil {
			c.Invalid = append([]bool{}, s.Invalid...)
		}
		out = append(out, c)
		return nil
	})
	return out, err
}

// FuzzWalk checks that a Walker, reused across blocks, visits exactly the
// series DecodeBlock returns, and fails exactly when it fails.
func FuzzWalk(f *testing.F) {
	series, _ := vitals1Hz(5, 30)
	for _, c := range roundTripCases() {
		f.Add(EncodeBlock([]charting.Series{c.s}, func(string) float64 { return c.res }))
	}
	f.Add(EncodeBlock(series, charting.DefaultCatalogue().Resolution))
	f.Add([]byte{1, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		var w Walker
		warm := EncodeBlock(series, charting.DefaultCatalogue().Resolution)
		if _, err := walkAll(&w, warm); err != nil {
			t.Fatal(err)
		}
		want, werr := DecodeBlock(data)
		got, gerr := walkAll(&w, data)
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("DecodeBlock error %v, Walk error %v", werr, gerr)
		}
		if gerr != nil {
			if !errors.Is(gerr, ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", gerr)
			}
			return
		}
		if len(got) != len(want) {
			t.Fatalf("walked %d series, decoded %d", len(got), len(want))
		}
		for i := range want {
			if d := diff(want[i], got[i]); d != "" {
				t.Fatalf("series %d: %s", i, d)
			}
		}
	})
}
