-- 012_inbound: what the EHR sends (hl7/inbound, store/inbound.go).
--
-- inbound_messages is the journal of every HL7 v2 message an allowed sender
-- delivered that parsed as HL7: the bytes as received (patient data: the
-- database is its only home, never a log), the acknowledgement sent, and
-- what the message changed (case ids, ledger sequences, field names — no
-- patient data). It is keyed by the sender's own identity of the message
-- (sender, MSH-3, MSH-4, MSH-10), which is what makes a resend idempotent.
-- A message is never deleted and what came never changes; only its
-- processing result does (a message answered AR is processed again when
-- resent, and an administrator may replay one), so the guard below refuses
-- DELETE, TRUNCATE and any UPDATE of the received columns.
CREATE TABLE inbound_messages (
    message_id       bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sender           text        NOT NULL,  -- the allowlist entry (or certificate name) of the connection
    sending_app      text        NOT NULL,  -- MSH-3.1
    sending_facility text        NOT NULL,  -- MSH-4.1
    control_id       text        NOT NULL,  -- MSH-10
    message_type     text        NOT NULL,  -- MSH-9.1^MSH-9.2, e.g. SIU^S12
    received_at      timestamptz NOT NULL,
    content          bytea       NOT NULL,  -- the message as received: patient data
    content_sha256   bytea       NOT NULL CHECK (octet_length(content_sha256) = 32),
    ack_code         text        NOT NULL CHECK (ack_code IN ('AA', 'AE', 'AR')),
    ack              bytea       NOT NULL,  -- the acknowledgement as sent
    error            text        NOT NULL DEFAULT '',  -- why AE or AR, without patient data
    outcome          jsonb       NOT NULL,  -- store.InboundOutcome: what it changed
    processed_at     timestamptz NOT NULL,
    attempts         integer     NOT NULL DEFAULT 1 CHECK (attempts > 0),
    UNIQUE (sender, sending_app, sending_facility, control_id)
);
CREATE INDEX inbound_messages_listing ON inbound_messages (received_at DESC, message_id DESC);

-- The cases each message changed or named, for "what did the EHR do to this
-- case" (ListInboundMessages with a case id). Rows are added, never removed:
-- a replay adds the cases it touched.
CREATE TABLE inbound_message_cases (
    case_id    uuid   NOT NULL REFERENCES cases (case_id),
    message_id bigint NOT NULL REFERENCES inbound_messages (message_id),
    PRIMARY KEY (case_id, message_id)
);

CREATE FUNCTION perfusion_guard_inbound_message() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE'
       OR (NEW.message_id, NEW.sender, NEW.sending_app, NEW.sending_facility, NEW.control_id, NEW.message_type,
           NEW.received_at, NEW.content, NEW.content_sha256)
          IS DISTINCT FROM (OLD.message_id, OLD.sender, OLD.sending_app, OLD.sending_facility, OLD.control_id, OLD.message_type,
           OLD.received_at, OLD.content, OLD.content_sha256)
       OR NEW.attempts < OLD.attempts THEN
        RAISE EXCEPTION 'perfusion record is append-only: % on % refused', TG_OP, TG_TABLE_NAME
            USING ERRCODE = 'P0001',
                  HINT = 'A received message is kept as it came; only its processing result changes.';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER inbound_messages_guard
    BEFORE UPDATE OR DELETE ON inbound_messages
    FOR EACH ROW EXECUTE FUNCTION perfusion_guard_inbound_message();
CREATE TRIGGER inbound_messages_no_truncate
    BEFORE TRUNCATE ON inbound_messages
    FOR EACH STATEMENT EXECUTE FUNCTION perfusion_refuse_change();
CREATE TRIGGER inbound_message_cases_append_only
    BEFORE UPDATE OR DELETE ON inbound_message_cases
    FOR EACH ROW EXECUTE FUNCTION perfusion_refuse_change();
CREATE TRIGGER inbound_message_cases_no_truncate
    BEFORE TRUNCATE ON inbound_message_cases
    FOR EACH STATEMENT EXECUTE FUNCTION perfusion_refuse_change();
REVOKE ALL ON inbound_messages, inbound_message_cases FROM PUBLIC;

-- inbound_patients: the latest demographics, body measures and visit the
-- ADT feed gave for each patient identifier, so a schedule message that
-- names only the MRN still fills a planned case, and a merge is remembered.
-- Operational state, not the record: a row is replaced by newer news.
CREATE TABLE inbound_patients (
    assigning_authority text        NOT NULL,
    mrn                 text        NOT NULL,
    patient             jsonb       NOT NULL,  -- store.InboundPatient: patient data
    updated_at          timestamptz NOT NULL,
    message_id          bigint      NOT NULL,  -- the message that last changed it
    PRIMARY KEY (assigning_authority, mrn)
);
REVOKE ALL ON inbound_patients FROM PUBLIC;

-- inbound_bookings: which case holds each appointment of the OR schedule
-- (SIU SCH-2, else SCH-1) at a site. A rescheduled appointment moves to the
-- planned case that replaces its old one, so the row changes.
CREATE TABLE inbound_bookings (
    site           text        NOT NULL,
    appointment_id text        NOT NULL,
    case_id        uuid        NOT NULL REFERENCES cases (case_id),
    updated_at     timestamptz NOT NULL,
    message_id     bigint      NOT NULL,
    PRIMARY KEY (site, appointment_id)
);
REVOKE ALL ON inbound_bookings FROM PUBLIC;

-- Finding the cases an ADT message names: by the MRN of a details version
-- (the query keeps the current version) or of an identity reconciliation,
-- and by the encounter (visit number). Reads beside the write path, each an
-- index lookup rather than a scan of every case's details.
CREATE INDEX case_details_mrn ON case_details ((details -> 'patient' ->> 'mrn'))
    WHERE details -> 'patient' ->> 'mrn' IS NOT NULL;
CREATE INDEX case_details_encounter ON case_details ((details -> 'procedure' ->> 'encounter_id'))
    WHERE details -> 'procedure' ->> 'encounter_id' IS NOT NULL;
CREATE INDEX identity_reconciliations_mrn ON identity_reconciliations (mrn);

-- The serving role (008) gets SELECT and INSERT by default; processing
-- results, the patient index and the bookings change.
GRANT UPDATE (ack_code, ack, error, outcome, processed_at, attempts) ON inbound_messages TO perfusion_app;
GRANT UPDATE ON inbound_patients, inbound_bookings TO perfusion_app;
