package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"perfusion/store"
)

var _ store.InboundBackend = (*Backend)(nil)

const inboundCols = `message_id, sender, sending_app, sending_facility, control_id, message_type, received_at,
	content_sha256, ack_code, ack, error, outcome, processed_at, attempts`

func scanInbound(row pgx.Row, withContent bool) (*store.InboundMessage, error) {
	var m store.InboundMessage
	var sum, outcome []byte
	dest := []any{&m.ID, &m.Sender, &m.SendingApplication, &m.SendingFacility, &m.ControlID, &m.MessageType, &m.ReceivedAt,
		&sum, &m.AckCode, &m.Ack, &m.Error, &outcome, &m.ProcessedAt, &m.Attempts}
	if withContent {
		dest = append(dest, &m.Content)
	}
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	copy(m.ContentSHA256[:], sum)
	if err := json.Unmarshal(outcome, &m.Outcome); err != nil {
		return nil, fmt.Errorf("inbound message %d: outcome does not decode: %w", m.ID, err)
	}
	m.ReceivedAt, m.ProcessedAt = m.ReceivedAt.UTC(), m.ProcessedAt.UTC()
	return &m, nil
}

// InboundMessageByKey returns the journal row of a key.
func (b *Backend) InboundMessageByKey(ctx context.Context, k store.InboundKey) (*store.InboundMessage, error) {
	m, err := scanInbound(b.pool.QueryRow(ctx, `SELECT `+inboundCols+` FROM inbound_messages
		WHERE sender = $1 AND sending_app = $2 AND sending_facility = $3 AND control_id = $4`,
		k.Sender, k.SendingApplication, k.SendingFacility, k.ControlID), false)
	if err != nil {
		return nil, wrap("inbound message", err)
	}
	return m, nil
}

// InboundMessage returns a journal row by id.
func (b *Backend) InboundMessage(ctx context.Context, id int64) (*store.InboundMessage, error) {
	m, err := scanInbound(b.pool.QueryRow(ctx, `SELECT `+inboundCols+`, content FROM inbound_messages WHERE message_id = $1`, id), true)
	if err != nil {
		return nil, wrap("inbound message", err)
	}
	return m, nil
}

// RecordInbound stores a journal row (or a new processing result of one)
// with the cases it names, the patient index rows and the bookings. The
// statements go as one pipelined batch, which PostgreSQL runs as one
// implicit transaction: one round trip and one commit per message, which
// is what bounds a sender that waits for each ACK.
func (b *Backend) RecordInbound(ctx context.Context, m *store.InboundMessage, w store.InboundWrites) (int64, error) {
	outcome, err := json.Marshal(m.Outcome)
	if err != nil {
		return 0, fmt.Errorf("postgres: record inbound: %w", err)
	}
	var batch pgx.Batch
	// id is the row's message_id in the statements after the first: the
	// identity just drawn for a new row (currval, this session's), or
	// the existing row's.
	var id any = m.ID
	idSQL := "$%d::bigint"
	if m.ID == 0 {
		batch.Queue(`INSERT INTO inbound_messages
			(sender, sending_app, sending_facility, control_id, message_type, received_at, content, content_sha256,
			 ack_code, ack, error, outcome, processed_at, attempts)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING message_id`,
			m.Sender, m.SendingApplication, m.SendingFacility, m.ControlID, m.MessageType, m.ReceivedAt, m.Content, m.ContentSHA256[:],
			m.AckCode, m.Ack, m.Error, outcome, m.ProcessedAt, max(m.Attempts, 1))
		id, idSQL = nil, "currval(pg_get_serial_sequence('inbound_messages', 'message_id'))"
	} else {
		batch.Queue(`UPDATE inbound_messages SET ack_code = $2, ack = $3, error = $4, outcome = $5,
			processed_at = $6, attempts = $7 WHERE message_id = $1 RETURNING message_id`,
			m.ID, m.AckCode, m.Ack, m.Error, outcome, m.ProcessedAt, m.Attempts)
	}
	// ref renders the message id as the n-th parameter (an existing row)
	// or as the identity just drawn (a new one).
	ref := func(n int, args []any) (string, []any) {
		if id == nil {
			return idSQL, args
		}
		return fmt.Sprintf(idSQL, n), append(args, id)
	}
	for _, c := range m.Outcome.CaseIDs() {
		r, args := ref(2, []any{c})
		batch.Queue(`INSERT INTO inbound_message_cases (case_id, message_id) VALUES ($1, `+r+`) ON CONFLICT DO NOTHING`, args...)
	}
	for _, p := range w.Patients {
		doc, err := json.Marshal(p)
		if err != nil {
			return 0, err
		}
		r, args := ref(5, []any{p.AssigningAuthority, p.MRN, doc, p.UpdatedAt})
		batch.Queue(`INSERT INTO inbound_patients (assigning_authority, mrn, patient, updated_at, message_id)
			VALUES ($1, $2, $3, $4, `+r+`) ON CONFLICT (assigning_authority, mrn)
			DO UPDATE SET patient = EXCLUDED.patient, updated_at = EXCLUDED.updated_at, message_id = EXCLUDED.message_id`, args...)
	}
	for _, bk := range w.Bookings {
		r, args := ref(5, []any{bk.Site, bk.AppointmentID, bk.CaseID, bk.UpdatedAt})
		batch.Queue(`INSERT INTO inbound_bookings (site, appointment_id, case_id, updated_at, message_id)
			VALUES ($1, $2, $3, $4, `+r+`) ON CONFLICT (site, appointment_id)
			DO UPDATE SET case_id = EXCLUDED.case_id, updated_at = EXCLUDED.updated_at, message_id = EXCLUDED.message_id`, args...)
	}
	br := b.pool.SendBatch(ctx, &batch)
	var got int64
	err = br.QueryRow().Scan(&got)
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, wrap("record inbound", err)
	}
	return got, nil
}

// ListInboundMessages returns journal rows newest first, without content.
func (b *Backend) ListInboundMessages(ctx context.Context, f store.InboundFilter) ([]store.InboundMessage, error) {
	var (
		where []string
		args  []any
	)
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if f.Sender != "" {
		where = append(where, "sender = "+arg(f.Sender))
	}
	if f.MessageType != "" {
		where = append(where, "message_type = "+arg(f.MessageType))
	}
	if f.AckCode != "" {
		where = append(where, "ack_code = "+arg(f.AckCode))
	}
	if f.CaseID != uuid.Nil {
		where = append(where, "message_id IN (SELECT message_id FROM inbound_message_cases WHERE case_id = "+arg(f.CaseID)+")")
	}
	if !f.From.IsZero() {
		where = append(where, "received_at >= "+arg(f.From))
	}
	if !f.To.IsZero() {
		where = append(where, "received_at < "+arg(f.To))
	}
	if f.BeforeID > 0 {
		where = append(where, "message_id < "+arg(f.BeforeID))
	}
	q := `SELECT ` + inboundCols + ` FROM inbound_messages`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY message_id DESC LIMIT " + arg(max(f.Limit, 1))
	rows, err := b.pool.Query(ctx, q, args...)
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
	var doc []byte
	err := b.pool.QueryRow(ctx, `SELECT patient, updated_at, message_id FROM inbound_patients
		WHERE assigning_authority = $1 AND mrn = $2`, authority, mrn).Scan(&doc, &p.UpdatedAt, &p.MessageID)
	if err != nil {
		return nil, wrap("inbound patient", err)
	}
	if err := json.Unmarshal(doc, &p); err != nil {
		return nil, fmt.Errorf("postgres: inbound patient does not decode: %w", err)
	}
	p.AssigningAuthority, p.MRN, p.UpdatedAt = authority, mrn, p.UpdatedAt.UTC()
	return &p, nil
}

// InboundBooking returns the case holding an appointment.
func (b *Backend) InboundBooking(ctx context.Context, site, appointmentID string) (*store.InboundBooking, error) {
	bk := store.InboundBooking{Site: site, AppointmentID: appointmentID}
	var at time.Time
	err := b.pool.QueryRow(ctx, `SELECT case_id, updated_at, message_id FROM inbound_bookings
		WHERE site = $1 AND appointment_id = $2`, site, appointmentID).Scan(&bk.CaseID, &at, &bk.MessageID)
	if err != nil {
		return nil, wrap("inbound booking", err)
	}
	bk.UpdatedAt = at.UTC()
	return &bk, nil
}

// CasesByMRN returns the cases of the sites whose current details or
// identity reconciliations carry the MRN.
func (b *Backend) CasesByMRN(ctx context.Context, sites []string, mrn string) ([]uuid.UUID, error) {
	return b.caseIDs(ctx, "cases by MRN", `SELECT c.case_id FROM case_details d
		JOIN cases c ON c.case_id = d.case_id AND c.details_version = d.version
		WHERE d.details -> 'patient' ->> 'mrn' = $1 AND c.site = ANY($2)
		UNION
		SELECT c.case_id FROM identity_reconciliations r JOIN cases c ON c.case_id = r.case_id
		WHERE r.mrn = $1 AND c.site = ANY($2)
		ORDER BY 1`, mrn, sites)
}

// CasesByEncounter returns the cases of the sites whose current details
// carry the encounter id.
func (b *Backend) CasesByEncounter(ctx context.Context, sites []string, encounterID string) ([]uuid.UUID, error) {
	return b.caseIDs(ctx, "cases by encounter", `SELECT c.case_id FROM case_details d
		JOIN cases c ON c.case_id = d.case_id AND c.details_version = d.version
		WHERE d.details -> 'procedure' ->> 'encounter_id' = $1 AND c.site = ANY($2)
		ORDER BY 1`, encounterID, sites)
}

func (b *Backend) caseIDs(ctx context.Context, op, q string, args ...any) ([]uuid.UUID, error) {
	rows, err := b.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, wrap(op, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return nil, wrap(op, err)
	}
	return ids, nil
}
