-- 010_outbox_order (numbered 008 in this dialect before the two shared one numbering): deliveries go out in version order per case and
-- destination, and an operator may supersede one; see the PostgreSQL
-- migration 010_outbox_order. SQLite cannot change a CHECK constraint, so
-- the table is rebuilt with the same rows (nothing references it).
CREATE TABLE outbox_deliveries_new (
    delivery_id      TEXT    NOT NULL PRIMARY KEY CHECK (length(delivery_id) = 36),
    case_id          TEXT    NOT NULL REFERENCES cases (case_id),
    version          INTEGER NOT NULL CHECK (version > 0),
    destination      TEXT    NOT NULL CHECK (destination IN ('hl7v2_mllp', 'fhir_rest')),
    message_id       TEXT    NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN ('pending', 'delivering', 'delivered', 'failed', 'superseded', 'held')),
    attempts         INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  INTEGER NOT NULL,
    lease_until      INTEGER,
    last_error       TEXT    NOT NULL DEFAULT '',
    ack_code         TEXT    NOT NULL DEFAULT '',
    ack_text         TEXT    NOT NULL DEFAULT '',
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    delivered_at     INTEGER,
    superseded_by    TEXT    NOT NULL DEFAULT '',
    supersede_reason TEXT    NOT NULL DEFAULT '',
    UNIQUE (case_id, version, destination)
) STRICT;

INSERT INTO outbox_deliveries_new (delivery_id, case_id, version, destination, message_id, state, attempts,
    next_attempt_at, lease_until, last_error, ack_code, ack_text, created_at, updated_at, delivered_at)
SELECT delivery_id, case_id, version, destination, message_id, state, attempts,
    next_attempt_at, lease_until, last_error, ack_code, ack_text, created_at, updated_at, delivered_at
FROM outbox_deliveries;

DROP TABLE outbox_deliveries;
ALTER TABLE outbox_deliveries_new RENAME TO outbox_deliveries;

CREATE INDEX outbox_deliveries_due ON outbox_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX outbox_deliveries_lease ON outbox_deliveries (lease_until) WHERE state = 'delivering';
CREATE INDEX outbox_deliveries_listing ON outbox_deliveries (created_at DESC, delivery_id DESC);
CREATE INDEX outbox_deliveries_order ON outbox_deliveries (case_id, destination, version);
