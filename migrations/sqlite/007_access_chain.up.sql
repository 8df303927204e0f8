-- 007_access_chain (numbered 006 in this dialect before the two shared one numbering): the access audit proves itself (store/access.go); see
-- the PostgreSQL migration 007_access_chain for the chain's definition.
-- Rows written before this migration keep NULL chain columns and are
-- outside every chain; each site's chain starts at the first event after
-- the upgrade, from its genesis link.
ALTER TABLE access_events ADD COLUMN site TEXT NOT NULL DEFAULT '';
ALTER TABLE access_events ADD COLUMN chain_seq INTEGER CHECK (chain_seq > 0);
ALTER TABLE access_events ADD COLUMN prev_hash BLOB CHECK (length(prev_hash) = 32);
ALTER TABLE access_events ADD COLUMN hash BLOB CHECK (length(hash) = 32);
ALTER TABLE access_events ADD COLUMN case_ids TEXT NOT NULL DEFAULT '';
ALTER TABLE access_events ADD COLUMN case_count INTEGER NOT NULL DEFAULT 0 CHECK (case_count >= 0);
ALTER TABLE access_events ADD COLUMN case_set_digest TEXT NOT NULL DEFAULT '';
ALTER TABLE access_events ADD COLUMN query TEXT NOT NULL DEFAULT '';
ALTER TABLE access_events ADD COLUMN break_glass INTEGER GENERATED ALWAYS AS (
    method = '/perfusion.v1.AccessService/OpenBreakGlass'
    OR reason IN ('break-glass', 'stream opened, break-glass', 'break-glass ended', 'break-glass expired')) VIRTUAL;
CREATE UNIQUE INDEX access_events_chain ON access_events (site, chain_seq) WHERE chain_seq IS NOT NULL;
CREATE INDEX access_events_site ON access_events (site, at DESC);

CREATE TABLE access_chain_heads (
    site TEXT    NOT NULL PRIMARY KEY,
    seq  INTEGER NOT NULL CHECK (seq >= 0),
    hash BLOB    NOT NULL CHECK (length(hash) = 32)
) STRICT;
CREATE TRIGGER access_chain_heads_no_delete BEFORE DELETE ON access_chain_heads
BEGIN
    SELECT RAISE(ABORT, 'perfusion record is append-only');
END;
CREATE TRIGGER access_chain_heads_forward BEFORE UPDATE ON access_chain_heads
WHEN NEW.site IS NOT OLD.site OR NEW.seq <= OLD.seq
BEGIN
    SELECT RAISE(ABORT, 'perfusion record is append-only');
END;
