-- 014_sealed: sealed storage of closed cases (store/sealed.go).
--
-- At 1-s gateway batches an open case costs about 20 bytes a sample: every
-- batch is a row with two index entries and a ledger link of its own. Once
-- a case is closed nothing can join it, and the server rewrites its device
-- data into segments of per-channel columns (sealed_segments) whose
-- manifests keep the batches' ledger link headers, compressed, with the
-- first four bytes of each link's hash (the whole hash every 256th link).
-- The batch rows, their ledger links and the trend chunks they replace are
-- removed in the same transaction.
--
-- The content stays append-only; its storage layout may be compacted by
-- this one verified step. Before it writes anything the server verifies the
-- record, builds the sealed form, reads it back through the code every
-- later read uses and requires every batch (each column, its block byte for
-- byte) and every link (header, previous hash, hash) to come back equal.
-- The database then allows the removal only to that step:
--
--   * a DELETE on sample_batches, ledger (links of kind 'samples' only) or
--     sample_chunks is allowed only while the case's sealed_cases row has
--     `sealing` set and was inserted by the current transaction; the row is
--     inserted with it set and perfusion_seal_case clears it before the
--     transaction ends, so no other transaction, before or after, can
--     remove anything; UPDATE and TRUNCATE stay refused as before;
--   * perfusion_seal_case (SECURITY DEFINER, the only way the serving role
--     perfusion_app can remove a row: it has no DELETE privilege on any of
--     these tables) refuses unless the case is closed or signed and the
--     numbers of batches, samples and sample links it removes are those the
--     sealed form records, and the segments' manifests hold as many
--     samples;
--   * a transaction cannot commit with `sealing` still set (a constraint
--     trigger checked at commit);
--   * sealed_cases and sealed_segments are append-only like the record;
--     segments may be added only while their case is being sealed, and the
--     only change to sealed_cases is clearing `sealing`.

CREATE TABLE sealed_cases (
    case_id   uuid        NOT NULL PRIMARY KEY REFERENCES cases (case_id),
    format    integer     NOT NULL CHECK (format > 0),
    sealed_at timestamptz NOT NULL,
    segments  integer     NOT NULL CHECK (segments > 0),
    batches   bigint      NOT NULL CHECK (batches > 0),
    samples   bigint      NOT NULL CHECK (samples >= 0),
    links     bigint      NOT NULL CHECK (links = batches),
    -- true only inside the transaction that seals the case
    sealing   boolean     NOT NULL
);

-- One row per segment part: its manifest (source_id = channel = ''), a
-- source's time columns (channel = ''), or a channel's value column.
CREATE TABLE sealed_segments (
    case_id      uuid    NOT NULL REFERENCES sealed_cases (case_id),
    seg          integer NOT NULL CHECK (seg >= 0),
    source_id    text    NOT NULL,
    channel      text    NOT NULL,
    min_time_ms  bigint  NOT NULL,
    max_time_ms  bigint  NOT NULL,
    sample_count integer NOT NULL CHECK (sample_count >= 0),
    data         bytea   NOT NULL,
    PRIMARY KEY (case_id, seg, source_id, channel),
    CHECK (min_time_ms <= max_time_ms),
    CHECK (source_id <> '' OR channel = '')
);

-- The data is compressed already (flate manifests, bit-packed columns).
ALTER TABLE sealed_segments ALTER COLUMN data SET STORAGE EXTERNAL;
ALTER TABLE sealed_segments SET (toast_tuple_target = 8160);

-- Whether the current transaction inserted the case's sealed_cases row and
-- is sealing it.
CREATE FUNCTION perfusion_sealing_now(p_case uuid) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM sealed_cases
                   WHERE case_id = p_case AND sealing AND xmin = pg_current_xact_id()::xid)
$$;

-- The append-only guard of sample_batches, ledger and sample_chunks, now
-- with the one exception: a DELETE by the sealing transaction of its case
-- (of a ledger row, only a sample link).
CREATE FUNCTION perfusion_refuse_change_unless_sealing() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND perfusion_sealing_now(OLD.case_id) THEN
        -- (nested: OLD.kind exists only on ledger rows)
        IF TG_TABLE_NAME <> 'ledger' THEN
            RETURN OLD;
        ELSIF OLD.kind = 'samples' THEN
            RETURN OLD;
        END IF;
    END IF;
    RAISE EXCEPTION 'perfusion record is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'P0001',
              HINT = 'Recorded data is never changed or deleted; only sealing a closed case removes the rows its sealed form replaces.';
END
$$;

DROP TRIGGER sample_batches_append_only ON sample_batches;
CREATE TRIGGER sample_batches_append_only
    BEFORE UPDATE OR DELETE ON sample_batches
    FOR EACH ROW EXECUTE FUNCTION perfusion_refuse_change_unless_sealing();
DROP TRIGGER ledger_append_only ON ledger;
CREATE TRIGGER ledger_append_only
    BEFORE UPDATE OR DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION perfusion_refuse_change_unless_sealing();
DROP TRIGGER sample_chunks_append_only ON sample_chunks;
CREATE TRIGGER sample_chunks_append_only
    BEFORE UPDATE OR DELETE ON sample_chunks
    FOR EACH ROW EXECUTE FUNCTION perfusion_refuse_change_unless_sealing();

-- sealed_cases: never deleted; the only update clears `sealing`, in the
-- transaction that set it.
CREATE FUNCTION perfusion_guard_sealed_case() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.sealing AND NOT NEW.sealing
       AND perfusion_sealing_now(OLD.case_id)
       AND (NEW.case_id, NEW.format, NEW.sealed_at, NEW.segments, NEW.batches, NEW.samples, NEW.links)
           IS NOT DISTINCT FROM (OLD.case_id, OLD.format, OLD.sealed_at, OLD.segments, OLD.batches, OLD.samples, OLD.links) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'perfusion record is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'P0001',
              HINT = 'A sealed case stays sealed.';
END
$$;

CREATE TRIGGER sealed_cases_guard
    BEFORE UPDATE OR DELETE ON sealed_cases
    FOR EACH ROW EXECUTE FUNCTION perfusion_guard_sealed_case();
-- A transaction cannot commit with `sealing` set: checked at commit.
CREATE FUNCTION perfusion_sealing_ended() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM sealed_cases WHERE case_id = NEW.case_id AND sealing) THEN
        RAISE EXCEPTION 'perfusion record is append-only: a sealing must end in its own transaction'
            USING ERRCODE = 'P0001';
    END IF;
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER sealed_cases_sealing_ends
    AFTER INSERT ON sealed_cases
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION perfusion_sealing_ended();

CREATE TRIGGER sealed_cases_no_truncate
    BEFORE TRUNCATE ON sealed_cases
    FOR EACH STATEMENT EXECUTE FUNCTION perfusion_refuse_change();

-- sealed_segments: append-only, and rows only while their case is being
-- sealed.
CREATE FUNCTION perfusion_guard_sealed_segment() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT perfusion_sealing_now(NEW.case_id) THEN
        RAISE EXCEPTION 'perfusion record is append-only: INSERT on sealed_segments refused: the case is not being sealed'
            USING ERRCODE = 'P0001';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER sealed_segments_only_sealing
    BEFORE INSERT ON sealed_segments
    FOR EACH ROW EXECUTE FUNCTION perfusion_guard_sealed_segment();
CREATE TRIGGER sealed_segments_append_only
    BEFORE UPDATE OR DELETE ON sealed_segments
    FOR EACH ROW EXECUTE FUNCTION perfusion_refuse_change();
CREATE TRIGGER sealed_segments_no_truncate
    BEFORE TRUNCATE ON sealed_segments
    FOR EACH STATEMENT EXECUTE FUNCTION perfusion_refuse_change();

-- The verified step's removal. Called by the sealing transaction after it
-- inserted the sealed_cases row (sealing set) and every segment.
CREATE FUNCTION perfusion_seal_case(p_case uuid) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    s        sealed_cases%ROWTYPE;
    st       text;
    nbatches bigint;
    nsamples bigint;
    nlinks   bigint;
    msamples bigint;
    nsegs    bigint;
BEGIN
    SELECT * INTO s FROM sealed_cases WHERE case_id = p_case;
    IF NOT FOUND OR NOT perfusion_sealing_now(p_case) THEN
        RAISE EXCEPTION 'perfusion record is append-only: no sealed form of this case was written by this transaction'
            USING ERRCODE = 'P0001';
    END IF;
    SELECT status INTO st FROM cases WHERE case_id = p_case;
    IF st IS DISTINCT FROM 'closed' AND st IS DISTINCT FROM 'signed' THEN
        RAISE EXCEPTION 'perfusion record is append-only: only a closed or signed case is sealed'
            USING ERRCODE = 'P0001';
    END IF;
    SELECT count(*), coalesce(sum(sample_count), 0) INTO nbatches, nsamples FROM sample_batches WHERE case_id = p_case;
    SELECT count(*) INTO nlinks FROM ledger WHERE case_id = p_case AND kind = 'samples';
    SELECT count(*), coalesce(sum(sample_count), 0) INTO nsegs, msamples FROM sealed_segments
        WHERE case_id = p_case AND source_id = '' AND channel = '';
    IF nbatches <> s.batches OR nsamples <> s.samples OR nlinks <> s.links
       OR nsegs <> s.segments OR msamples <> s.samples THEN
        RAISE EXCEPTION 'perfusion record is append-only: the sealed form does not account for what it would replace (% batches, % samples, % links stored; % batches, % samples, % links, % segments sealed)',
            nbatches, nsamples, nlinks, s.batches, s.samples, s.links, nsegs
            USING ERRCODE = 'P0001';
    END IF;
    DELETE FROM sample_chunks WHERE case_id = p_case;
    DELETE FROM sample_batches WHERE case_id = p_case;
    DELETE FROM ledger WHERE case_id = p_case AND kind = 'samples';
    -- Nothing is left for the compactor to chunk.
    UPDATE sample_sources SET chunked = watermark WHERE case_id = p_case;
    UPDATE sealed_cases SET sealing = false WHERE case_id = p_case;
END
$$;

REVOKE ALL ON FUNCTION perfusion_seal_case(uuid) FROM PUBLIC;
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'perfusion_app') THEN
        GRANT EXECUTE ON FUNCTION perfusion_seal_case(uuid) TO perfusion_app;
    END IF;
END
$$;

-- The background sealer's candidates: closed or signed, not sealed.
CREATE INDEX cases_closed ON cases (closed_at) WHERE status IN ('closed', 'signed');
