package charting

import (
	"math"
	"time"

	"github.com/google/uuid"
)

// Status is the lifecycle state of a case. It only moves forward:
// planned → in progress → closed → signed.
type Status string

// Case statuses, stored as these strings.
const (
	StatusPlanned    Status = "planned"
	StatusInProgress Status = "in_progress"
	StatusClosed     Status = "closed"
	StatusSigned     Status = "signed"
)

// Kind is the kind of extracorporeal support.
type Kind string

// Case kinds.
const (
	KindCPB  Kind = "cpb"
	KindECMO Kind = "ecmo"
)

// Case is the state of a perfusion case as the store keeps it.
type Case struct {
	ID             uuid.UUID
	Kind           Kind
	Site           string
	Room           string
	ScheduledStart time.Time
	CreatedAt      time.Time
	CreatedBy      string
	Status         Status
	StartedAt      time.Time // zero while planned
	ClosedAt       time.Time // zero before closing
	ClosedBy       string
	DetailsVersion int64
	Details        Details
	Signatures     []Signature
	Head           Head
}

// Head is the latest link of a case's ledger.
type Head struct {
	Seq  int64
	Hash Hash
}

// CanChart reports whether samples and entries may be recorded.
func (c *Case) CanChart() error {
	switch c.Status {
	case StatusPlanned, StatusInProgress:
		return nil
	default:
		return Preconditionf("case is %s: charting is closed", c.Status)
	}
}

// CanUpdateDetails reports whether the details may change.
func (c *Case) CanUpdateDetails() error {
	if c.Status == StatusSigned {
		return Preconditionf("case is signed: details can no longer change; add an addendum")
	}
	return nil
}

// CanClose reports whether the case may be closed.
func (c *Case) CanClose() error {
	switch c.Status {
	case StatusPlanned, StatusInProgress:
		return nil
	default:
		return Preconditionf("case is %s: already closed", c.Status)
	}
}

// CanSign reports whether the case may be signed.
func (c *Case) CanSign() error {
	switch c.Status {
	case StatusClosed, StatusSigned:
		return nil
	default:
		return Preconditionf("case is %s: close it before signing", c.Status)
	}
}

// CanAddAddendum reports whether an addendum may be added.
func (c *Case) CanAddAddendum() error {
	if c.Status != StatusSigned {
		return Preconditionf("case is %s: addenda are for signed cases; chart or correct entries instead", c.Status)
	}
	return nil
}

// SignatureMeaning is what a signer attests.
type SignatureMeaning string

// Signature meanings.
const (
	MeaningAuthored SignatureMeaning = "authored"
	MeaningReviewed SignatureMeaning = "reviewed"
	MeaningApproved SignatureMeaning = "approved"
)

// Signature binds a signer, a meaning and a time to a ledger head.
type Signature struct {
	CaseID      uuid.UUID        `json:"case_id"`
	Number      int64            `json:"number"` // 1 for the first signature
	Signer      string           `json:"signer"`
	DisplayName string           `json:"display_name"`
	Meaning     SignatureMeaning `json:"meaning"`
	SignedAt    time.Time        `json:"signed_at"`
	CoversSeq   int64            `json:"covers_seq"`
	CoversHash  Hash             `json:"covers_hash"`
	// StaffID is the signer's staff identifier, taken from the token claim
	// the site configures (perfusiond --staff-id-claim) when the login
	// subject is not the staff id the EHR knows; exports send it as the
	// signer. omitempty: the signature's JSON is hashed into the ledger
	// (DigestSignature), and signatures made without it keep their digest.
	StaffID string `json:"staff_id,omitempty"`
}

// BSAFormula names a body-surface-area formula.
type BSAFormula string

// BSA formulas (docs/domain.md).
const (
	BSAMosteller BSAFormula = "mosteller"
	BSADuBois    BSAFormula = "dubois"
	BSAHaycock   BSAFormula = "haycock"
)

// BSA returns body surface area in m² for height in cm and weight in kg, or
// 0 when either is unknown.
func BSA(f BSAFormula, heightCm, weightKg float64) float64 {
	if heightCm <= 0 || weightKg <= 0 {
		return 0
	}
	var v float64
	switch f {
	case BSADuBois:
		v = 0.007184 * math.Pow(weightKg, 0.425) * math.Pow(heightCm, 0.725)
	case BSAHaycock:
		v = 0.024265 * math.Pow(weightKg, 0.5378) * math.Pow(heightCm, 0.3964)
	default:
		v = math.Sqrt(heightCm * weightKg / 3600)
	}
	return math.Round(v*1000) / 1000
}

// SignatureBy returns the signature of signer with meaning among sigs, or
// nil. A signer signs with each meaning once, so a retried sign-off finds
// its first signature here.
func SignatureBy(sigs []Signature, signer string, meaning SignatureMeaning) *Signature {
	for i := range sigs {
		if sigs[i].Signer == signer && sigs[i].Meaning == meaning {
			return &sigs[i]
		}
	}
	return nil
}

// MaySign reports whether signer may add a signature with meaning to a
// record already carrying sigs: a review attests that a second person read
// the record, so the author cannot review it, nor a reviewer author it.
func MaySign(sigs []Signature, signer string, meaning SignatureMeaning) error {
	var conflicting SignatureMeaning
	switch meaning {
	case MeaningReviewed:
		conflicting = MeaningAuthored
	case MeaningAuthored:
		conflicting = MeaningReviewed
	default:
		return nil
	}
	if SignatureBy(sigs, signer, conflicting) != nil {
		return Preconditionf("the signer already signed this record as %s: a review must be signed by a second person", conflicting)
	}
	return nil
}
