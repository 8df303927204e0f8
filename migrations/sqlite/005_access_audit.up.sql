-- 005_access_audit (numbered 004 in this dialect before the two shared one numbering): the access audit and break-glass grants
-- (store/access.go); see the PostgreSQL migration 005_access_audit. Times
-- are microseconds since the epoch, UTC. Triggers make access_events
-- append-only and let a grant's end be set once.
CREATE TABLE access_events (
    event_id    TEXT    NOT NULL PRIMARY KEY CHECK (length(event_id) = 36),
    at          INTEGER NOT NULL,
    principal   TEXT    NOT NULL,
    roles       TEXT    NOT NULL,
    via         TEXT    NOT NULL,
    method      TEXT    NOT NULL,
    case_id     TEXT,
    code        TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    client_addr TEXT    NOT NULL
) STRICT;
CREATE INDEX access_events_at ON access_events (at DESC, event_id DESC);
CREATE INDEX access_events_principal ON access_events (principal, at DESC);
CREATE INDEX access_events_case ON access_events (case_id, at DESC) WHERE case_id IS NOT NULL;

CREATE TRIGGER access_events_no_update BEFORE UPDATE ON access_events
BEGIN
    SELECT RAISE(ABORT, 'perfusion record is append-only');
END;
CREATE TRIGGER access_events_no_delete BEFORE DELETE ON access_events
BEGIN
    SELECT RAISE(ABORT, 'perfusion record is append-only');
END;

CREATE TABLE break_glass_grants (
    grant_id   TEXT    NOT NULL PRIMARY KEY CHECK (length(grant_id) = 36),
    principal  TEXT    NOT NULL,
    case_id    TEXT    NOT NULL REFERENCES cases (case_id),
    site       TEXT    NOT NULL,
    reason     TEXT    NOT NULL CHECK (length(reason) > 0),
    started_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL CHECK (expires_at > started_at),
    ended_at   INTEGER,
    end_reason TEXT    NOT NULL DEFAULT '' CHECK (end_reason IN ('', 'ended', 'expired'))
) STRICT;
CREATE INDEX break_glass_active ON break_glass_grants (principal, case_id) WHERE ended_at IS NULL;
CREATE INDEX break_glass_listing ON break_glass_grants (started_at DESC, grant_id DESC);

CREATE TRIGGER break_glass_no_delete BEFORE DELETE ON break_glass_grants
BEGIN
    SELECT RAISE(ABORT, 'perfusion record is append-only');
END;
CREATE TRIGGER break_glass_end_once
BEFORE UPDATE ON break_glass_grants
WHEN OLD.ended_at IS NOT NULL
  OR NEW.grant_id IS NOT OLD.grant_id OR NEW.principal IS NOT OLD.principal OR NEW.case_id IS NOT OLD.case_id
  OR NEW.site IS NOT OLD.site OR NEW.reason IS NOT OLD.reason OR NEW.started_at IS NOT OLD.started_at
  OR NEW.expires_at IS NOT OLD.expires_at
BEGIN
    SELECT RAISE(ABORT, 'perfusion record is append-only');
END;
