-- 006_sample_chunks (numbered 005 in this dialect before the two shared one numbering): a derived, read-optimised copy of runs of batches.
-- See migrations/postgres/006_sample_chunks.up.sql for why; the same here.
CREATE TABLE sample_chunks (
    case_id      TEXT    NOT NULL REFERENCES cases (case_id),
    source_id    TEXT    NOT NULL,
    seq_from     INTEGER NOT NULL CHECK (seq_from > 0),
    seq_to       INTEGER NOT NULL,
    channel      TEXT    NOT NULL,
    min_time_ms  INTEGER NOT NULL,
    max_time_ms  INTEGER NOT NULL,
    sample_count INTEGER NOT NULL CHECK (sample_count >= 0),
    block        BLOB    NOT NULL,
    PRIMARY KEY (case_id, source_id, seq_to, channel),
    CHECK (seq_from <= seq_to),
    CHECK (min_time_ms <= max_time_ms)
) STRICT;

CREATE TRIGGER sample_chunks_no_update BEFORE UPDATE ON sample_chunks
BEGIN
    SELECT RAISE(ABORT, 'perfusion record is append-only');
END;

CREATE TRIGGER sample_chunks_no_delete BEFORE DELETE ON sample_chunks
BEGIN
    SELECT RAISE(ABORT, 'perfusion record is append-only');
END;

CREATE TRIGGER sample_chunks_no_replace BEFORE INSERT ON sample_chunks
WHEN EXISTS (SELECT 1 FROM sample_chunks
             WHERE case_id = NEW.case_id AND source_id = NEW.source_id
               AND seq_to = NEW.seq_to AND channel = NEW.channel)
BEGIN
    SELECT RAISE(ABORT, 'perfusion record is append-only: duplicate key');
END;

ALTER TABLE sample_sources ADD COLUMN chunked INTEGER NOT NULL DEFAULT 0;
