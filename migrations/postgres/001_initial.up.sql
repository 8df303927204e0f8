-- 001_initial: the perfusion record on PostgreSQL.
--
-- Every table is keyed by case_id first, so the schema can later be
-- distributed by case with Citus (all tables co-located on case_id) and no
-- statement on the write path joins across cases.
--
-- The record is append-only IN THE DATABASE, not only in the service: the
-- triggers below refuse UPDATE, DELETE and TRUNCATE on every table that
-- holds recorded data, whoever connects. The only mutable rows are the case
-- state (status, head, ...) in `cases`, whose immutable header columns are
-- guarded by their own trigger, and `sample_sources`, a derived resume index
-- that is not part of the record. An administrator can still bypass
-- triggers (session_replication_role = replica, ALTER TABLE ... DISABLE
-- TRIGGER); the ledger's hash chain is what makes such tampering evident.

-- ---------------------------------------------------------------------------
-- Enforcement functions.

-- Refuses any row-level UPDATE or DELETE and any TRUNCATE. The message
-- prefix and SQLSTATE are relied on by store/postgres (IsAppendOnlyViolation)
-- and its tests.
CREATE FUNCTION perfusion_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'perfusion record is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'P0001',
              HINT = 'Recorded data is never changed or deleted; a correction is a new entry.';
END
$$;

-- Guards the case row: the header (covered by the first ledger link) never
-- changes, the row is never deleted, and the state only moves forward, so a
-- plain UPDATE cannot re-open a signed case or rewind the ledger head.
CREATE FUNCTION perfusion_guard_case() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    rank_old int;
    rank_new int;
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'perfusion record is append-only: % on % refused', TG_OP, TG_TABLE_NAME
            USING ERRCODE = 'P0001',
                  HINT = 'Cases are never deleted.';
    END IF;
    IF NEW.case_id IS DISTINCT FROM OLD.case_id
       OR NEW.kind IS DISTINCT FROM OLD.kind
       OR NEW.site IS DISTINCT FROM OLD.site
       OR NEW.room IS DISTINCT FROM OLD.room
       OR NEW.scheduled_start IS DISTINCT FROM OLD.scheduled_start
       OR NEW.created_at IS DISTINCT FROM OLD.created_at
       OR NEW.created_by IS DISTINCT FROM OLD.created_by THEN
        RAISE EXCEPTION 'perfusion record is append-only: % of the case header on % refused', TG_OP, TG_TABLE_NAME
            USING ERRCODE = 'P0001',
                  HINT = 'Only the case state (status, times, details version, ledger head) may change.';
    END IF;
    rank_old := array_position(ARRAY['planned', 'in_progress', 'closed', 'signed'], OLD.status);
    rank_new := array_position(ARRAY['planned', 'in_progress', 'closed', 'signed'], NEW.status);
    IF rank_new < rank_old
       OR NEW.head_seq < OLD.head_seq
       OR NEW.details_version < OLD.details_version THEN
        RAISE EXCEPTION 'perfusion record is append-only: % moving the case state backwards on % refused', TG_OP, TG_TABLE_NAME
            USING ERRCODE = 'P0001',
                  HINT = 'The case status, details version and ledger head only move forward.';
    END IF;
    RETURN NEW;
END
$$;

-- ---------------------------------------------------------------------------
-- Cases: header (immutable) and state (mutable, forward only).

CREATE TABLE cases (
    case_id         uuid        NOT NULL PRIMARY KEY,
    kind            text        NOT NULL,
    site            text        NOT NULL,
    room            text        NOT NULL,
    scheduled_start timestamptz NOT NULL,
    created_at      timestamptz NOT NULL,
    created_by      text        NOT NULL,
    status          text        NOT NULL
        CHECK (status IN ('planned', 'in_progress', 'closed', 'signed')),
    started_at      timestamptz,          -- NULL while planned
    closed_at       timestamptz,          -- NULL before closing
    closed_by       text        NOT NULL DEFAULT '',
    details_version bigint      NOT NULL CHECK (details_version >= 0),
    head_seq        bigint      NOT NULL CHECK (head_seq >= 0),
    head_hash       bytea       NOT NULL CHECK (octet_length(head_hash) = 32)
);

-- Listing is newest first with keyset pagination on (scheduled_start, id);
-- the index serves both the order and the cursor comparison. Listing is a
-- read (fan-out across shards is fine there), never on the write path.
CREATE INDEX cases_listing ON cases (scheduled_start DESC, case_id DESC);
CREATE INDEX cases_site_room ON cases (site, room, scheduled_start DESC, case_id DESC);

CREATE TRIGGER cases_guard
    BEFORE UPDATE OR DELETE ON cases
    FOR EACH ROW EXECUTE FUNCTION perfusion_guard_case();
CREATE TRIGGER cases_no_truncate
    BEFORE TRUNCATE ON cases
    FOR EACH STATEMENT EXECUTE FUNCTION perfusion_refuse_change();

-- ---------------------------------------------------------------------------
-- Details versions: every version kept; the case row names the current one.

CREATE TABLE case_details (
    case_id     uuid        NOT NULL REFERENCES cases (case_id),
    version     bigint      NOT NULL CHECK (version > 0),
    details     jsonb       NOT NULL,  -- charting.Details as JSON
    reason      text        NOT NULL DEFAULT '',
    actor       text        NOT NULL,
    recorded_at timestamptz NOT NULL,
    PRIMARY KEY (case_id, version)
);

-- ---------------------------------------------------------------------------
-- Entries: operator entries, corrections, voids and addenda.

CREATE TABLE entries (
    case_id     uuid        NOT NULL REFERENCES cases (case_id),
    entry_id    uuid        NOT NULL,
    -- Insertion order. Entries of one case are written under the case's row
    -- lock, so within a case this is the order they were recorded, even if
    -- the server clock steps back. Only compared within a case.
    entry_no    bigint      NOT NULL GENERATED ALWAYS AS IDENTITY,
    kind        text        NOT NULL,
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL,
    late        boolean     NOT NULL DEFAULT false,
    author      text        NOT NULL,
    supersedes  uuid,                  -- NULL unless a correction or void
    reason      text        NOT NULL DEFAULT '',
    void        boolean     NOT NULL DEFAULT false,
    detail      jsonb       NOT NULL,  -- charting.EntryDetail as JSON
    PRIMARY KEY (case_id, entry_id),
    -- A correction names an entry of the same case.
    FOREIGN KEY (case_id, supersedes) REFERENCES entries (case_id, entry_id),
    CHECK (supersedes IS NULL OR supersedes <> entry_id)
);

-- An entry is superseded at most once: corrections form chains, never trees.
CREATE UNIQUE INDEX entries_superseded_once ON entries (case_id, supersedes)
    WHERE supersedes IS NOT NULL;
-- Listing a case's entries in recorded order.
CREATE INDEX entries_listing ON entries (case_id, entry_no);

-- ---------------------------------------------------------------------------
-- Sample batches: device data as compressed blocks, one row per
-- (case, source, sequence).

CREATE TABLE sample_batches (
    case_id      uuid        NOT NULL REFERENCES cases (case_id),
    source_id    text        NOT NULL,
    seq          bigint      NOT NULL CHECK (seq > 0),
    recorded_at  timestamptz NOT NULL,
    actor        text        NOT NULL,
    min_time_ms  bigint      NOT NULL,
    max_time_ms  bigint      NOT NULL,
    sample_count integer     NOT NULL CHECK (sample_count >= 0),
    block        bytea       NOT NULL,
    PRIMARY KEY (case_id, source_id, seq),
    CHECK (min_time_ms <= max_time_ms)
);

-- Blocks are already compressed by our codec (delta-of-delta times, scaled
-- integers or XOR floats), so pglz would spend CPU on every insert and
-- almost always give up. EXTERNAL keeps large blocks out of line without
-- trying to compress them; small blocks stay inline as before.
ALTER TABLE sample_batches ALTER COLUMN block SET STORAGE EXTERNAL;

-- Time-range scans: batches of a case starting before the range's end, in
-- the scan's order (first sample time, source, sequence) so no sort is
-- needed and rows stream straight from the index.
CREATE INDEX sample_batches_time ON sample_batches (case_id, min_time_ms, source_id, seq);

-- Resume points per source: derived from sample_batches (every batch
-- 1..watermark is stored) and kept only so a reconnecting device learns
-- where to resume without a scan. Mutable; not part of the record.
CREATE TABLE sample_sources (
    case_id   uuid   NOT NULL REFERENCES cases (case_id),
    source_id text   NOT NULL,
    watermark bigint NOT NULL CHECK (watermark >= 0),
    PRIMARY KEY (case_id, source_id)
);

-- ---------------------------------------------------------------------------
-- Signatures: sign-off bound to a ledger head.

CREATE TABLE signatures (
    case_id      uuid        NOT NULL REFERENCES cases (case_id),
    number       bigint      NOT NULL CHECK (number > 0),
    signer       text        NOT NULL,
    display_name text        NOT NULL,
    meaning      text        NOT NULL,
    signed_at    timestamptz NOT NULL,
    covers_seq   bigint      NOT NULL CHECK (covers_seq >= 0),
    covers_hash  bytea       NOT NULL CHECK (octet_length(covers_hash) = 32),
    PRIMARY KEY (case_id, number)
);

-- ---------------------------------------------------------------------------
-- Ledger: the per-case hash chain over every write.

CREATE TABLE ledger (
    case_id     uuid        NOT NULL REFERENCES cases (case_id),
    seq         bigint      NOT NULL CHECK (seq > 0),
    kind        text        NOT NULL,
    ref         text        NOT NULL DEFAULT '',
    actor       text        NOT NULL,
    reason      text        NOT NULL DEFAULT '',
    recorded_at timestamptz NOT NULL,
    prev_hash   bytea       NOT NULL CHECK (octet_length(prev_hash) = 32),
    hash        bytea       NOT NULL CHECK (octet_length(hash) = 32),
    PRIMARY KEY (case_id, seq)
);

-- ---------------------------------------------------------------------------
-- Append-only triggers on every table of recorded data.

CREATE TRIGGER case_details_append_only
    BEFORE UPDATE OR DELETE ON case_details
    FOR EACH ROW EXECUTE FUNCTION perfusion_refuse_change();
CREATE TRIGGER case_details_no_truncate
    BEFORE TRUNCATE ON case_details
    FOR EACH STATEMENT EXECUTE FUNCTION perfusion_refuse_change();

CREATE TRIGGER entries_append_only
    BEFORE UPDATE OR DELETE ON entries
    FOR EACH ROW EXECUTE FUNCTION perfusion_refuse_change();
CREATE TRIGGER entries_no_truncate
    BEFORE TRUNCATE ON entries
    FOR EACH STATEMENT EXECUTE FUNCTION perfusion_refuse_change();

CREATE TRIGGER sample_batches_append_only
    BEFORE UPDATE OR DELETE ON sample_batches
    FOR EACH ROW EXECUTE FUNCTION perfusion_refuse_change();
CREATE TRIGGER sample_batches_no_truncate
    BEFORE TRUNCATE ON sample_batches
    FOR EACH STATEMENT EXECUTE FUNCTION perfusion_refuse_change();

CREATE TRIGGER signatures_append_only
    BEFORE UPDATE OR DELETE ON signatures
    FOR EACH ROW EXECUTE FUNCTION perfusion_refuse_change();
CREATE TRIGGER signatures_no_truncate
    BEFORE TRUNCATE ON signatures
    FOR EACH STATEMENT EXECUTE FUNCTION perfusion_refuse_change();

CREATE TRIGGER ledger_append_only
    BEFORE UPDATE OR DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION perfusion_refuse_change();
CREATE TRIGGER ledger_no_truncate
    BEFORE TRUNCATE ON ledger
    FOR EACH STATEMENT EXECUTE FUNCTION perfusion_refuse_change();
