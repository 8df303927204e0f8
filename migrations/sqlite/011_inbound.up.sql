-- 011_inbound: see the PostgreSQL migration 012_inbound. Times are
-- microseconds since the epoch, UTC; JSON is TEXT checked with json_valid.
CREATE TABLE inbound_messages (
    message_id       INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    sender           TEXT    NOT NULL,
    sending_app      TEXT    NOT NULL,
    sending_facility TEXT    NOT NULL,
    control_id       TEXT    NOT NULL,
    message_type     TEXT    NOT NULL,
    received_at      INTEGER NOT NULL,
    content          BLOB    NOT NULL,
    content_sha256   BLOB    NOT NULL CHECK (length(content_sha256) = 32),
    ack_code         TEXT    NOT NULL CHECK (ack_code IN ('AA', 'AE', 'AR')),
    ack              BLOB    NOT NULL,
    error            TEXT    NOT NULL DEFAULT '',
    outcome          TEXT    NOT NULL CHECK (json_valid(outcome)),
    processed_at     INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 1 CHECK (attempts > 0),
    UNIQUE (sender, sending_app, sending_facility, control_id)
) STRICT;
CREATE INDEX inbound_messages_listing ON inbound_messages (received_at DESC, message_id DESC);

CREATE TABLE inbound_message_cases (
    case_id    TEXT    NOT NULL REFERENCES cases (case_id),
    message_id INTEGER NOT NULL REFERENCES inbound_messages (message_id),
    PRIMARY KEY (case_id, message_id)
) STRICT;

CREATE TRIGGER inbound_messages_kept BEFORE UPDATE OF message_id, sender, sending_app, sending_facility, control_id,
    message_type, received_at, content, content_sha256 ON inbound_messages
BEGIN
    SELECT RAISE(ABORT, 'perfusion record is append-only');
END;

CREATE TRIGGER inbound_messages_attempts_forward BEFORE UPDATE OF attempts ON inbound_messages
WHEN NEW.attempts < OLD.attempts
BEGIN
    SELECT RAISE(ABORT, 'perfusion record is append-only');
END;

CREATE TRIGGER inbound_messages_no_delete BEFORE DELETE ON inbound_messages
BEGIN
    SELECT RAISE(ABORT, 'perfusion record is append-only');
END;

-- REPLACE deletes without DELETE triggers: refuse inserting a key twice.
CREATE TRIGGER inbound_messages_no_replace BEFORE INSERT ON inbound_messages
WHEN EXISTS (SELECT 1 FROM inbound_messages WHERE message_id = NEW.message_id
             OR (sender = NEW.sender AND sending_app = NEW.sending_app
                 AND sending_facility = NEW.sending_facility AND control_id = NEW.control_id))
BEGIN
    SELECT RAISE(ABORT, 'perfusion record is append-only: duplicate key');
END;

CREATE TRIGGER inbound_message_cases_no_update BEFORE UPDATE ON inbound_message_cases
BEGIN
    SELECT RAISE(ABORT, 'perfusion record is append-only');
END;

CREATE TRIGGER inbound_message_cases_no_delete BEFORE DELETE ON inbound_message_cases
BEGIN
    SELECT RAISE(ABORT, 'perfusion record is append-only');
END;

CREATE TABLE inbound_patients (
    assigning_authority TEXT    NOT NULL,
    mrn                 TEXT    NOT NULL,
    patient             TEXT    NOT NULL CHECK (json_valid(patient)),
    updated_at          INTEGER NOT NULL,
    message_id          INTEGER NOT NULL,
    PRIMARY KEY (assigning_authority, mrn)
) STRICT;

CREATE TABLE inbound_bookings (
    site           TEXT    NOT NULL,
    appointment_id TEXT    NOT NULL,
    case_id        TEXT    NOT NULL REFERENCES cases (case_id),
    updated_at     INTEGER NOT NULL,
    message_id     INTEGER NOT NULL,
    PRIMARY KEY (site, appointment_id)
) STRICT;

CREATE INDEX case_details_mrn ON case_details (json_extract(details, '$.patient.mrn'));
CREATE INDEX case_details_encounter ON case_details (json_extract(details, '$.procedure.encounter_id'));
CREATE INDEX identity_reconciliations_mrn ON identity_reconciliations (mrn);
