-- 012_identity_reconciliation (numbered 011 in this dialect before the two shared one numbering): a case's patient identity completed after
-- the fact (charting.IdentityReconciliation), append-only like the record:
-- each row is covered by an 'identity_reconciled' ledger link whose ref is
-- seq. perfusion_app gets SELECT and INSERT by default privileges (008).
CREATE TABLE identity_reconciliations (
    case_id             uuid        NOT NULL REFERENCES cases (case_id),
    seq                 bigint      NOT NULL CHECK (seq > 0),
    mrn                 text        NOT NULL,
    assigning_authority text        NOT NULL,
    family_name         text        NOT NULL DEFAULT '',
    given_name          text        NOT NULL DEFAULT '',
    birth_date          text        NOT NULL DEFAULT '',
    reason              text        NOT NULL,
    actor               text        NOT NULL,
    recorded_at         timestamptz NOT NULL,
    PRIMARY KEY (case_id, seq)
);

CREATE TRIGGER identity_reconciliations_append_only
    BEFORE UPDATE OR DELETE ON identity_reconciliations
    FOR EACH ROW EXECUTE FUNCTION perfusion_refuse_change();
CREATE TRIGGER identity_reconciliations_no_truncate
    BEFORE TRUNCATE ON identity_reconciliations
    FOR EACH STATEMENT EXECUTE FUNCTION perfusion_refuse_change();
