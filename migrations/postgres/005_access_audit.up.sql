-- 005_access_audit: the access audit and break-glass grants
-- (store/access.go).
--
-- access_events records every call that read or wrote patient data and
-- every refused call. It is append-only in the database: the same trigger
-- function as the record refuses UPDATE, DELETE and TRUNCATE, and the
-- table's privileges are revoked from PUBLIC so that only the owner (the
-- service's role) can even insert.
CREATE TABLE access_events (
    event_id    uuid        NOT NULL PRIMARY KEY,
    at          timestamptz NOT NULL,
    principal   text        NOT NULL,
    roles       text        NOT NULL,
    via         text        NOT NULL,
    method      text        NOT NULL,
    case_id     uuid,
    code        text        NOT NULL,
    reason      text        NOT NULL,
    client_addr text        NOT NULL
);
CREATE INDEX access_events_at ON access_events (at DESC, event_id DESC);
CREATE INDEX access_events_principal ON access_events (principal, at DESC);
CREATE INDEX access_events_case ON access_events (case_id, at DESC) WHERE case_id IS NOT NULL;

CREATE TRIGGER access_events_append_only
    BEFORE UPDATE OR DELETE ON access_events
    FOR EACH ROW EXECUTE FUNCTION perfusion_refuse_change();
CREATE TRIGGER access_events_no_truncate
    BEFORE TRUNCATE ON access_events
    FOR EACH STATEMENT EXECUTE FUNCTION perfusion_refuse_change();
REVOKE ALL ON access_events FROM PUBLIC;

-- break_glass_grants: emergency access of one principal to one case.
-- Everything but the end (ended_at, end_reason, set once) is immutable.
CREATE TABLE break_glass_grants (
    grant_id   uuid        NOT NULL PRIMARY KEY,
    principal  text        NOT NULL,
    case_id    uuid        NOT NULL REFERENCES cases (case_id),
    site       text        NOT NULL,
    reason     text        NOT NULL CHECK (length(reason) > 0),
    started_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL CHECK (expires_at > started_at),
    ended_at   timestamptz,
    end_reason text        NOT NULL DEFAULT '' CHECK (end_reason IN ('', 'ended', 'expired'))
);
CREATE INDEX break_glass_active ON break_glass_grants (principal, case_id) WHERE ended_at IS NULL;
CREATE INDEX break_glass_listing ON break_glass_grants (started_at DESC, grant_id DESC);

CREATE FUNCTION perfusion_break_glass_end_once() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR OLD.ended_at IS NOT NULL
       OR (NEW.grant_id, NEW.principal, NEW.case_id, NEW.site, NEW.reason, NEW.started_at, NEW.expires_at)
          IS DISTINCT FROM (OLD.grant_id, OLD.principal, OLD.case_id, OLD.site, OLD.reason, OLD.started_at, OLD.expires_at) THEN
        RAISE EXCEPTION 'perfusion record is append-only: % on % refused', TG_OP, TG_TABLE_NAME
            USING ERRCODE = 'P0001';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER break_glass_end_once
    BEFORE UPDATE OR DELETE ON break_glass_grants
    FOR EACH ROW EXECUTE FUNCTION perfusion_break_glass_end_once();
CREATE TRIGGER break_glass_no_truncate
    BEFORE TRUNCATE ON break_glass_grants
    FOR EACH STATEMENT EXECUTE FUNCTION perfusion_refuse_change();
REVOKE ALL ON break_glass_grants FROM PUBLIC;
