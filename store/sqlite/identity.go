package sqlite

import (
	"context"
	"database/sql"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
)

// InsertIdentityReconciliation stores one identity reconciliation.
func (t *tx) InsertIdentityReconciliation(ctx context.Context, r *charting.IdentityReconciliation) error {
	_, err := t.exec(ctx, "insert identity reconciliation", `INSERT INTO identity_reconciliations
		(case_id, seq, mrn, assigning_authority, family_name, given_name, birth_date, reason, actor, recorded_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.CaseID.String(), r.Seq, r.MRN, r.AssigningAuthority, r.FamilyName, r.GivenName, r.BirthDate, r.Reason, r.Actor, micros(r.RecordedAt))
	return err
}

// ReleaseHeld makes the case's held deliveries pending, due at now.
func (t *tx) ReleaseHeld(ctx context.Context, caseID uuid.UUID, now time.Time) (int, error) {
	res, err := t.exec(ctx, "release held deliveries", `UPDATE outbox_deliveries SET state = 'pending', next_attempt_at = ?, updated_at = ?
		WHERE case_id = ? AND state = 'held'`, micros(now), micros(now), caseID.String())
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), wrap("release held deliveries", err)
}

// IdentityReconciliations returns a case's identity reconciliations in
// ledger order.
func (b *Backend) IdentityReconciliations(ctx context.Context, caseID uuid.UUID) ([]charting.IdentityReconciliation, error) {
	return reader{q: b.r}.IdentityReconciliations(ctx, caseID)
}

// IdentityReconciliations returns a case's identity reconciliations in
// ledger order.
func (r reader) IdentityReconciliations(ctx context.Context, caseID uuid.UUID) ([]charting.IdentityReconciliation, error) {
	rows, err := r.q.QueryContext(ctx, `SELECT seq, mrn, assigning_authority, family_name, given_name, birth_date, reason, actor, recorded_at
		FROM identity_reconciliations WHERE case_id = ? ORDER BY seq`, caseID.String())
	if err != nil {
		return nil, wrap("identity reconciliations", err)
	}
	defer rows.Close()
	var out []charting.IdentityReconciliation
	for rows.Next() {
		x := charting.IdentityReconciliation{CaseID: caseID}
		var at sql.NullInt64
		if err := rows.Scan(&x.Seq, &x.MRN, &x.AssigningAuthority, &x.FamilyName, &x.GivenName, &x.BirthDate,
			&x.Reason, &x.Actor, &at); err != nil {
			return nil, wrap("identity reconciliations", err)
		}
		x.RecordedAt = fromMicros(at)
		out = append(out, x)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("identity reconciliations", err)
	}
	return out, nil
}
