package postgres

import (
	"context"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
)

// InsertIdentityReconciliation stores one identity reconciliation.
func (t *pgTx) InsertIdentityReconciliation(ctx context.Context, r *charting.IdentityReconciliation) error {
	tag, err := t.exec(ctx, `INSERT INTO identity_reconciliations
		(case_id, seq, mrn, assigning_authority, family_name, given_name, birth_date, reason, actor, recorded_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING`,
		r.CaseID, r.Seq, r.MRN, r.AssigningAuthority, r.FamilyName, r.GivenName, r.BirthDate, r.Reason, r.Actor, r.RecordedAt)
	return inserted("insert identity reconciliation", tag.RowsAffected(), err)
}

// ReleaseHeld makes the case's held deliveries pending, due at now.
func (t *pgTx) ReleaseHeld(ctx context.Context, caseID uuid.UUID, now time.Time) (int, error) {
	tag, err := t.exec(ctx, `UPDATE outbox_deliveries SET state = 'pending', next_attempt_at = $2, updated_at = $2
		WHERE case_id = $1 AND state = 'held'`, caseID, now)
	if err != nil {
		return 0, wrap("release held deliveries", err)
	}
	return int(tag.RowsAffected()), nil
}

// IdentityReconciliations returns a case's identity reconciliations in
// ledger order.
func (b *Backend) IdentityReconciliations(ctx context.Context, caseID uuid.UUID) ([]charting.IdentityReconciliation, error) {
	return reader{q: b.pool}.IdentityReconciliations(ctx, caseID)
}

// IdentityReconciliations returns a case's identity reconciliations in
// ledger order.
func (r reader) IdentityReconciliations(ctx context.Context, caseID uuid.UUID) ([]charting.IdentityReconciliation, error) {
	rows, err := r.q.Query(ctx, `SELECT case_id, seq, mrn, assigning_authority, family_name, given_name, birth_date, reason, actor, recorded_at
		FROM identity_reconciliations WHERE case_id = $1 ORDER BY seq`, caseID)
	if err != nil {
		return nil, wrap("identity reconciliations", err)
	}
	defer rows.Close()
	var out []charting.IdentityReconciliation
	for rows.Next() {
		var x charting.IdentityReconciliation
		if err := rows.Scan(&x.CaseID, &x.Seq, &x.MRN, &x.AssigningAuthority, &x.FamilyName, &x.GivenName, &x.BirthDate,
			&x.Reason, &x.Actor, &x.RecordedAt); err != nil {
			return nil, wrap("identity reconciliations", err)
		}
		x.RecordedAt = charting.NormTime(x.RecordedAt)
		out = append(out, x)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("identity reconciliations", err)
	}
	return out, nil
}
