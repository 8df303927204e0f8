package server

import (
	"encoding/base64"
	"encoding/binary"
	"time"

	"github.com/google/uuid"

	"perfusion/store"
)

// pageSize applies a list call's default and maximum. Larger requests are
// clamped rather than refused, as AIP-158 advises; negative ones are
// refused.
func (p *parser) pageSize(field string, n int32, def, max int) int {
	switch {
	case n < 0:
		p.v.Add(field, "must not be negative")
		return def
	case n == 0:
		return def
	case int(n) > max:
		return max
	}
	return int(n)
}

// Page tokens are opaque to clients: base64url of a version byte, the
// cursor's scheduled start in Unix microseconds and its case id. The
// version byte lets the format change without misreading old tokens.
const (
	pageTokenV1  = 1
	pageTokenLen = 1 + 8 + 16
)

// encodePageToken returns the token for the page after cursor, "" on the
// last page.
func encodePageToken(c *store.CaseCursor) string {
	if c == nil {
		return ""
	}
	b := make([]byte, 0, pageTokenLen)
	b = append(b, pageTokenV1)
	b = binary.BigEndian.AppendUint64(b, uint64(c.ScheduledStart.UnixMicro()))
	b = append(b, c.ID[:]...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// pageToken decodes a token from encodePageToken; "" means the first page.
func (p *parser) pageToken(field, tok string) *store.CaseCursor {
	if tok == "" {
		return nil
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) != pageTokenLen || b[0] != pageTokenV1 {
		p.v.Add(field, "is not a token from a previous response")
		return nil
	}
	id, _ := uuid.FromBytes(b[9:])
	return &store.CaseCursor{ScheduledStart: time.UnixMicro(int64(binary.BigEndian.Uint64(b[1:9]))).UTC(), ID: id}
}
