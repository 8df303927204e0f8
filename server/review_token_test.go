package server

import (
	"testing"
)

// FuzzReviewPageToken: any token string either decodes to a non-negative
// offset or is refused with a field violation; it never panics, and every
// token the server makes decodes back to its offset.
func FuzzReviewPageToken(f *testing.F) {
	fp := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	for _, s := range []string{"", "garbage", encodeReviewPageToken(0, fp), encodeReviewPageToken(500, fp), "AQAAAAAAAAH0AQIDBAUGBwg"} {
		f.Add(s, 7)
	}
	f.Fuzz(func(t *testing.T, tok string, off int) {
		var p parser
		if got := p.reviewPageToken("page_token", tok, fp); got < 0 || (got > 0 && p.err() != nil) {
			t.Fatalf("token %q gave offset %d with %v", tok, got, p.err())
		}
		if off < 0 || off > 1<<30 {
			return
		}
		var q parser
		if got := q.reviewPageToken("page_token", encodeReviewPageToken(off, fp), fp); got != off || q.err() != nil {
			t.Fatalf("round trip of %d gave %d, %v", off, got, q.err())
		}
	})
}
