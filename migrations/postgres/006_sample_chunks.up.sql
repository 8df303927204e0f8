-- 006_sample_chunks: a derived, read-optimised copy of runs of batches.
--
-- A gateway that sends every second leaves a 4-hour case as 14,400 batch
-- rows; a 10-channel trend over it read and walked all of them (p99 84 ms,
-- issue 4's target is 50). Once a run of a source's batches is complete
-- (every sequence up to the watermark is stored) the compactor
-- (store/chunks.go) copies each channel of the run into one row here, and
-- a trend reads the rows of the channels it wants plus the batches past
-- the last run.
--
-- Not the record: sample_batches and the ledger are unchanged and remain
-- what is verified and exported. A chunk is exactly rebuildable from its
-- batches, VerifyRecord rebuilds and compares every one, and like a batch
-- it is append-only in the database.
CREATE TABLE sample_chunks (
    case_id      uuid    NOT NULL REFERENCES cases (case_id),
    source_id    text    NOT NULL,
    seq_from     bigint  NOT NULL CHECK (seq_from > 0),
    seq_to       bigint  NOT NULL,
    -- '' is the run's marker: one per run, with the run's time range and
    -- sample count and an empty block; it says which batches the run covers.
    channel      text    NOT NULL,
    min_time_ms  bigint  NOT NULL,
    max_time_ms  bigint  NOT NULL,
    sample_count integer NOT NULL CHECK (sample_count >= 0),
    block        bytea   NOT NULL,
    PRIMARY KEY (case_id, source_id, seq_to, channel),
    CHECK (seq_from <= seq_to),
    CHECK (min_time_ms <= max_time_ms)
);

-- Blocks are already compressed (see sample_batches in 001).
ALTER TABLE sample_chunks ALTER COLUMN block SET STORAGE EXTERNAL;
ALTER TABLE sample_chunks SET (toast_tuple_target = 8160);

CREATE TRIGGER sample_chunks_append_only
    BEFORE UPDATE OR DELETE ON sample_chunks
    FOR EACH ROW EXECUTE FUNCTION perfusion_refuse_change();
CREATE TRIGGER sample_chunks_no_truncate
    BEFORE TRUNCATE ON sample_chunks
    FOR EACH STATEMENT EXECUTE FUNCTION perfusion_refuse_change();

-- Where each source's runs end, so the compactor finds work without
-- reading sample_chunks. Derived and mutable like the watermark beside it.
ALTER TABLE sample_sources ADD COLUMN chunked bigint NOT NULL DEFAULT 0;
