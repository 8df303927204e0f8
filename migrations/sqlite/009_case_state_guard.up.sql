-- 009_case_state_guard (numbered 007 in this dialect before the two shared one numbering): the case state row only moves forward, as on
-- PostgreSQL (perfusion_guard_case, postgres 001).
--
-- The case row's header was already immutable (cases_header_immutable), but
-- its state columns took any plain UPDATE: a signed case could be set back
-- to in_progress, or its ledger head rewound so that links appended after
-- it disappeared from what the service reads. Verification would report
-- either, but the database should refuse them in the first place, as
-- PostgreSQL does: status only forward (planned → in_progress → closed →
-- signed, so signed stays signed), ledger head and details version never
-- backwards, a ledger head that moves always to a different hash, and the
-- times once set never changed.

CREATE TRIGGER cases_state_forward
BEFORE UPDATE OF status, head_seq, head_hash, details_version, started_at, closed_at, closed_by ON cases
WHEN (CASE NEW.status WHEN 'planned' THEN 0 WHEN 'in_progress' THEN 1 WHEN 'closed' THEN 2 WHEN 'signed' THEN 3 END)
       < (CASE OLD.status WHEN 'planned' THEN 0 WHEN 'in_progress' THEN 1 WHEN 'closed' THEN 2 WHEN 'signed' THEN 3 END)
  OR NEW.head_seq < OLD.head_seq
  OR (NEW.head_seq = OLD.head_seq AND NEW.head_hash IS NOT OLD.head_hash)
  OR NEW.details_version < OLD.details_version
  OR (OLD.started_at IS NOT NULL AND NEW.started_at IS NOT OLD.started_at)
  OR (OLD.closed_at IS NOT NULL AND (NEW.closed_at IS NOT OLD.closed_at OR NEW.closed_by IS NOT OLD.closed_by))
BEGIN
    SELECT RAISE(ABORT, 'perfusion record is append-only: moving the case state backwards refused');
END;
