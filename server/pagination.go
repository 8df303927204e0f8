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

// Keyset page tokens are opaque to clients: base64url of a version byte,
// the cursor's time in Unix microseconds and its id. The version byte lets
// the format change without misreading old tokens. Case listings key on
// the scheduled start, delivery listings on the creation time.
const (
	pageTokenV1  = 1
	pageTokenLen = 1 + 8 + 16
)

// encodeTimeIDToken returns the token of a (time, id) keyset cursor.
func encodeTimeIDToken(at time.Time, id uuid.UUID) string {
	b := make([]byte, 0, pageTokenLen)
	b = append(b, pageTokenV1)
	b = binary.BigEndian.AppendUint64(b, uint64(at.UnixMicro()))
	b = append(b, id[:]...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// timeIDToken decodes a token from encodeTimeIDToken; ok is false for ""
// (the first page) and for a token that is not one, which adds a field
// violation.
func (p *parser) timeIDToken(field, tok string) (at time.Time, id uuid.UUID, ok bool) {
	if tok == "" {
		return time.Time{}, uuid.Nil, false
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) != pageTokenLen || b[0] != pageTokenV1 {
		p.v.Add(field, "is not a token from a previous response")
		return time.Time{}, uuid.Nil, false
	}
	id, _ = uuid.FromBytes(b[9:])
	return time.UnixMicro(int64(binary.BigEndian.Uint64(b[1:9]))).UTC(), id, true
}

// encodePageToken returns the token for the case listing's page after
// cursor, "" on the last page.
func encodePageToken(c *store.CaseCursor) string {
	if c == nil {
		return ""
	}
	return encodeTimeIDToken(c.ScheduledStart, c.ID)
}

// pageToken decodes a case listing's token; "" means the first page.
func (p *parser) pageToken(field, tok string) *store.CaseCursor {
	at, id, ok := p.timeIDToken(field, tok)
	if !ok {
		return nil
	}
	return &store.CaseCursor{ScheduledStart: at, ID: id}
}
