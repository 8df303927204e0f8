-- 010_outbox_order (numbered 009 in this dialect before the two shared one numbering): deliveries go out in version order per case and
-- destination, and an operator may supersede one (store/outbox.go).
--
-- A version waits until every earlier version of its case to its
-- destination is delivered or superseded; the index below answers that
-- question for each candidate of a claim. 'superseded' is final: an
-- operator declared that a later version replaces the delivery, recorded
-- with who and why. 'held' is reserved for deliveries that wait for a
-- complete patient identity (issue 18, identity reconciliation); nothing
-- writes it yet, and it is allowed here so that the SQLite table need not
-- be rebuilt a second time for it.
ALTER TABLE outbox_deliveries DROP CONSTRAINT outbox_deliveries_state_check;
ALTER TABLE outbox_deliveries ADD CONSTRAINT outbox_deliveries_state_check
    CHECK (state IN ('pending', 'delivering', 'delivered', 'failed', 'superseded', 'held'));
ALTER TABLE outbox_deliveries
    ADD COLUMN superseded_by    text NOT NULL DEFAULT '',
    ADD COLUMN supersede_reason text NOT NULL DEFAULT '';
CREATE INDEX outbox_deliveries_order ON outbox_deliveries (case_id, destination, version);
