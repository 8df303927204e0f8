-- 004_outbox (numbered 003 in this dialect before the two shared one numbering): the delivery outbox (store/outbox.go); see the PostgreSQL
-- migration 004_outbox. Times are microseconds since the epoch, UTC.
CREATE TABLE outbox_deliveries (
    delivery_id     TEXT    NOT NULL PRIMARY KEY CHECK (length(delivery_id) = 36),
    case_id         TEXT    NOT NULL REFERENCES cases (case_id),
    version         INTEGER NOT NULL CHECK (version > 0),
    destination     TEXT    NOT NULL CHECK (destination IN ('hl7v2_mllp', 'fhir_rest')),
    message_id      TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'delivering', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at INTEGER NOT NULL,
    lease_until     INTEGER,
    last_error      TEXT    NOT NULL DEFAULT '',
    ack_code        TEXT    NOT NULL DEFAULT '',
    ack_text        TEXT    NOT NULL DEFAULT '',
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    delivered_at    INTEGER,
    UNIQUE (case_id, version, destination)
) STRICT;

CREATE INDEX outbox_deliveries_due ON outbox_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX outbox_deliveries_lease ON outbox_deliveries (lease_until) WHERE state = 'delivering';
CREATE INDEX outbox_deliveries_listing ON outbox_deliveries (created_at DESC, delivery_id DESC);
