package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/store"
)

// maxBusyRetries bounds how often ReadWrite starts over after SQLITE_BUSY.
// Each attempt has already waited the busy timeout, so a lock held longer
// than a few of those is an operational problem to report, not to hide.
const maxBusyRetries = 3

// ReadWrite runs fn in one IMMEDIATE transaction on the writer connection
// and commits it. Writers in this process queue for that connection; the
// transaction is retried (fn called again) only when another process held
// the database lock past the busy timeout. An error from fn rolls back and
// is returned unchanged. fn must not call ReadWrite itself: it would wait
// for the connection it holds.
func (b *Backend) ReadWrite(ctx context.Context, fn func(ctx context.Context, tx store.Tx) error) error {
	for attempt := 0; ; attempt++ {
		retry, err := b.readWriteOnce(ctx, fn)
		if err == nil || !retry || !isBusy(err) || attempt >= maxBusyRetries {
			return err
		}
		// Jittered backoff so two processes do not collide again in step.
		wait := time.Duration(10<<attempt)*time.Millisecond + rand.N(10*time.Millisecond)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}

// readWriteOnce runs one attempt. retry is false when the outcome of the
// commit is unknown: a failed COMMIT may leave SQLite's transaction open, so
// it is reported rather than run again.
func (b *Backend) readWriteOnce(ctx context.Context, fn func(ctx context.Context, tx store.Tx) error) (retry bool, err error) {
	sqlTx, err := b.w.BeginTx(ctx, nil)
	if err != nil {
		return true, fmt.Errorf("sqlite: begin: %w", err)
	}
	// Rolls back on an error from fn and on a panic; after a commit it is
	// a no-op.
	defer sqlTx.Rollback()
	if err := fn(ctx, &tx{tx: sqlTx}); err != nil {
		return true, err
	}
	if err := sqlTx.Commit(); err != nil {
		return false, fmt.Errorf("sqlite: commit: %w", err)
	}
	return false, nil
}

// tx implements store.Tx on a write transaction.
type tx struct {
	tx *sql.Tx
}

var _ store.Tx = (*tx)(nil)

func (t *tx) exec(ctx context.Context, op, query string, args ...any) (sql.Result, error) {
	res, err := t.tx.ExecContext(ctx, query, args...)
	return res, wrap(op, err)
}

// InsertCase stores a new case.
func (t *tx) InsertCase(ctx context.Context, c *charting.Case) error {
	_, err := t.exec(ctx, "insert case", `INSERT INTO cases
		(case_id, kind, site, room, scheduled_start, created_at, created_by,
		 status, started_at, closed_at, closed_by, details_version, head_seq, head_hash)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		c.ID.String(), string(c.Kind), c.Site, c.Room, micros(c.ScheduledStart), micros(c.CreatedAt), c.CreatedBy,
		string(c.Status), micros(c.StartedAt), micros(c.ClosedAt), nullText(c.ClosedBy), c.DetailsVersion,
		c.Head.Seq, c.Head.Hash[:])
	return err
}

// LockCase reads a case's header and state. The IMMEDIATE transaction
// already holds the database's write lock, so the case cannot change
// under it until the transaction ends.
func (t *tx) LockCase(ctx context.Context, id uuid.UUID) (*charting.Case, error) {
	c, err := scanCase(t.tx.QueryRowContext(ctx, `SELECT `+caseColumns+` FROM cases WHERE case_id = ?`, id.String()))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("lock case")
	}
	if err != nil {
		return nil, wrap("lock case", err)
	}
	return c, nil
}

// UpdateCaseState writes the mutable state columns; the header columns are
// immutable and a trigger refuses any change to them.
func (t *tx) UpdateCaseState(ctx context.Context, c *charting.Case) error {
	res, err := t.exec(ctx, "update case state", `UPDATE cases SET
		status = ?, started_at = ?, closed_at = ?, closed_by = ?, details_version = ?, head_seq = ?, head_hash = ?
		WHERE case_id = ?`,
		string(c.Status), micros(c.StartedAt), micros(c.ClosedAt), nullText(c.ClosedBy), c.DetailsVersion,
		c.Head.Seq, c.Head.Hash[:], c.ID.String())
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return wrap("update case state", err)
	} else if n == 0 {
		return notFound("update case state")
	}
	return nil
}

// InsertDetails stores a details version.
func (t *tx) InsertDetails(ctx context.Context, caseID uuid.UUID, d charting.DetailsVersion) error {
	js, err := json.Marshal(d.Details)
	if err != nil {
		return fmt.Errorf("sqlite: insert details: encode: %w", err)
	}
	_, err = t.exec(ctx, "insert details", `INSERT INTO case_details
		(case_id, version, details, reason, actor, recorded_at) VALUES (?, ?, ?, ?, ?, ?)`,
		caseID.String(), d.Version, string(js), d.Reason, d.Actor, micros(d.RecordedAt))
	return err
}

// GetEntry reads one entry.
func (t *tx) GetEntry(ctx context.Context, caseID, entryID uuid.UUID) (*charting.Entry, error) {
	e, err := scanEntry(t.tx.QueryRowContext(ctx, `SELECT `+entryColumns+` FROM entries WHERE case_id = ? AND entry_id = ?`,
		caseID.String(), entryID.String()))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("get entry")
	}
	if err != nil {
		return nil, wrap("get entry", err)
	}
	return e, nil
}

// SupersededBy returns the entry superseding entryID, or uuid.Nil.
func (t *tx) SupersededBy(ctx context.Context, caseID, entryID uuid.UUID) (uuid.UUID, error) {
	var s sql.NullString
	err := t.tx.QueryRowContext(ctx, `SELECT entry_id FROM entries WHERE case_id = ? AND supersedes = ?`,
		caseID.String(), entryID.String()).Scan(&s)
	if errors.Is(err, sql.ErrNoRows) {
		return uuid.Nil, nil
	}
	if err != nil {
		return uuid.Nil, wrap("superseded by", err)
	}
	return parseUUID(s, "entry id")
}

// InsertEntry stores an entry.
func (t *tx) InsertEntry(ctx context.Context, e *charting.Entry) error {
	detail, err := encodeDetail(e.Detail)
	if err != nil {
		return err
	}
	_, err = t.exec(ctx, "insert entry", `INSERT INTO entries
		(case_id, entry_id, kind, occurred_at, recorded_at, late, author, supersedes, reason, void, detail)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		e.CaseID.String(), e.ID.String(), string(e.Kind), micros(e.OccurredAt), micros(e.RecordedAt), e.Late,
		e.Author, nullUUID(e.Supersedes), e.Reason, e.Void, detail)
	return err
}

// encodeDetail stores an entry detail as JSON, its times normalised to the
// record's precision so that what is read back hashes as what was written.
func encodeDetail(d charting.EntryDetail) (string, error) {
	if m := d.ArtifactMark; m != nil {
		mm := *m
		mm.Start, mm.End = charting.NormTime(mm.Start), charting.NormTime(mm.End)
		d.ArtifactMark = &mm
	}
	js, err := json.Marshal(d)
	if err != nil {
		return "", fmt.Errorf("sqlite: insert entry: encode detail: %w", err)
	}
	return string(js), nil
}

// GetSampleBlock returns a stored block.
func (t *tx) GetSampleBlock(ctx context.Context, caseID uuid.UUID, sourceID string, seq int64) ([]byte, error) {
	var block []byte
	err := t.tx.QueryRowContext(ctx, `SELECT block FROM sample_batches WHERE case_id = ? AND source_id = ? AND seq = ?`,
		caseID.String(), sourceID, seq).Scan(&block)
	if errors.Is(err, sql.ErrNoRows) {
		k := store.SampleKey{CaseID: caseID, SourceID: sourceID, Seq: seq}
		sealed, err := store.SealedBlocks(ctx, t, []store.SampleKey{k})
		if err != nil {
			return nil, err
		}
		if b, ok := sealed[k]; ok {
			return b, nil
		}
		return nil, notFound("get sample block")
	}
	if err != nil {
		return nil, wrap("get sample block", err)
	}
	return block, nil
}

// InsertSampleBatch stores a batch.
func (t *tx) InsertSampleBatch(ctx context.Context, r *store.SampleBatchRow) error {
	_, err := t.exec(ctx, "insert sample batch", `INSERT INTO sample_batches
		(case_id, source_id, seq, recorded_at, actor, min_time_ms, max_time_ms, sample_count, block)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.CaseID.String(), r.SourceID, r.Seq, micros(r.RecordedAt), r.Actor, r.MinTimeMs, r.MaxTimeMs, r.SampleCount, r.Block)
	return err
}

// SourceWatermark returns the source's watermark, 0 when it has none.
func (t *tx) SourceWatermark(ctx context.Context, caseID uuid.UUID, sourceID string) (int64, error) {
	var w int64
	err := t.tx.QueryRowContext(ctx, `SELECT watermark FROM sample_sources WHERE case_id = ? AND source_id = ?`,
		caseID.String(), sourceID).Scan(&w)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, wrap("source watermark", err)
	}
	return w, nil
}

// SetSourceWatermark records a new watermark.
func (t *tx) SetSourceWatermark(ctx context.Context, caseID uuid.UUID, sourceID string, w int64) error {
	_, err := t.exec(ctx, "set source watermark", `INSERT INTO sample_sources (case_id, source_id, watermark)
		VALUES (?, ?, ?)
		ON CONFLICT (case_id, source_id) DO UPDATE SET watermark = excluded.watermark`,
		caseID.String(), sourceID, w)
	return err
}

// InsertSignature stores a signature.
func (t *tx) InsertSignature(ctx context.Context, s *charting.Signature) error {
	_, err := t.exec(ctx, "insert signature", `INSERT INTO signatures
		(case_id, number, signer, display_name, meaning, signed_at, covers_seq, covers_hash, staff_id)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		s.CaseID.String(), s.Number, s.Signer, s.DisplayName, string(s.Meaning), micros(s.SignedAt), s.CoversSeq, s.CoversHash[:], s.StaffID)
	return err
}

// AppendLink stores a ledger link.
func (t *tx) AppendLink(ctx context.Context, l *charting.Link) error {
	_, err := t.exec(ctx, "append link", `INSERT INTO ledger
		(case_id, seq, kind, ref, actor, reason, recorded_at, prev_hash, hash)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		l.CaseID.String(), l.Seq, string(l.Kind), l.Ref, l.Actor, l.Reason, micros(l.RecordedAt), l.PrevHash[:], l.Hash[:])
	return err
}

// Signatures reads the case's signatures in the transaction.
func (t *tx) Signatures(ctx context.Context, caseID uuid.UUID) ([]charting.Signature, error) {
	return reader{q: t.tx}.Signatures(ctx, caseID)
}
