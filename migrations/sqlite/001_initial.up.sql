-- Initial schema of the embedded SQLite store. It mirrors the PostgreSQL
-- schema table for table so both backends keep the same record:
--   * uuids are TEXT in canonical lowercase form (36 characters), so they
--     sort like PostgreSQL's uuid type (byte order);
--   * times are INTEGER microseconds since the Unix epoch, UTC, the record's
--     precision; NULL means "not yet" (started_at, closed_at);
--   * hashes are 32-byte BLOBs;
--   * JSON documents are TEXT checked with json_valid.
-- Tables are STRICT so a value of the wrong type is refused rather than
-- silently coerced. schema_migrations is created by the migration runner
-- itself (it must exist before the first migration can be recorded).
--
-- The record is append-only in the database itself, not only in the Go code:
-- triggers refuse UPDATE and DELETE on every table but the case state and the
-- source watermarks. SQLite's REPLACE conflict resolution deletes the
-- conflicting row without firing DELETE triggers (unless recursive_triggers
-- is on, a per-connection setting any client can leave off), so INSERT OR
-- REPLACE / REPLACE INTO would overwrite a stored row. Every append-only
-- table therefore also has a BEFORE INSERT trigger that refuses an insert
-- whose key already exists. The Go store maps that refusal to a duplicate
-- key, exactly like the UNIQUE constraint it pre-empts.

CREATE TABLE cases (
    case_id         TEXT    NOT NULL PRIMARY KEY CHECK (length(case_id) = 36),
    kind            TEXT    NOT NULL,
    site            TEXT    NOT NULL,
    room            TEXT    NOT NULL,
    scheduled_start INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    created_by      TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('planned', 'in_progress', 'closed', 'signed')),
    started_at      INTEGER,
    closed_at       INTEGER,
    closed_by       TEXT,
    details_version INTEGER NOT NULL,
    head_seq        INTEGER NOT NULL CHECK (head_seq >= 0),
    head_hash       BLOB    NOT NULL CHECK (length(head_hash) = 32)
) STRICT;

-- Listing: newest scheduled start first, keyset-paginated on (start, id).
CREATE INDEX cases_by_start ON cases (scheduled_start DESC, case_id DESC);
CREATE INDEX cases_by_room ON cases (site, room, scheduled_start DESC);

CREATE TABLE case_details (
    case_id     TEXT    NOT NULL REFERENCES cases (case_id),
    version     INTEGER NOT NULL CHECK (version >= 1),
    details     TEXT    NOT NULL CHECK (json_valid(details)),
    reason      TEXT    NOT NULL,
    actor       TEXT    NOT NULL,
    recorded_at INTEGER NOT NULL,
    PRIMARY KEY (case_id, version)
) STRICT;

CREATE TABLE entries (
    case_id     TEXT    NOT NULL REFERENCES cases (case_id),
    entry_id    TEXT    NOT NULL CHECK (length(entry_id) = 36),
    kind        TEXT    NOT NULL,
    occurred_at INTEGER NOT NULL,
    recorded_at INTEGER NOT NULL,
    late        INTEGER NOT NULL CHECK (late IN (0, 1)),
    author      TEXT    NOT NULL,
    supersedes  TEXT    CHECK (supersedes IS NULL OR length(supersedes) = 36),
    reason      TEXT    NOT NULL,
    void        INTEGER NOT NULL CHECK (void IN (0, 1)),
    detail      TEXT    NOT NULL CHECK (json_valid(detail)),
    PRIMARY KEY (case_id, entry_id)
) STRICT;

-- An entry is superseded at most once: corrections form a chain, not a tree.
CREATE UNIQUE INDEX entries_supersedes ON entries (case_id, supersedes) WHERE supersedes IS NOT NULL;

CREATE TABLE sample_batches (
    case_id      TEXT    NOT NULL REFERENCES cases (case_id),
    source_id    TEXT    NOT NULL,
    seq          INTEGER NOT NULL,
    recorded_at  INTEGER NOT NULL,
    actor        TEXT    NOT NULL,
    min_time_ms  INTEGER NOT NULL,
    max_time_ms  INTEGER NOT NULL,
    sample_count INTEGER NOT NULL,
    block        BLOB    NOT NULL,
    PRIMARY KEY (case_id, source_id, seq)
) STRICT;

-- Time-range scans of one case, already in the order they are returned.
CREATE INDEX sample_batches_by_time ON sample_batches (case_id, min_time_ms, source_id, seq);

-- Resume points of device sources: mutable, one row per (case, source).
CREATE TABLE sample_sources (
    case_id   TEXT    NOT NULL REFERENCES cases (case_id),
    source_id TEXT    NOT NULL,
    watermark INTEGER NOT NULL CHECK (watermark >= 0),
    PRIMARY KEY (case_id, source_id)
) STRICT;

CREATE TABLE signatures (
    case_id      TEXT    NOT NULL REFERENCES cases (case_id),
    number       INTEGER NOT NULL,
    signer       TEXT    NOT NULL,
    display_name TEXT    NOT NULL,
    meaning      TEXT    NOT NULL,
    signed_at    INTEGER NOT NULL,
    covers_seq   INTEGER NOT NULL,
    covers_hash  BLOB    NOT NULL CHECK (length(covers_hash) = 32),
    PRIMARY KEY (case_id, number)
) STRICT;

CREATE TABLE ledger (
    case_id     TEXT    NOT NULL REFERENCES cases (case_id),
    seq         INTEGER NOT NULL CHECK (seq >= 1),
    kind        TEXT    NOT NULL,
    ref         TEXT    NOT NULL,
    actor       TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    recorded_at INTEGER NOT NULL,
    prev_hash   BLOB    NOT NULL CHECK (length(prev_hash) = 32),
    hash        BLOB    NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (case_id, seq)
) STRICT;

-- Append-only enforcement.

-- cases: the header is immutable and a case is never deleted; only the
-- state columns (status, started_at, closed_at, closed_by, details_version,
-- head_seq, head_hash) change.
CREATE TRIGGER cases_no_delete BEFORE DELETE ON cases
BEGIN
    SELECT RAISE(ABORT, 'perfusion record is append-only');
END;

CREATE TRIGGER cases_header_immutable
BEFORE UPDATE OF case_id, kind, site, room, scheduled_start, created_at, created_by ON cases
BEGIN
    SELECT RAISE(ABORT, 'perfusion record is append-only');
END;

CREATE TRIGGER cases_no_replace BEFORE INSERT ON cases
WHEN EXISTS (SELECT 1 FROM cases WHERE case_id = NEW.case_id)
BEGIN
    SELECT RAISE(ABORT, 'perfusion record is append-only: duplicate key');
END;

-- case_details
CREATE TRIGGER case_details_no_update BEFORE UPDATE ON case_details
BEGIN
    SELECT RAISE(ABORT, 'perfusion record is append-only');
END;

CREATE TRIGGER case_details_no_delete BEFORE DELETE ON case_details
BEGIN
    SELECT RAISE(ABORT, 'perfusion record is append-only');
END;

CREATE TRIGGER case_details_no_replace BEFORE INSERT ON case_details
WHEN EXISTS (SELECT 1 FROM case_details WHERE case_id = NEW.case_id AND version = NEW.version)
BEGIN
    SELECT RAISE(ABORT, 'perfusion record is append-only: duplicate key');
END;

-- entries
CREATE TRIGGER entries_no_update BEFORE UPDATE ON entries
BEGIN
    SELECT RAISE(ABORT, 'perfusion record is append-only');
END;

CREATE TRIGGER entries_no_delete BEFORE DELETE ON entries
BEGIN
    SELECT RAISE(ABORT, 'perfusion record is append-only');
END;

CREATE TRIGGER entries_no_replace BEFORE INSERT ON entries
WHEN EXISTS (SELECT 1 FROM entries WHERE case_id = NEW.case_id AND entry_id = NEW.entry_id)
  OR (NEW.supersedes IS NOT NULL
      AND EXISTS (SELECT 1 FROM entries WHERE case_id = NEW.case_id AND supersedes = NEW.supersedes))
BEGIN
    SELECT RAISE(ABORT, 'perfusion record is append-only: duplicate key');
END;

-- sample_batches
CREATE TRIGGER sample_batches_no_update BEFORE UPDATE ON sample_batches
BEGIN
    SELECT RAISE(ABORT, 'perfusion record is append-only');
END;

CREATE TRIGGER sample_batches_no_delete BEFORE DELETE ON sample_batches
BEGIN
    SELECT RAISE(ABORT, 'perfusion record is append-only');
END;

CREATE TRIGGER sample_batches_no_replace BEFORE INSERT ON sample_batches
WHEN EXISTS (SELECT 1 FROM sample_batches
             WHERE case_id = NEW.case_id AND source_id = NEW.source_id AND seq = NEW.seq)
BEGIN
    SELECT RAISE(ABORT, 'perfusion record is append-only: duplicate key');
END;

-- signatures
CREATE TRIGGER signatures_no_update BEFORE UPDATE ON signatures
BEGIN
    SELECT RAISE(ABORT, 'perfusion record is append-only');
END;

CREATE TRIGGER signatures_no_delete BEFORE DELETE ON signatures
BEGIN
    SELECT RAISE(ABORT, 'perfusion record is append-only');
END;

CREATE TRIGGER signatures_no_replace BEFORE INSERT ON signatures
WHEN EXISTS (SELECT 1 FROM signatures WHERE case_id = NEW.case_id AND number = NEW.number)
BEGIN
    SELECT RAISE(ABORT, 'perfusion record is append-only: duplicate key');
END;

-- ledger
CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'perfusion record is append-only');
END;

CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'perfusion record is append-only');
END;

CREATE TRIGGER ledger_no_replace BEFORE INSERT ON ledger
WHEN EXISTS (SELECT 1 FROM ledger WHERE case_id = NEW.case_id AND seq = NEW.seq)
BEGIN
    SELECT RAISE(ABORT, 'perfusion record is append-only: duplicate key');
END;
