-- 004_outbox: the delivery outbox (store/outbox.go).
--
-- One row per (case, record version, destination), queued in the same
-- transaction as the signature or addendum that made the version. Rows are
-- operational state, not the record: their state changes as workers claim
-- and deliver them, so the table is not append-only. message_id is what the
-- receiver deduplicates on (MSH-10, Bundle.identifier) and never changes.
CREATE TABLE outbox_deliveries (
    delivery_id     uuid        NOT NULL PRIMARY KEY,
    case_id         uuid        NOT NULL REFERENCES cases (case_id),
    version         bigint      NOT NULL CHECK (version > 0),
    destination     text        NOT NULL CHECK (destination IN ('hl7v2_mllp', 'fhir_rest')),
    message_id      text        NOT NULL,
    state           text        NOT NULL CHECK (state IN ('pending', 'delivering', 'delivered', 'failed')),
    attempts        integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at timestamptz NOT NULL,
    lease_until     timestamptz,
    last_error      text        NOT NULL DEFAULT '',
    ack_code        text        NOT NULL DEFAULT '',
    ack_text        text        NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    delivered_at    timestamptz,
    UNIQUE (case_id, version, destination)
);

-- Claiming scans only what is due: pending by due time, delivering by lease.
CREATE INDEX outbox_deliveries_due ON outbox_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX outbox_deliveries_lease ON outbox_deliveries (lease_until) WHERE state = 'delivering';
CREATE INDEX outbox_deliveries_listing ON outbox_deliveries (created_at DESC, delivery_id DESC);
