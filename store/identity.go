package store

import (
	"context"
	"fmt"
	"strconv"

	"github.com/google/uuid"

	"perfusion/charting"
)

// IdentityUpdate is a request to reconcile a case's patient identity.
type IdentityUpdate struct {
	MRN, AssigningAuthority string
	// FamilyName, GivenName and BirthDate are optional; empty keeps the
	// details' (or an earlier reconciliation's) value.
	FamilyName, GivenName, BirthDate string
	Reason                           string
}

// ReconcileIdentity appends an identity reconciliation to a case in any
// state, signed included, without touching its details: a case signed
// without an MRN is completed this way, and the EHR's merges land here.
// Its ledger link (charting.LinkIdentity) is covered by the chain like any
// datum, so verification and later signatures cover it.
//
// A reconciliation is not a new record version: it queues no delivery.
// Exports render a version as the record plus the case's latest
// reconciled identity, so in the same transaction every held delivery of
// the case (one the renderers refused for an incomplete identity) is made
// pending again, due now.
func (s *Store) ReconcileIdentity(ctx context.Context, actor string, caseID uuid.UUID, u IdentityUpdate) (*charting.IdentityReconciliation, error) {
	r := charting.IdentityReconciliation{CaseID: caseID, MRN: u.MRN, AssigningAuthority: u.AssigningAuthority,
		FamilyName: u.FamilyName, GivenName: u.GivenName, BirthDate: u.BirthDate, Reason: u.Reason, Actor: actor}
	var v charting.Violations
	r.Validate(&v)
	if err := v.Err(); err != nil {
		return nil, err
	}
	err := s.readWrite(ctx, []uuid.UUID{caseID}, func(ctx context.Context, tx Tx) error {
		c, err := tx.LockCase(ctx, caseID)
		if err != nil {
			return err
		}
		rec := r
		rec.Seq, rec.RecordedAt = c.Head.Seq+1, s.clock()
		if err := tx.InsertIdentityReconciliation(ctx, &rec); err != nil {
			return err
		}
		ref := strconv.FormatInt(rec.Seq, 10)
		if err := appendLink(ctx, tx, c, charting.LinkIdentity, ref, actor, rec.Reason, rec.RecordedAt, charting.DigestIdentity(rec)); err != nil {
			return err
		}
		if err := tx.UpdateCaseState(ctx, c); err != nil {
			return err
		}
		if otx, ok := tx.(OutboxTx); ok {
			if _, err := otx.ReleaseHeld(ctx, caseID, rec.RecordedAt); err != nil {
				return err
			}
		}
		r = rec
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reconcile identity: %w", err)
	}
	return &r, nil
}

// IdentityReconciliations returns a case's identity reconciliations, oldest
// first.
func (s *Store) IdentityReconciliations(ctx context.Context, caseID uuid.UUID) ([]charting.IdentityReconciliation, error) {
	if _, err := s.b.GetCase(ctx, caseID); err != nil {
		return nil, fmt.Errorf("identity reconciliations: %w", err)
	}
	rs, err := s.b.IdentityReconciliations(ctx, caseID)
	if err != nil {
		return nil, fmt.Errorf("identity reconciliations: %w", err)
	}
	return rs, nil
}
