package charting

import (
	"time"

	"github.com/google/uuid"
)

// LinkIdentity records an identity reconciliation: the patient identity of a
// case completed or corrected after the fact (a case signed without an MRN,
// an EHR's patient merge), without a new details version. Details cannot
// change once a case is closed, and the record must not be rewritten to
// deliver it; the reconciliation is appended beside it instead.
const LinkIdentity LinkKind = "identity_reconciled"

// IdentityReconciliation is one appended patient identity. Its ledger ref is
// its own link's sequence (Seq). Every identity field is protected health
// information: stored, hashed and exported, never logged. JSON tags are the
// canonical encoding on the ledger and never change.
type IdentityReconciliation struct {
	CaseID             uuid.UUID `json:"case_id"`
	Seq                int64     `json:"seq"`
	MRN                string    `json:"mrn"`
	AssigningAuthority string    `json:"assigning_authority"`
	FamilyName         string    `json:"family_name,omitempty"`
	GivenName          string    `json:"given_name,omitempty"`
	BirthDate          string    `json:"birth_date,omitempty"` // YYYY-MM-DD
	Reason             string    `json:"reason"`
	Actor              string    `json:"actor"`
	RecordedAt         time.Time `json:"recorded_at"`
}

// Validate checks a reconciliation's identity fields and reason: MRN,
// assigning authority and reason are required (the point of one is a
// deliverable identity, and why it was needed).
func (r *IdentityReconciliation) Validate(v *Violations) {
	for _, f := range []struct {
		name, value string
		max         int
	}{{"mrn", r.MRN, 64}, {"assigning_authority", r.AssigningAuthority, 64}} {
		if f.value == "" {
			v.Add(f.name, "required")
		} else {
			CheckText(v, f.name, f.value, f.max, false)
		}
	}
	CheckText(v, "family_name", r.FamilyName, 200, false)
	CheckText(v, "given_name", r.GivenName, 200, false)
	if r.BirthDate != "" {
		if _, err := time.Parse(time.DateOnly, r.BirthDate); err != nil {
			v.Add("birth_date", "must be YYYY-MM-DD")
		}
	}
	if r.Reason == "" {
		v.Add("reason", "required: say why the identity is reconciled")
	} else {
		CheckText(v, "reason", r.Reason, 1000, true)
	}
}

// Apply puts the reconciled identity in place of p's: MRN and assigning
// authority always, name and birth date when the reconciliation gives them.
func (r *IdentityReconciliation) Apply(p *Patient) {
	p.MRN, p.MRNAssigningAuthority = r.MRN, r.AssigningAuthority
	if r.FamilyName != "" {
		p.FamilyName = r.FamilyName
	}
	if r.GivenName != "" {
		p.GivenName = r.GivenName
	}
	if r.BirthDate != "" {
		p.BirthDate = r.BirthDate
	}
}

// DigestIdentity is the content digest of an identity_reconciled link.
func DigestIdentity(r IdentityReconciliation) Hash {
	r.RecordedAt = NormTime(r.RecordedAt)
	return digestJSON("identity_reconciliation", r)
}
