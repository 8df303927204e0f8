package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"

	"perfusion/store"
)

var _ store.InboundBackend = (*Backend)(nil)

const inboundCols = `message_id, sender, sending_app, sending_facility, control_id, message_type, received_at,
	content_sha256, ack_code, ack, error, outcome, processed_at, attempts`

func scanInbound(row rowScanner, withContent bool) (*store.InboundMessage, error) {
	var m store.InboundMessage
	var sum []byte
	var outcome string
	var received, processed sql.NullInt64
	dest := []any{&m.ID, &m.Sender, &m.SendingApplication, &m.SendingFacility, &m.ControlID, &m.MessageType, &received,
		&sum, &m.AckCode, &m.Ack, &m.Error, &outcome, &processed, &m.Attempts}
	if withContent {
		dest = append(dest, &m.Content)
	}
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	copy(m.ContentSHA256[:], sum)
	if err := json.Unmarshal([]byte(outcome), &m.Outcome); err != nil {
		return nil, fmt.Errorf("inbound message %d: outcome does not decode: %w", m.ID, err)
	}
	m.ReceivedAt, m.ProcessedAt = fromMicros(received), fromMicros(processed)
	return &m, nil
}

func oneInbound(row *sql.Row, withContent bool) (*store.InboundMessage, error) {
	m, err := scanInbound(row, withContent)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("inbound message")
	}
	if err != nil {
		return nil, wrap("inbound message", err)
	}
	return m, nil
}

// InboundMessageByKey returns the journal row of a key.
func (b *Backend) InboundMessageByKey(ctx context.Context, k store.InboundKey) (*store.InboundMessage, error) {
	return oneInbound(b.r.QueryRowContext(ctx, `SELECT `+inboundCols+` FROM inbound_messages
		WHERE sender = ? AND sending_app = ? AND sending_facility = ? AND control_id = ?`,
		k.Sender, k.SendingApplication, k.SendingFacility, k.ControlID), false)
}

// InboundMessage returns a journal row by id.
func (b *Backend) InboundMessage(ctx context.Context, id int64) (*store.InboundMessage, error) {
	return oneInbound(b.r.QueryRowContext(ctx, `SELECT `+inboundCols+`, content FROM inbound_messages WHERE message_id = ?`, id), true)
}

// RecordInbound stores a journal row (or a new processing result of one)
// with the cases it names, the patient index rows and the bookings, in one
// transaction.
func (b *Backend) RecordInbound(ctx context.Context, m *store.InboundMessage, w store.InboundWrites) (int64, error) {
	outcome, err := json.Marshal(m.Outcome)
	if err != nil {
		return 0, fmt.Errorf("sqlite: record inbound: %w", err)
	}
	tx, err := b.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("sqlite: begin: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	id := m.ID
	if id == 0 {
		err := tx.QueryRowContext(ctx, `INSERT INTO inbound_messages
			(sender, sending_app, sending_facility, control_id, message_type, received_at, content, content_sha256,
			 ack_code, ack, error, outcome, processed_at, attempts)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING message_id`,
			m.Sender, m.SendingApplication, m.SendingFacility, m.ControlID, m.MessageType, micros(m.ReceivedAt), m.Content, m.ContentSHA256[:],
			m.AckCode, nonNil(m.Ack), m.Error, string(outcome), micros(m.ProcessedAt), max(m.Attempts, 1)).Scan(&id)
		if err != nil {
			return 0, wrap("record inbound", err)
		}
	} else {
		res, err := tx.ExecContext(ctx, `UPDATE inbound_messages SET ack_code = ?, ack = ?, error = ?, outcome = ?,
			processed_at = ?, attempts = ? WHERE message_id = ?`,
			m.AckCode, nonNil(m.Ack), m.Error, string(outcome), micros(m.ProcessedAt), m.Attempts, m.ID)
		if err != nil {
			return 0, wrap("record inbound", err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return 0, notFound("inbound message")
		}
	}
	for _, c := range m.Outcome.CaseIDs() {
		if _, err := tx.ExecContext(ctx, `INSERT INTO inbound_message_cases (case_id, message_id) VALUES (?, ?) ON CONFLICT DO NOTHING`,
			c.String(), id); err != nil {
			return 0, wrap("record inbound cases", err)
		}
	}
	for _, p := range w.Patients {
		doc, err := json.Marshal(p)
		if err != nil {
			return 0, err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO inbound_patients (assigning_authority, mrn, patient, updated_at, message_id)
			VALUES (?, ?, ?, ?, ?) ON CONFLICT (assigning_authority, mrn)
			DO UPDATE SET patient = excluded.patient, updated_at = excluded.updated_at, message_id = excluded.message_id`,
			p.AssigningAuthority, p.MRN, string(doc), micros(p.UpdatedAt), id); err != nil {
			return 0, wrap("record inbound patient", err)
		}
	}
	for _, bk := range w.Bookings {
		if _, err := tx.ExecContext(ctx, `INSERT INTO inbound_bookings (site, appointment_id, case_id, updated_at, message_id)
			VALUES (?, ?, ?, ?, ?) ON CONFLICT (site, appointment_id)
			DO UPDATE SET case_id = excluded.case_id, updated_at = excluded.updated_at, message_id = excluded.message_id`,
			bk.Site, bk.AppointmentID, bk.CaseID.String(), micros(bk.UpdatedAt), id); err != nil {
			return 0, wrap("record inbound booking", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("sqlite: commit: %w", err)
	}
	return id, nil
}

// nonNil stores an empty BLOB rather than NULL for an empty slice.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// ListInboundMessages returns journal rows newest first, without content.
func (b *Backend) ListInboundMessages(ctx context.Context, f store.InboundFilter) ([]store.InboundMessage, error) {
	var (
		where []string
		args  []any
	)
	if f.Sender != "" {
		where, args = append(where, "sender = ?"), append(args, f.Sender)
	}
	if f.MessageType != "" {
		where, args = append(where, "message_type = ?"), append(args, f.MessageType)
	}
	if f.AckCode != "" {
		where, args = append(where, "ack_code = ?"), append(args, f.AckCode)
	}
	if f.CaseID != uuid.Nil {
		where, args = append(where, "message_id IN (SELECT message_id FROM inbound_message_cases WHERE case_id = ?)"), append(args, f.CaseID.String())
	}
	if !f.From.IsZero() {
		where, args = append(where, "received_at >= ?"), append(args, micros(f.From))
	}
	if !f.To.IsZero() {
		where, args = append(where, "received_at < ?"), append(args, micros(f.To))
	}
	if f.BeforeID > 0 {
		where, args = append(where, "message_id < ?"), append(args, f.BeforeID)
	}
	q := `SELECT ` + inboundCols + ` FROM inbound_messages`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY message_id DESC LIMIT ?"
	args = append(args, max(f.Limit, 1))
	rows, err := b.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, wrap("list inbound messages", err)
	}
	defer rows.Close()
	var out []store.InboundMessage
	for rows.Next() {
		m, err := scanInbound(rows, false)
		if err != nil {
			return nil, wrap("list inbound messages", err)
		}
		out = append(out, *m)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("list inbound messages", err)
	}
	return out, nil
}

// InboundPatient returns the patient index row of an identifier.
func (b *Backend) InboundPatient(ctx context.Context, authority, mrn string) (*store.InboundPatient, error) {
	var p store.InboundPatient
	var doc string
	var at sql.NullInt64
	err := b.r.QueryRowContext(ctx, `SELECT patient, updated_at, message_id FROM inbound_patients
		WHERE assigning_authority = ? AND mrn = ?`, authority, mrn).Scan(&doc, &at, &p.MessageID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("inbound patient")
	}
	if err != nil {
		return nil, wrap("inbound patient", err)
	}
	if err := json.Unmarshal([]byte(doc), &p); err != nil {
		return nil, fmt.Errorf("sqlite: inbound patient does not decode: %w", err)
	}
	p.AssigningAuthority, p.MRN, p.UpdatedAt = authority, mrn, fromMicros(at)
	return &p, nil
}

// InboundBooking returns the case holding an appointment.
func (b *Backend) InboundBooking(ctx context.Context, site, appointmentID string) (*store.InboundBooking, error) {
	bk := store.InboundBooking{Site: site, AppointmentID: appointmentID}
	var id sql.NullString
	var at sql.NullInt64
	err := b.r.QueryRowContext(ctx, `SELECT case_id, updated_at, message_id FROM inbound_bookings
		WHERE site = ? AND appointment_id = ?`, site, appointmentID).Scan(&id, &at, &bk.MessageID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("inbound booking")
	}
	if err != nil {
		return nil, wrap("inbound booking", err)
	}
	if bk.CaseID, err = parseUUID(id, "case id"); err != nil {
		return nil, err
	}
	bk.UpdatedAt = fromMicros(at)
	return &bk, nil
}

// sitesIn renders a site list as an IN clause with its arguments.
func sitesIn(sites []string) (string, []any) {
	if len(sites) == 0 {
		return "(NULL)", nil
	}
	args := make([]any, len(sites))
	for i, s := range sites {
		args[i] = s
	}
	return "(" + strings.TrimSuffix(strings.Repeat("?, ", len(sites)), ", ") + ")", args
}

// CasesByMRN returns the cases of the sites whose current details or
// identity reconciliations carry the MRN.
func (b *Backend) CasesByMRN(ctx context.Context, sites []string, mrn string) ([]uuid.UUID, error) {
	in, sargs := sitesIn(sites)
	args := append(append([]any{mrn}, sargs...), mrn)
	args = append(args, sargs...)
	return b.caseIDs(ctx, "cases by MRN", `SELECT c.case_id FROM case_details d
		JOIN cases c ON c.case_id = d.case_id AND c.details_version = d.version
		WHERE json_extract(d.details, '$.patient.mrn') = ? AND c.site IN `+in+`
		UNION
		SELECT c.case_id FROM identity_reconciliations r JOIN cases c ON c.case_id = r.case_id
		WHERE r.mrn = ? AND c.site IN `+in+`
		ORDER BY 1`, args...)
}

// CasesByEncounter returns the cases of the sites whose current details
// carry the encounter id.
func (b *Backend) CasesByEncounter(ctx context.Context, sites []string, encounterID string) ([]uuid.UUID, error) {
	in, sargs := sitesIn(sites)
	return b.caseIDs(ctx, "cases by encounter", `SELECT c.case_id FROM case_details d
		JOIN cases c ON c.case_id = d.case_id AND c.details_version = d.version
		WHERE json_extract(d.details, '$.procedure.encounter_id') = ? AND c.site IN `+in+`
		ORDER BY 1`, append([]any{encounterID}, sargs...)...)
}

func (b *Backend) caseIDs(ctx context.Context, op, q string, args ...any) ([]uuid.UUID, error) {
	rows, err := b.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, wrap(op, err)
	}
	defer rows.Close()
	var out []uuid.UUID
	for rows.Next() {
		var s sql.NullString
		if err := rows.Scan(&s); err != nil {
			return nil, wrap(op, err)
		}
		id, err := parseUUID(s, "case id")
		if err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap(op, err)
	}
	return out, nil
}
