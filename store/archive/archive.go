// Package archive moves one perfusion case between stores — typically from a
// pilot site's embedded SQLite store to the hospital's PostgreSQL — as a
// portable file, without touching the record: the same ledger, the same
// hashes, the same signatures. Export writes a case; Import writes it into
// another backend exactly as it was stored (it never re-chains or re-signs)
// after proving, from the archive alone, that the content still hashes to
// the archived ledger.
//
// # Format
//
// An archive is UTF-8 text, one JSON object per line (NDJSON), each line
// ending in "\n". Every line has a "type" member naming its kind. Lines come
// in this order, which is also the order Import replays them in:
//
//  1. "archive" — exactly one, first: {"type":"archive",
//     "format":"perfusion-case-archive","version":1,"case_id":…}. format and
//     version identify this layout; a reader refuses versions it does not
//     know.
//  2. "case" — exactly one: the case header (case_id, kind, site, room,
//     scheduled_start, created_at, created_by) and state (status,
//     started_at, closed_at, closed_by, details_version, head_seq,
//     head_hash). started_at, closed_at and closed_by are omitted while
//     unset.
//  3. "details" — every details version, oldest first: version, details,
//     reason, actor, recorded_at (charting.DetailsVersion's canonical JSON).
//  4. "entry" — every entry, history included (corrected entries, voids,
//     addenda), in the order they were recorded, with the fields of
//     charting.Entry's canonical JSON (entry_id, case_id, kind, occurred_at,
//     recorded_at, late, author, supersedes, reason, void, detail). A
//     correction therefore always follows the entry it supersedes.
//  5. "samples" — every stored sample batch, in any order: source_id, seq,
//     recorded_at, actor, min_time_ms, max_time_ms, sample_count and block,
//     the stored samplecodec block in standard base64.
//  6. "signature" — every signature by number (charting.Signature's JSON:
//     case_id, number, signer, display_name, meaning, signed_at, covers_seq,
//     covers_hash).
//  7. "identity" — every identity reconciliation in ledger order
//     (charting.IdentityReconciliation's JSON: case_id, seq, mrn,
//     assigning_authority, family_name, given_name, birth_date — the last
//     three omitted when empty — reason, actor, recorded_at). A case
//     without one has no such line, so its archive is what it was before
//     reconciliations existed; a reader that predates them refuses an
//     archive that has one (an unknown line type) rather than drop it.
//  8. "link" — every ledger link in sequence order from 1: seq, kind, ref,
//     actor, reason (omitted when empty), recorded_at, prev_hash, hash.
//  9. "end" — exactly one, last: counts of the lines above ("details",
//     "entries", "sample_batches", "signatures", "identity_reconciliations"
//     (omitted when 0), "links"), the total number of samples ("samples")
//     and the head ("head_seq", "head_hash"). Its absence means the
//     archive was cut short.
//
// Lines may end in "\r\n"; blank lines are ignored. Times are RFC 3339 in UTC with at most microsecond precision (the
// record's precision); hashes are 64 lowercase hex digits; ids are UUIDs in
// canonical form. Lines other than "archive", "entry" and "signature" carry
// no case id: everything in an archive belongs to its one case. Unknown
// members are refused, so a reader never silently drops data it does not
// understand; a later layout gets a new version.
//
// The ledger covers everything in the archive that is part of the record.
// The few stored values it does not cover are derived, and Import checks
// them against what they derive from: a batch's time range, sample count,
// recorded_at and actor (from its block and its link), the case's
// started_at (from the first charting link) and its details_version. Source
// watermarks are not archived; Import recomputes them from the batches.
package archive

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
)

// Format is the value of the "format" member of an archive's first line.
const Format = "perfusion-case-archive"

// Version is the archive layout version Export writes and Import reads.
const Version = 1

// ErrInvalid is matched (errors.Is) by every error Import returns because
// the archive itself is malformed, incomplete or altered — as opposed to a
// failure to read it or to write the database.
var ErrInvalid = errors.New("invalid case archive")

// FormatError reports an archive that is not well formed: a line that does
// not parse, a line out of order, a missing or inconsistent part. Nothing
// was stored.
type FormatError struct {
	// Line is the 1-based line number, or 0 when the problem concerns the
	// archive as a whole.
	Line int
	// Msg says what is wrong, without patient data.
	Msg string
}

// Error describes the problem and where it is.
func (e *FormatError) Error() string {
	if e.Line == 0 {
		return "case archive: " + e.Msg
	}
	return fmt.Sprintf("case archive: line %d: %s", e.Line, e.Msg)
}

// Is makes a *FormatError match ErrInvalid.
func (e *FormatError) Is(target error) bool { return target == ErrInvalid }

// VerificationError reports an archive whose content does not match its
// ledger: it was altered, or something it must hold is missing. Bad names
// the first link (or datum) found wrong. Nothing was stored.
type VerificationError struct {
	Bad charting.BadLink
}

// Error names the bad link, the problem and what is wrong.
func (e *VerificationError) Error() string {
	b := e.Bad
	where := "ledger"
	what := string(b.Kind)
	if b.Ref != "" {
		what += " " + b.Ref
	}
	switch {
	case b.Seq > 0 && b.Kind != "":
		where = fmt.Sprintf("link %d (%s)", b.Seq, what)
	case b.Seq > 0:
		where = fmt.Sprintf("link %d", b.Seq)
	case b.Kind != "":
		where = what
	}
	return fmt.Sprintf("case archive does not verify: %s: %s: %s", where, b.Problem, b.Detail)
}

// Is makes a *VerificationError match ErrInvalid.
func (e *VerificationError) Is(target error) bool { return target == ErrInvalid }

// TextError reports a case whose archived text breaks the record's text
// rules (charting.TextProblem): a NUL or a control character kept by the
// store it came from, which another store cannot hold or the rules now
// refuse. The archive verified; nothing was stored. The text is covered by
// the case's hash chain and signatures, so it is never rewritten on the
// way in: ImportOptions.AcceptNonconformingText imports it as archived
// where the target store can hold it (PostgreSQL cannot hold U+0000 at all).
type TextError struct {
	CaseID     uuid.UUID
	Violations []charting.FieldViolation
}

// Error names the case and every field, never the text.
func (e *TextError) Error() string {
	parts := make([]string, 0, len(e.Violations))
	for _, v := range e.Violations {
		parts = append(parts, v.Field+": "+v.Description)
	}
	return fmt.Sprintf("case %s holds text the record's rules refuse (%s); it was not imported: see \"Text the rules refuse\" in the README",
		e.CaseID, strings.Join(parts, "; "))
}

// Line types: the "type" member of each line.
const (
	typeArchive   = "archive"
	typeCase      = "case"
	typeDetails   = "details"
	typeEntry     = "entry"
	typeSamples   = "samples"
	typeSignature = "signature"
	typeIdentity  = "identity"
	typeLink      = "link"
	typeEnd       = "end"
)

// lineRank is the position of each line type in an archive.
var lineRank = map[string]int{
	typeArchive: 0, typeCase: 1, typeDetails: 2, typeEntry: 3,
	typeSamples: 4, typeSignature: 5, typeIdentity: 6, typeLink: 7, typeEnd: 8,
}

type archiveLine struct {
	Type    string    `json:"type"`
	Format  string    `json:"format"`
	Version int       `json:"version"`
	CaseID  uuid.UUID `json:"case_id"`
}

type caseLine struct {
	Type           string          `json:"type"`
	CaseID         uuid.UUID       `json:"case_id"`
	Kind           charting.Kind   `json:"kind"`
	Site           string          `json:"site"`
	Room           string          `json:"room"`
	ScheduledStart time.Time       `json:"scheduled_start"`
	CreatedAt      time.Time       `json:"created_at"`
	CreatedBy      string          `json:"created_by"`
	Status         charting.Status `json:"status"`
	StartedAt      time.Time       `json:"started_at,omitzero"`
	ClosedAt       time.Time       `json:"closed_at,omitzero"`
	ClosedBy       string          `json:"closed_by,omitempty"`
	DetailsVersion int64           `json:"details_version"`
	HeadSeq        int64           `json:"head_seq"`
	HeadHash       hexHash         `json:"head_hash"`
}

func caseLineOf(c *charting.Case) caseLine {
	return caseLine{Type: typeCase, CaseID: c.ID, Kind: c.Kind, Site: c.Site, Room: c.Room,
		ScheduledStart: c.ScheduledStart, CreatedAt: c.CreatedAt, CreatedBy: c.CreatedBy,
		Status: c.Status, StartedAt: c.StartedAt, ClosedAt: c.ClosedAt, ClosedBy: c.ClosedBy,
		DetailsVersion: c.DetailsVersion, HeadSeq: c.Head.Seq, HeadHash: hexHash(c.Head.Hash)}
}

// toCase returns the case the line describes, without details or
// signatures.
func (l *caseLine) toCase() charting.Case {
	return charting.Case{ID: l.CaseID, Kind: l.Kind, Site: l.Site, Room: l.Room,
		ScheduledStart: l.ScheduledStart, CreatedAt: l.CreatedAt, CreatedBy: l.CreatedBy,
		Status: l.Status, StartedAt: l.StartedAt, ClosedAt: l.ClosedAt, ClosedBy: l.ClosedBy,
		DetailsVersion: l.DetailsVersion, Head: charting.Head{Seq: l.HeadSeq, Hash: charting.Hash(l.HeadHash)}}
}

type detailsLine struct {
	Type string `json:"type"`
	charting.DetailsVersion
}

type entryLine struct {
	Type string `json:"type"`
	charting.Entry
}

type samplesLine struct {
	Type        string    `json:"type"`
	SourceID    string    `json:"source_id"`
	Seq         int64     `json:"seq"`
	RecordedAt  time.Time `json:"recorded_at"`
	Actor       string    `json:"actor"`
	MinTimeMs   int64     `json:"min_time_ms"`
	MaxTimeMs   int64     `json:"max_time_ms"`
	SampleCount int       `json:"sample_count"`
	Block       []byte    `json:"block"`
}

// signatureLine has charting.Signature's members, in its order.
type signatureLine struct {
	Type        string                    `json:"type"`
	CaseID      uuid.UUID                 `json:"case_id"`
	Number      int64                     `json:"number"`
	Signer      string                    `json:"signer"`
	DisplayName string                    `json:"display_name"`
	Meaning     charting.SignatureMeaning `json:"meaning"`
	SignedAt    time.Time                 `json:"signed_at"`
	CoversSeq   int64                     `json:"covers_seq"`
	CoversHash  hexHash                   `json:"covers_hash"`
	StaffID     string                    `json:"staff_id,omitempty"`
}

func signatureLineOf(s *charting.Signature) signatureLine {
	return signatureLine{Type: typeSignature, CaseID: s.CaseID, Number: s.Number, Signer: s.Signer, DisplayName: s.DisplayName,
		Meaning: s.Meaning, SignedAt: s.SignedAt, CoversSeq: s.CoversSeq, CoversHash: hexHash(s.CoversHash), StaffID: s.StaffID}
}

func (l *signatureLine) toSignature() charting.Signature {
	return charting.Signature{CaseID: l.CaseID, Number: l.Number, Signer: l.Signer, DisplayName: l.DisplayName,
		Meaning: l.Meaning, SignedAt: l.SignedAt, CoversSeq: l.CoversSeq, CoversHash: charting.Hash(l.CoversHash), StaffID: l.StaffID}
}

type identityLine struct {
	Type string `json:"type"`
	charting.IdentityReconciliation
}

type linkLine struct {
	Type       string            `json:"type"`
	Seq        int64             `json:"seq"`
	Kind       charting.LinkKind `json:"kind"`
	Ref        string            `json:"ref"`
	Actor      string            `json:"actor"`
	Reason     string            `json:"reason,omitempty"`
	RecordedAt time.Time         `json:"recorded_at"`
	PrevHash   hexHash           `json:"prev_hash"`
	Hash       hexHash           `json:"hash"`
}

func linkLineOf(l *charting.Link) linkLine {
	return linkLine{Type: typeLink, Seq: l.Seq, Kind: l.Kind, Ref: l.Ref, Actor: l.Actor, Reason: l.Reason,
		RecordedAt: l.RecordedAt, PrevHash: hexHash(l.PrevHash), Hash: hexHash(l.Hash)}
}

func (l *linkLine) toLink(caseID uuid.UUID) charting.Link {
	return charting.Link{CaseID: caseID, Seq: l.Seq, Kind: l.Kind, Ref: l.Ref, Actor: l.Actor, Reason: l.Reason,
		RecordedAt: l.RecordedAt, PrevHash: charting.Hash(l.PrevHash), Hash: charting.Hash(l.Hash)}
}

// endCounts are the counts an archive's last line declares.
type endCounts struct {
	Details       int64 `json:"details"`
	Entries       int64 `json:"entries"`
	SampleBatches int64 `json:"sample_batches"`
	Samples       int64 `json:"samples"`
	Signatures    int64 `json:"signatures"`
	// Identities is omitted when 0, so archives of cases without a
	// reconciliation are unchanged.
	Identities int64 `json:"identity_reconciliations,omitempty"`
	Links      int64 `json:"links"`
}

type endLine struct {
	Type string `json:"type"`
	endCounts
	HeadSeq  int64   `json:"head_seq"`
	HeadHash hexHash `json:"head_hash"`
}

// hexHash is a charting.Hash as 64 hex digits. Its decoder checks the
// length itself: charting.Hash's UnmarshalText panics on longer input.
type hexHash charting.Hash

func (h hexHash) MarshalText() ([]byte, error) { return charting.Hash(h).MarshalText() }

func (h *hexHash) UnmarshalText(b []byte) error {
	if len(b) != 2*len(h) {
		return fmt.Errorf("a hash must be %d hex digits", 2*len(h))
	}
	return (*charting.Hash)(h).UnmarshalText(b)
}
