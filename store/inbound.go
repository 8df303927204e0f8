package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
)

// What the EHR sends. The inbound HL7 v2 listener (package hl7/inbound)
// keeps every message an allowed sender delivered in a journal, beside the
// record and not part of it: the message as received (patient data,
// database only), the acknowledgement it was answered with, and what it
// changed in the record (case ids, ledger sequences and field names, never
// patient data). A resend of a message (same sender, MSH-3, MSH-4 and
// MSH-10) is answered from the journal with the acknowledgement first sent
// and changes nothing. Beside the journal, a patient index keeps the latest
// demographics each patient identifier was given, and the bookings map each
// appointment of the OR schedule to the planned case that holds it.
//
// The changes a message makes to the record go through the record's own
// writes (CreateCase, UpdateCaseDetails, ReconcileIdentity), each a ledger
// link; the journal row, the patient index and the bookings are written
// after them in one transaction (RecordInbound). A crash in between loses
// only the acknowledgement: the sender resends and the handler's writes are
// idempotent, so the record keeps exactly one copy.

// InboundKey identifies a message the way its sender does.
type InboundKey struct {
	// Sender is the allowlist entry or certificate name of the connection.
	Sender string
	// SendingApplication and SendingFacility are MSH-3.1 and MSH-4.1.
	SendingApplication, SendingFacility string
	// ControlID is MSH-10, unique per sending application.
	ControlID string
}

// InboundMessage is one journal row.
type InboundMessage struct {
	ID int64
	InboundKey
	// MessageType is MSH-9.1^MSH-9.2, e.g. "SIU^S12".
	MessageType string
	ReceivedAt  time.Time
	// Content is the message as received: patient data. Never log it.
	Content       []byte
	ContentSHA256 [32]byte
	// AckCode is what it was answered: AA, AE or AR.
	AckCode string
	// Ack is the acknowledgement as sent, returned again to a resend.
	Ack []byte
	// Error says why AE or AR, without patient data.
	Error       string
	Outcome     InboundOutcome
	ProcessedAt time.Time
	// Attempts counts processings: the first, each resend of a message
	// answered AR, and each replay.
	Attempts int
}

// Inbound change actions (InboundChange.Action).
const (
	InboundCreated    = "created"             // a planned case was created
	InboundDetails    = "details_updated"     // a new details version
	InboundIdentity   = "identity_reconciled" // an identity link
	InboundCancelled  = "cancelled"           // the booking was cancelled
	InboundReplaced   = "replaced"            // moved: a new planned case holds the booking
	InboundUnchanged  = "unchanged"           // named, already as the message says
	InboundNotApplied = "not_applied"         // named, but the case's state kept the change out
	InboundNoted      = "noted"               // named, nothing to do (a cancelled visit)
)

// InboundOutcome is what a message did. It holds no patient data: case ids,
// ledger sequences, field names and fixed texts.
type InboundOutcome struct {
	Changes []InboundChange `json:"changes,omitempty"`
	// Notes are remarks on the message as a whole ("room not configured:
	// ignored").
	Notes []string `json:"notes,omitempty"`
	// Replays lists earlier processings replaced by a replay (newest last).
	Replays []InboundReplay `json:"replays,omitempty"`
}

// InboundChange is one effect on one case.
type InboundChange struct {
	CaseID uuid.UUID `json:"case_id"`
	Action string    `json:"action"`
	// LedgerSeq is the link the change appended (0 for none).
	LedgerSeq int64 `json:"ledger_seq,omitempty"`
	// Fields names what changed or was kept out (details JSON paths).
	Fields []string `json:"fields,omitempty"`
	// Detail explains, without patient data.
	Detail string `json:"detail,omitempty"`
}

// InboundReplay is an earlier processing result of a replayed message.
type InboundReplay struct {
	AckCode     string    `json:"ack_code"`
	Error       string    `json:"error,omitempty"`
	ProcessedAt time.Time `json:"processed_at"`
	By          string    `json:"by"`
}

// CaseIDs returns the distinct cases the outcome names, in order.
func (o InboundOutcome) CaseIDs() []uuid.UUID {
	var out []uuid.UUID
	seen := map[uuid.UUID]bool{}
	for _, c := range o.Changes {
		if c.CaseID != uuid.Nil && !seen[c.CaseID] {
			seen[c.CaseID] = true
			out = append(out, c.CaseID)
		}
	}
	return out
}

// InboundPatient is what the ADT feed last said about one patient
// identifier. Every field is patient data.
type InboundPatient struct {
	AssigningAuthority string  `json:"-"`
	MRN                string  `json:"-"`
	FamilyName         string  `json:"family_name,omitempty"`
	GivenName          string  `json:"given_name,omitempty"`
	BirthDate          string  `json:"birth_date,omitempty"` // YYYY-MM-DD
	Sex                string  `json:"sex,omitempty"`        // female, male, other, unknown
	HeightCm           float64 `json:"height_cm,omitempty"`
	WeightKg           float64 `json:"weight_kg,omitempty"`
	// EncounterID is the latest visit number (PV1-19).
	EncounterID string `json:"encounter_id,omitempty"`
	// MergedInto names the identifier this one was merged into (ADT A40).
	MergedIntoAuthority string    `json:"merged_into_authority,omitempty"`
	MergedIntoMRN       string    `json:"merged_into_mrn,omitempty"`
	UpdatedAt           time.Time `json:"-"`
	MessageID           int64     `json:"-"`
}

// InboundBooking maps an appointment of the OR schedule to its case.
type InboundBooking struct {
	Site, AppointmentID string
	CaseID              uuid.UUID
	UpdatedAt           time.Time
	MessageID           int64
}

// InboundWrites are the journal's companions, written in the journal row's
// transaction. MessageID fields are filled in by the backend.
type InboundWrites struct {
	Patients []InboundPatient
	Bookings []InboundBooking
}

// InboundFilter selects journal rows. Zero values match anything.
type InboundFilter struct {
	Sender      string
	MessageType string // exact, e.g. "ADT^A08"
	AckCode     string
	CaseID      uuid.UUID
	From, To    time.Time // received_at in [From, To)
	// BeforeID continues a listing after the row with this id (the
	// listing is newest first, by id).
	BeforeID int64
	Limit    int
}

// InboundBackend is a backend that keeps the inbound journal (both do).
type InboundBackend interface {
	// InboundMessageByKey returns the journal row of a key, without its
	// content; charting.ErrNotFound when there is none.
	InboundMessageByKey(ctx context.Context, k InboundKey) (*InboundMessage, error)
	// InboundMessage returns a journal row by id; charting.ErrNotFound.
	InboundMessage(ctx context.Context, id int64) (*InboundMessage, error)
	// RecordInbound stores m (a new row; or, when m.ID is set, the new
	// processing result of that row: ack, error, outcome, processed_at,
	// attempts), the cases its outcome names, and w, in one transaction,
	// and returns the row's id. ErrDuplicate when a new row's key exists.
	RecordInbound(ctx context.Context, m *InboundMessage, w InboundWrites) (int64, error)
	// ListInboundMessages returns rows matching f, newest first, at most
	// f.Limit, without their content.
	ListInboundMessages(ctx context.Context, f InboundFilter) ([]InboundMessage, error)
	// InboundPatient returns the patient index row of an identifier;
	// charting.ErrNotFound when there is none.
	InboundPatient(ctx context.Context, authority, mrn string) (*InboundPatient, error)
	// InboundBooking returns the case holding an appointment;
	// charting.ErrNotFound when there is none.
	InboundBooking(ctx context.Context, site, appointmentID string) (*InboundBooking, error)
	// CasesByMRN returns the cases of the sites whose current details, or
	// one of whose identity reconciliations, carry the MRN (any
	// authority: the caller compares the effective identity).
	CasesByMRN(ctx context.Context, sites []string, mrn string) ([]uuid.UUID, error)
	// CasesByEncounter returns the cases of the sites whose current
	// details carry the encounter id.
	CasesByEncounter(ctx context.Context, sites []string, encounterID string) ([]uuid.UUID, error)
}

// ErrNoInbound is returned for a backend without the inbound journal.
var ErrNoInbound = errors.New("store: backend keeps no inbound journal")

// Inbound returns the inbound journal of the store's backend.
func (s *Store) Inbound() (InboundBackend, error) {
	ib, ok := capability[InboundBackend](s.b)
	if !ok {
		return nil, ErrNoInbound
	}
	return ib, nil
}

// EffectiveIdentity is a case's patient identity as exports render it: its
// current details with its latest identity reconciliation applied.
func (s *Store) EffectiveIdentity(ctx context.Context, c *charting.Case) (charting.Patient, []charting.IdentityReconciliation, error) {
	p := c.Details.Patient
	rs, err := s.b.IdentityReconciliations(ctx, c.ID)
	if err != nil {
		return p, nil, fmt.Errorf("effective identity: %w", err)
	}
	if len(rs) > 0 {
		rs[len(rs)-1].Apply(&p)
	}
	return p, rs, nil
}

// IdentityRecord is one step of a case's identity history: a details
// version that set or changed the patient's identity, or an identity
// reconciliation.
type IdentityRecord struct {
	// Source is "details" or "reconciliation".
	Source string
	// Seq is the ledger link that recorded it.
	Seq int64
	// DetailsVersion is the details version (Source "details").
	DetailsVersion     int64
	MRN                string
	AssigningAuthority string
	FamilyName         string
	GivenName          string
	BirthDate          string
	Reason             string
	Actor              string
	RecordedAt         time.Time
}

// IdentityHistory returns how a case's patient identity came to be, oldest
// first: each details version whose identity (MRN, authority, names, birth
// date) differs from the version before it, and every identity
// reconciliation, in ledger order, with the identity in force now.
func (s *Store) IdentityHistory(ctx context.Context, caseID uuid.UUID) ([]IdentityRecord, charting.Patient, error) {
	c, err := s.b.GetCase(ctx, caseID)
	if err != nil {
		return nil, charting.Patient{}, fmt.Errorf("identity history: %w", err)
	}
	var out []IdentityRecord
	err = s.b.Snapshot(ctx, func(ctx context.Context, r Reader) error {
		versions, err := r.DetailsVersions(ctx, caseID)
		if err != nil {
			return err
		}
		rs, err := r.IdentityReconciliations(ctx, caseID)
		if err != nil {
			return err
		}
		links, err := r.Links(ctx, caseID, 0, 0)
		if err != nil {
			return err
		}
		detailsSeq := map[string]int64{}
		for _, l := range links {
			if l.Kind == charting.LinkDetails {
				detailsSeq[l.Ref] = l.Seq
			}
		}
		var prev *charting.Patient
		var recs []IdentityRecord
		for i := range versions {
			p := versions[i].Details.Patient
			if prev != nil && sameIdentity(*prev, p) {
				continue
			}
			prev = &p
			recs = append(recs, IdentityRecord{Source: "details", Seq: detailsSeq[fmt.Sprint(versions[i].Version)],
				DetailsVersion: versions[i].Version, MRN: p.MRN, AssigningAuthority: p.MRNAssigningAuthority,
				FamilyName: p.FamilyName, GivenName: p.GivenName, BirthDate: p.BirthDate,
				Reason: versions[i].Reason, Actor: versions[i].Actor, RecordedAt: versions[i].RecordedAt})
		}
		for _, x := range rs {
			recs = append(recs, IdentityRecord{Source: "reconciliation", Seq: x.Seq, MRN: x.MRN, AssigningAuthority: x.AssigningAuthority,
				FamilyName: x.FamilyName, GivenName: x.GivenName, BirthDate: x.BirthDate, Reason: x.Reason, Actor: x.Actor, RecordedAt: x.RecordedAt})
		}
		// Ledger order.
		for i := 1; i < len(recs); i++ {
			for j := i; j > 0 && recs[j].Seq < recs[j-1].Seq; j-- {
				recs[j], recs[j-1] = recs[j-1], recs[j]
			}
		}
		out = recs
		return nil
	})
	if err != nil {
		return nil, charting.Patient{}, fmt.Errorf("identity history: %w", err)
	}
	p, _, err := s.EffectiveIdentity(ctx, c)
	return out, p, err
}

// sameIdentity compares the identifying fields of two patients.
func sameIdentity(a, b charting.Patient) bool {
	return a.MRN == b.MRN && a.MRNAssigningAuthority == b.MRNAssigningAuthority &&
		a.FamilyName == b.FamilyName && a.GivenName == b.GivenName && a.BirthDate == b.BirthDate
}
