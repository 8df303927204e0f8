package server

import (
	"math"
	"testing"
	"time"

	"github.com/google/uuid"

	"perfusion/store"
)

// FuzzReviewPageToken: any token string either decodes (to a cursor, or
// for a version 1 token to a non-negative offset) or is refused with a field
// violation, and never panics; every cursor the server encodes decodes back
// to itself, for the order it was made for and for no other.
func FuzzReviewPageToken(f *testing.F) {
	fp := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	id := uuid.MustParse("6f1c1c52-7d2b-4b4e-9a53-0a4a1b2c3d4e")
	start := time.Date(2026, 3, 1, 8, 30, 0, 0, time.UTC)
	for _, s := range []string{"", "garbage", "AQAAAAAAAAH0AQIDBAUGBwg",
		encodeReviewPageToken(&store.MetricsCursor{ScheduledStart: start, ID: id}, fp, false),
		encodeReviewPageToken(&store.MetricsCursor{Value: 91.5, HasValue: true, ID: id}, fp, true),
		encodeReviewPageToken(&store.MetricsCursor{ID: id}, fp, true)} {
		f.Add(s, int64(start.UnixNano()), 42.25, uint8(0), id[:])
	}
	f.Fuzz(func(t *testing.T, tok string, nanos int64, value float64, kind uint8, idBytes []byte) {
		for _, byMetric := range []bool{false, true} {
			var p parser
			c, off := p.reviewPageToken("page_token", tok, fp, byMetric)
			if p.err() != nil && (c != nil || off != 0) {
				t.Fatalf("refused token %q still gave %+v, %d", tok, c, off)
			}
			if off < 0 || (c != nil && off != 0) {
				t.Fatalf("token %q gave %+v and offset %d", tok, c, off)
			}
		}
		if len(idBytes) != 16 || math.IsNaN(value) || math.IsInf(value, 0) {
			return
		}
		want := store.MetricsCursor{ID: uuid.UUID(idBytes)}
		byMetric := kind%3 != 0
		switch kind % 3 {
		case 0:
			want.ScheduledStart = time.Unix(0, nanos).UTC()
		case 1:
			want.Value, want.HasValue = value, true
		}
		tok = encodeReviewPageToken(&want, fp, byMetric)
		var q parser
		got, off := q.reviewPageToken("page_token", tok, fp, byMetric)
		if q.err() != nil || off != 0 || got == nil || !got.ScheduledStart.Equal(want.ScheduledStart) ||
			math.Float64bits(got.Value) != math.Float64bits(want.Value) || got.HasValue != want.HasValue || got.ID != want.ID {
			t.Fatalf("round trip of %+v gave %+v, %d, %v", want, got, off, q.err())
		}
		var other parser
		if c, _ := other.reviewPageToken("page_token", tok, fp, !byMetric); c != nil || other.err() == nil {
			t.Fatalf("a token of one order was accepted for the other: %+v", c)
		}
		var foreign parser
		if c, _ := foreign.reviewPageToken("page_token", tok, []byte{8, 7, 6, 5, 4, 3, 2, 1}, byMetric); c != nil || foreign.err() == nil {
			t.Fatal("a token of another query was accepted")
		}
	})
}

// TestReviewPageTokenV1: an offset token from before keyset paging still
// pages (a reviewer's listing spans the upgrade); with another query's
// fingerprint it is refused.
func TestReviewPageTokenV1(t *testing.T) {
	fp := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	const v1 = "AQAAAAAAAAH0AQIDBAUGBwg" // version 1, offset 500, fingerprint fp
	for _, byMetric := range []bool{false, true} {
		var p parser
		if c, off := p.reviewPageToken("page_token", v1, fp, byMetric); c != nil || off != 500 || p.err() != nil {
			t.Fatalf("v1 token: %+v, %d, %v; want offset 500", c, off, p.err())
		}
	}
	var p parser
	if _, off := p.reviewPageToken("page_token", v1, []byte{0, 0, 0, 0, 0, 0, 0, 0}, false); off != 0 || p.err() == nil {
		t.Fatalf("v1 token of another query: offset %d, %v", off, p.err())
	}
}
