package charting

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
)

// Hash is a SHA-256 digest.
type Hash [32]byte

// String returns lowercase hex.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// MarshalText encodes as lowercase hex, so canonical JSON carries hashes
// readably.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText decodes lowercase or uppercase hex.
func (h *Hash) UnmarshalText(b []byte) error {
	// Check the length first: hex.Decode writes past h on longer input.
	if len(b) != 2*len(h) {
		return fmt.Errorf("hash must be %d hex characters", 2*len(h))
	}
	if _, err := hex.Decode(h[:], b); err != nil {
		return fmt.Errorf("hash must be %d hex characters", 2*len(h))
	}
	return nil
}

// ParseHash parses a hex hash.
func ParseHash(s string) (Hash, error) {
	var h Hash
	err := h.UnmarshalText([]byte(s))
	return h, err
}

// LinkKind is the kind of write a ledger link records.
type LinkKind string

// Link kinds. Each stored datum of a case has exactly one link.
const (
	LinkCaseCreated LinkKind = "case_created"
	LinkDetails     LinkKind = "details_updated"
	LinkEntry       LinkKind = "entry"
	LinkCorrection  LinkKind = "correction"
	LinkAddendum    LinkKind = "addendum"
	LinkSamples     LinkKind = "samples"
	LinkCaseClosed  LinkKind = "case_closed"
	LinkSignature   LinkKind = "signature"
)

// Link is one link of a case's hash chain. Hash covers PrevHash, the header
// fields (case, sequence, kind, ref, actor, reason, recorded-at) and the
// digest of the datum's canonical content; the content digest itself is not
// stored, so verification must re-read and re-encode the datum.
type Link struct {
	CaseID     uuid.UUID
	Seq        int64
	Kind       LinkKind
	Ref        string
	Actor      string
	Reason     string
	RecordedAt time.Time
	PrevHash   Hash
	Hash       Hash
}

type linkHeader struct {
	CaseID     uuid.UUID `json:"case_id"`
	Seq        int64     `json:"seq"`
	Kind       LinkKind  `json:"kind"`
	Ref        string    `json:"ref"`
	Actor      string    `json:"actor"`
	Reason     string    `json:"reason,omitempty"`
	RecordedAt time.Time `json:"recorded_at"`
}

// ComputeHash returns the hash of a link with the given content digest:
// SHA-256("perfusion.ledger.v1" 0x00 ‖ prev ‖ uvarint(len(header)) ‖ header ‖
// digest), header being the canonical JSON of the header fields.
func (l *Link) ComputeHash(content Hash) Hash {
	hdr, err := canonicalJSON(linkHeader{l.CaseID, l.Seq, l.Kind, l.Ref, l.Actor, l.Reason, NormTime(l.RecordedAt)})
	if err != nil {
		panic(fmt.Sprintf("charting: link header does not encode: %v", err)) // plain struct: cannot happen
	}
	h := sha256.New()
	h.Write([]byte("perfusion.ledger.v1\x00"))
	h.Write(l.PrevHash[:])
	h.Write(binary.AppendUvarint(nil, uint64(len(hdr))))
	h.Write(hdr)
	h.Write(content[:])
	var out Hash
	h.Sum(out[:0])
	return out
}

// NextLink builds the link that follows head for a datum with the given
// content digest.
func NextLink(caseID uuid.UUID, head Head, kind LinkKind, ref, actor, reason string, at time.Time, content Hash) Link {
	l := Link{CaseID: caseID, Seq: head.Seq + 1, Kind: kind, Ref: ref, Actor: actor, Reason: reason, RecordedAt: NormTime(at), PrevHash: head.Hash}
	l.Hash = l.ComputeHash(content)
	return l
}

// canonicalJSON encodes v as JSON without HTML escaping. Go's encoder writes
// struct fields in declaration order and floats in their shortest exact form,
// so the encoding is deterministic for the structs of this package.
func canonicalJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

func digestJSON(domain string, v any) Hash {
	b, err := canonicalJSON(v)
	if err != nil {
		panic(fmt.Sprintf("charting: %s does not encode: %v", domain, err))
	}
	return sha256.Sum256(append([]byte(domain+"\x00"), b...))
}

// CaseHeader is the immutable part of a case, covered by its first link.
type CaseHeader struct {
	CaseID         uuid.UUID `json:"case_id"`
	Kind           Kind      `json:"kind"`
	Site           string    `json:"site"`
	Room           string    `json:"room"`
	ScheduledStart time.Time `json:"scheduled_start"`
	CreatedAt      time.Time `json:"created_at"`
	CreatedBy      string    `json:"created_by"`
}

// HeaderOf returns the immutable header of c.
func HeaderOf(c *Case) CaseHeader {
	return CaseHeader{c.ID, c.Kind, c.Site, c.Room, NormTime(c.ScheduledStart), NormTime(c.CreatedAt), c.CreatedBy}
}

// DigestCaseHeader is the content digest of a case_created link.
func DigestCaseHeader(h CaseHeader) Hash {
	h.ScheduledStart, h.CreatedAt = NormTime(h.ScheduledStart), NormTime(h.CreatedAt)
	return digestJSON("case_created", h)
}

// DigestDetails is the content digest of a details_updated link.
func DigestDetails(caseID uuid.UUID, d DetailsVersion) Hash {
	d.RecordedAt = NormTime(d.RecordedAt)
	return digestJSON("details", struct {
		CaseID uuid.UUID `json:"case_id"`
		DetailsVersion
	}{caseID, d})
}

// DigestEntry is the content digest of an entry, correction or addendum link.
func DigestEntry(e Entry) Hash {
	e.OccurredAt, e.RecordedAt = NormTime(e.OccurredAt), NormTime(e.RecordedAt)
	if m := e.Detail.ArtifactMark; m != nil {
		mm := *m
		mm.Start, mm.End = NormTime(mm.Start), NormTime(mm.End)
		e.Detail.ArtifactMark = &mm
	}
	return digestJSON("entry", e)
}

// DigestClose is the content digest of a case_closed link.
func DigestClose(caseID uuid.UUID, closedAt time.Time, closedBy string) Hash {
	return digestJSON("case_closed", struct {
		CaseID   uuid.UUID `json:"case_id"`
		ClosedAt time.Time `json:"closed_at"`
		ClosedBy string    `json:"closed_by"`
	}{caseID, NormTime(closedAt), closedBy})
}

// DigestSignature is the content digest of a signature link.
func DigestSignature(s Signature) Hash {
	s.SignedAt = NormTime(s.SignedAt)
	return digestJSON("signature", s)
}

// LinkKindOf returns the link kind that records entry e.
func LinkKindOf(e *Entry) LinkKind {
	switch {
	case e.Kind == EntryAddendum:
		return LinkAddendum
	case e.Supersedes != uuid.Nil:
		return LinkCorrection
	default:
		return LinkEntry
	}
}

// SampleRef is the ledger ref of a sample batch.
func SampleRef(sourceID string, seq int64) string { return sourceID + "/" + strconv.FormatInt(seq, 10) }

// ContentKey identifies a stored datum independently of its link, so the
// verifier can match links to content and find content no link covers.
func ContentKey(kind LinkKind, ref string) string {
	switch kind {
	case LinkEntry, LinkCorrection, LinkAddendum:
		return "entry:" + ref
	}
	return string(kind) + ":" + ref
}
