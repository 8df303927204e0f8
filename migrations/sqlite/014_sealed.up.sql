-- 014_sealed: sealed storage of closed cases. See
-- migrations/postgres/014_sealed.up.sql for why and how; the same here, with
-- SQLite's means: a DELETE on sample_batches, ledger (sample links only) or
-- sample_chunks is refused unless the case's sealed_cases row has `sealing`
-- set. The sealing transaction inserts that row with it set and clears it
-- before committing; clearing it is refused while any batch or sample link
-- of the case remains or the segments do not account for its samples; and
-- a transaction cannot commit with it set: `sealing` references a table
-- that is always empty, through a foreign key checked at commit (the
-- server's connections, like any that follow its setup, enforce foreign
-- keys). So the flag is set only inside the one transaction that seals the
-- case, and no other can remove anything. (SQLite has no roles: a program
-- with write access to the file could switch foreign keys off or drop the
-- triggers; the ledger is what reveals such tampering.)

-- Always empty: what a `sealing` flag left at commit would have to name.
CREATE TABLE seal_in_progress (
    id INTEGER NOT NULL PRIMARY KEY
) STRICT;

CREATE TRIGGER seal_in_progress_empty BEFORE INSERT ON seal_in_progress
BEGIN
    SELECT RAISE(ABORT, 'perfusion record is append-only: a sealing must end in its own transaction');
END;

CREATE TABLE sealed_cases (
    case_id   TEXT    NOT NULL PRIMARY KEY REFERENCES cases (case_id),
    format    INTEGER NOT NULL CHECK (format > 0),
    sealed_at INTEGER NOT NULL,
    segments  INTEGER NOT NULL CHECK (segments > 0),
    batches   INTEGER NOT NULL CHECK (batches > 0),
    samples   INTEGER NOT NULL CHECK (samples >= 0),
    links     INTEGER NOT NULL CHECK (links = batches),
    -- 1 only inside the transaction that seals the case, NULL after
    sealing   INTEGER CHECK (sealing = 1)
              REFERENCES seal_in_progress (id) DEFERRABLE INITIALLY DEFERRED
) STRICT;

CREATE TABLE sealed_segments (
    case_id      TEXT    NOT NULL REFERENCES sealed_cases (case_id),
    seg          INTEGER NOT NULL CHECK (seg >= 0),
    source_id    TEXT    NOT NULL,
    channel      TEXT    NOT NULL,
    min_time_ms  INTEGER NOT NULL,
    max_time_ms  INTEGER NOT NULL,
    sample_count INTEGER NOT NULL CHECK (sample_count >= 0),
    data         BLOB    NOT NULL,
    PRIMARY KEY (case_id, seg, source_id, channel),
    CHECK (min_time_ms <= max_time_ms),
    CHECK (source_id <> '' OR channel = '')
) STRICT;

-- Removal only by the sealing transaction of the case.
DROP TRIGGER sample_batches_no_delete;
CREATE TRIGGER sample_batches_no_delete BEFORE DELETE ON sample_batches
WHEN NOT EXISTS (SELECT 1 FROM sealed_cases WHERE case_id = OLD.case_id AND sealing = 1)
BEGIN
    SELECT RAISE(ABORT, 'perfusion record is append-only');
END;

DROP TRIGGER ledger_no_delete;
CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
WHEN OLD.kind <> 'samples'
  OR NOT EXISTS (SELECT 1 FROM sealed_cases WHERE case_id = OLD.case_id AND sealing = 1)
BEGIN
    SELECT RAISE(ABORT, 'perfusion record is append-only');
END;

DROP TRIGGER sample_chunks_no_delete;
CREATE TRIGGER sample_chunks_no_delete BEFORE DELETE ON sample_chunks
WHEN NOT EXISTS (SELECT 1 FROM sealed_cases WHERE case_id = OLD.case_id AND sealing = 1)
BEGIN
    SELECT RAISE(ABORT, 'perfusion record is append-only');
END;

-- sealed_cases: inserted sealing, for a closed or signed case, once.
CREATE TRIGGER sealed_cases_insert BEFORE INSERT ON sealed_cases
WHEN NEW.sealing IS NOT 1
  OR EXISTS (SELECT 1 FROM sealed_cases WHERE case_id = NEW.case_id)
  OR NOT EXISTS (SELECT 1 FROM cases WHERE case_id = NEW.case_id AND status IN ('closed', 'signed'))
BEGIN
    SELECT RAISE(ABORT, 'perfusion record is append-only: a case is sealed once, closed, by the sealing step');
END;

CREATE TRIGGER sealed_cases_no_delete BEFORE DELETE ON sealed_cases
BEGIN
    SELECT RAISE(ABORT, 'perfusion record is append-only');
END;

-- The only update clears `sealing`, once nothing it replaces is left and
-- the sealed form accounts for what was there.
CREATE TRIGGER sealed_cases_update BEFORE UPDATE ON sealed_cases
WHEN NOT (OLD.sealing = 1 AND NEW.sealing IS NULL
          AND NEW.case_id = OLD.case_id AND NEW.format = OLD.format AND NEW.sealed_at = OLD.sealed_at
          AND NEW.segments = OLD.segments AND NEW.batches = OLD.batches AND NEW.samples = OLD.samples AND NEW.links = OLD.links)
  OR EXISTS (SELECT 1 FROM sample_batches WHERE case_id = OLD.case_id)
  OR EXISTS (SELECT 1 FROM ledger WHERE case_id = OLD.case_id AND kind = 'samples')
  OR (SELECT count(*) FROM sealed_segments WHERE case_id = OLD.case_id AND source_id = '' AND channel = '') <> OLD.segments
  OR (SELECT coalesce(sum(sample_count), 0) FROM sealed_segments WHERE case_id = OLD.case_id AND source_id = '' AND channel = '') <> OLD.samples
BEGIN
    SELECT RAISE(ABORT, 'perfusion record is append-only: a sealed case stays sealed, and only once what it replaces is gone');
END;

-- sealed_segments: append-only, and rows only while their case is sealed.
CREATE TRIGGER sealed_segments_insert BEFORE INSERT ON sealed_segments
WHEN NOT EXISTS (SELECT 1 FROM sealed_cases WHERE case_id = NEW.case_id AND sealing = 1)
  OR EXISTS (SELECT 1 FROM sealed_segments WHERE case_id = NEW.case_id AND seg = NEW.seg
             AND source_id = NEW.source_id AND channel = NEW.channel)
BEGIN
    SELECT RAISE(ABORT, 'perfusion record is append-only: segments are written only by sealing');
END;

CREATE TRIGGER sealed_segments_no_update BEFORE UPDATE ON sealed_segments
BEGIN
    SELECT RAISE(ABORT, 'perfusion record is append-only');
END;

CREATE TRIGGER sealed_segments_no_delete BEFORE DELETE ON sealed_segments
BEGIN
    SELECT RAISE(ABORT, 'perfusion record is append-only');
END;

CREATE INDEX cases_closed ON cases (closed_at) WHERE status IN ('closed', 'signed');
