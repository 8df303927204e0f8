package charting

import (
	"testing"
	"time"

	"github.com/google/uuid"
)

// TestSignatureDigestWithoutStaffID: StaffID was added to Signature, whose
// JSON is hashed into the ledger. A signature without it must digest as
// signatures made before the field existed (the struct as it was), so
// their ledgers still verify; one with it digests differently (covered).
func TestSignatureDigestWithoutStaffID(t *testing.T) {
	type before struct { // charting.Signature before the staff id
		CaseID      uuid.UUID        `json:"case_id"`
		Number      int64            `json:"number"`
		Signer      string           `json:"signer"`
		DisplayName string           `json:"display_name"`
		Meaning     SignatureMeaning `json:"meaning"`
		SignedAt    time.Time        `json:"signed_at"`
		CoversSeq   int64            `json:"covers_seq"`
		CoversHash  Hash             `json:"covers_hash"`
	}
	at := time.Date(2026, 11, 27, 10, 40, 0, 0, time.UTC)
	s := Signature{CaseID: uuid.UUID{1}, Number: 42, Signer: "perf.kowalski", DisplayName: "Anna Kowalski, CCP",
		Meaning: MeaningAuthored, SignedAt: at, CoversSeq: 41, CoversHash: Hash{9}}
	old := before{s.CaseID, s.Number, s.Signer, s.DisplayName, s.Meaning, at, s.CoversSeq, s.CoversHash}
	if DigestSignature(s) != digestJSON("signature", old) {
		t.Fatal("a signature without a staff id no longer digests as before: existing ledgers would fail verification")
	}
	s.StaffID = "S-40127"
	if DigestSignature(s) == digestJSON("signature", old) {
		t.Fatal("the staff id is not covered by the signature's digest")
	}
}
