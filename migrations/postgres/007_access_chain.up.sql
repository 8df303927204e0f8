-- 007_access_chain: the access audit proves itself (store/access.go).
--
-- Every access event appended from now on is a link of its site's hash
-- chain: site says which chain (the site of the case the event names, or
-- of the list it read; '' for events that reach no site, such as a refused
-- call without credentials), chain_seq its place (1, 2, … per site), and
--   hash = SHA-256("perfusion.access.v1" 0x00 ‖ prev_hash ‖ uvarint(len) ‖ canonical JSON of the event)
-- The first link of a site's chain has
--   prev_hash = SHA-256("perfusion.access.genesis.v1" 0x00 ‖ site)
-- (the genesis link), so a chain cannot be moved to another site.
--
-- Rows written before this migration keep NULL chain columns: they are
-- outside every chain (each chain starts at the first event after the
-- upgrade), and VerifyAccessAudit counts them separately.
--
-- Columns added here are part of the hashed content too: case_ids (the
-- cases a list or cohort call returned, space-separated, when there were
-- at most 100), case_count and case_set_digest (SHA-256 of the sorted ids,
-- for any size) and query (the list's request, as JSON, without patient
-- identifiers). break_glass is derived from method and reason, for sorting
-- and filtering the report.
ALTER TABLE access_events
    ADD COLUMN site            text    NOT NULL DEFAULT '',
    ADD COLUMN chain_seq       bigint  CHECK (chain_seq > 0),
    ADD COLUMN prev_hash       bytea   CHECK (octet_length(prev_hash) = 32),
    ADD COLUMN hash            bytea   CHECK (octet_length(hash) = 32),
    ADD COLUMN case_ids        text    NOT NULL DEFAULT '',
    ADD COLUMN case_count      integer NOT NULL DEFAULT 0 CHECK (case_count >= 0),
    ADD COLUMN case_set_digest text    NOT NULL DEFAULT '',
    ADD COLUMN query           text    NOT NULL DEFAULT '',
    ADD COLUMN break_glass     boolean GENERATED ALWAYS AS (
        method = '/perfusion.v1.AccessService/OpenBreakGlass'
        OR reason IN ('break-glass', 'stream opened, break-glass', 'break-glass ended', 'break-glass expired')) STORED,
    ADD CONSTRAINT access_events_chained CHECK ((chain_seq IS NULL) = (hash IS NULL) AND (hash IS NULL) = (prev_hash IS NULL));
CREATE UNIQUE INDEX access_events_chain ON access_events (site, chain_seq) WHERE chain_seq IS NOT NULL;
CREATE INDEX access_events_site ON access_events (site, at DESC);

-- access_chain_heads: the last link of each site's chain. Appending locks
-- the site's row (one lock per site, not one for the whole audit), and
-- verification checks that the chain reaches the head it records, so a
-- truncated tail shows. Only appends move a head: seq only grows.
CREATE TABLE access_chain_heads (
    site text   NOT NULL PRIMARY KEY,
    seq  bigint NOT NULL CHECK (seq >= 0),
    hash bytea  NOT NULL CHECK (octet_length(hash) = 32)
);
CREATE FUNCTION perfusion_access_head_forward() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR NEW.site IS DISTINCT FROM OLD.site OR NEW.seq <= OLD.seq THEN
        RAISE EXCEPTION 'perfusion record is append-only: % on % refused', TG_OP, TG_TABLE_NAME
            USING ERRCODE = 'P0001';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER access_chain_heads_forward
    BEFORE UPDATE OR DELETE ON access_chain_heads
    FOR EACH ROW EXECUTE FUNCTION perfusion_access_head_forward();
CREATE TRIGGER access_chain_heads_no_truncate
    BEFORE TRUNCATE ON access_chain_heads
    FOR EACH STATEMENT EXECUTE FUNCTION perfusion_refuse_change();
REVOKE ALL ON access_chain_heads FROM PUBLIC;
