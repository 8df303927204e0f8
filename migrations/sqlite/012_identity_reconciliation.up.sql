-- 012_identity_reconciliation (numbered 010 in this dialect before the two shared one numbering): see the PostgreSQL migration
-- 012_identity_reconciliation.
CREATE TABLE identity_reconciliations (
    case_id             TEXT    NOT NULL REFERENCES cases (case_id),
    seq                 INTEGER NOT NULL CHECK (seq > 0),
    mrn                 TEXT    NOT NULL,
    assigning_authority TEXT    NOT NULL,
    family_name         TEXT    NOT NULL DEFAULT '',
    given_name          TEXT    NOT NULL DEFAULT '',
    birth_date          TEXT    NOT NULL DEFAULT '',
    reason              TEXT    NOT NULL,
    actor               TEXT    NOT NULL,
    recorded_at         INTEGER NOT NULL,
    PRIMARY KEY (case_id, seq)
) STRICT;

CREATE TRIGGER identity_reconciliations_no_update BEFORE UPDATE ON identity_reconciliations
BEGIN
    SELECT RAISE(ABORT, 'perfusion record is append-only');
END;

CREATE TRIGGER identity_reconciliations_no_delete BEFORE DELETE ON identity_reconciliations
BEGIN
    SELECT RAISE(ABORT, 'perfusion record is append-only');
END;

CREATE TRIGGER identity_reconciliations_no_replace BEFORE INSERT ON identity_reconciliations
WHEN EXISTS (SELECT 1 FROM identity_reconciliations WHERE case_id = NEW.case_id AND seq = NEW.seq)
BEGIN
    SELECT RAISE(ABORT, 'perfusion record is append-only: duplicate key');
END;
