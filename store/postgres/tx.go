package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"perfusion/charting"
	"perfusion/store"
)

// Retry policy of ReadWrite. Serialization failures and deadlocks are
// transient: the database rolled one transaction back so another could
// proceed, and running it again usually succeeds at once. A few attempts
// with short, jittered, growing pauses (so colliding writers spread out)
// keep the added latency in the tens of milliseconds; anything that still
// fails after that is reported rather than hidden behind a long stall of a
// clinical write.
const (
	maxAttempts  = 5
	retryBase    = 5 * time.Millisecond
	retryBackoff = 100 * time.Millisecond // cap of one pause
)

// Reconnect policy of ReadWrite: a transaction that failed because its
// connection was dead or its server not writable, before its COMMIT was
// sent, runs again on another connection — up to twice, after 50 and
// 250 ms. That rescues a write that met a connection the pool still held
// to a primary that died (the next connection, with
// target_session_attrs=read-write, finds the new primary). A longer
// outage is not waited out here: the request fails with Unavailable and
// the client, which resends anyway, waits instead of a transaction
// holding other clients' batches.
var reconnectPauses = []time.Duration{50 * time.Millisecond, 250 * time.Millisecond}

// ReadWrite runs fn in one READ COMMITTED transaction and commits it,
// retrying the whole transaction (fn included) up to maxAttempts times on a
// serialization failure (40001) or deadlock (40P01), and on a new
// connection (reconnectPauses) when the database was unreachable or
// read-only before the COMMIT was sent. A COMMIT whose answer was lost is
// never retried and never reported as success (errCommitUnknown, which
// store.IsUnavailable recognises).
//
// READ COMMITTED is enough because writes are serialised per case by
// LockCase's SELECT … FOR UPDATE on the case row: every write of a case
// takes that lock first, and under READ COMMITTED each later statement sees
// everything committed by the previous holder of the lock. Stricter levels
// would add serialization failures (REPEATABLE READ fails a FOR UPDATE on a
// row changed since the snapshot) without protecting anything more.
// Transactions that lock several cases (group commit of samples) take the
// locks in a fixed order, so deadlocks are rare; when one does happen the
// retry resolves it.
func (b *Backend) ReadWrite(ctx context.Context, fn func(ctx context.Context, tx store.Tx) error) error {
	reconnects := 0
	for attempt := 1; ; attempt++ {
		err := b.readWriteOnce(ctx, fn)
		var pause time.Duration
		switch {
		case err == nil:
			return nil
		case retryable(err) && attempt < maxAttempts:
			pause = min(retryBase<<(attempt-1), retryBackoff)
			pause = pause/2 + rand.N(pause/2+1) // jitter: half fixed, half random
		case reconnectable(err) && reconnects < len(reconnectPauses) && ctx.Err() == nil:
			pause = reconnectPauses[reconnects]
			reconnects++
		default:
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(pause):
		}
	}
}

func (b *Backend) readWriteOnce(ctx context.Context, fn func(ctx context.Context, tx store.Tx) error) error {
	tx, err := b.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return fmt.Errorf("postgres: begin transaction: %w", safeErr(err))
	}
	defer func() {
		// A no-op after Commit. On failure it returns the connection to a
		// clean state; an error here means the connection is closed and
		// will not be reused, so there is nothing more to do.
		_ = tx.Rollback(context.WithoutCancel(ctx))
	}()
	t := &pgTx{tx: tx}
	if err := fn(ctx, t); err != nil {
		return err
	}
	if err := t.flush(ctx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		err = safeErr(err)
		if store.IsUnavailable(err) {
			return fmt.Errorf("postgres: commit: %w (%w)", errCommitUnknown, err)
		}
		return fmt.Errorf("postgres: commit: %w", err)
	}
	return nil
}

// pgTx implements store.Tx on one pgx transaction.
//
// Inserts use INSERT … ON CONFLICT DO NOTHING and report ErrDuplicate when
// no row was inserted, instead of letting a unique violation abort the
// transaction: the caller may decide the duplicate is fine (an idempotent
// resend) and go on writing in the same transaction. Without a conflict
// target DO NOTHING covers every unique index, including the one that lets
// an entry be superseded only once.
//
// The bulk writes of a group commit (InsertSampleBatches, AppendLinks,
// SetSourceWatermarks, UpdateCaseStates) are not sent when called but
// queued, and the queue goes to the server as one pipelined exchange before
// the transaction's next statement or its commit: four statements for one
// round trip. Their errors surface there, as store.Tx allows.
type pgTx struct {
	tx      pgx.Tx
	pending pgx.Batch
}

// flush sends the queued bulk writes and reports the first error among
// them.
func (t *pgTx) flush(ctx context.Context) error {
	if t.pending.Len() == 0 {
		return nil
	}
	b := t.pending
	t.pending = pgx.Batch{}
	if err := t.tx.SendBatch(ctx, &b).Close(); err != nil {
		return wrap("bulk write", err)
	}
	return nil
}

// exec, query and queryRow run a statement after the queued writes, so
// statements reach the server in the order they were issued.
func (t *pgTx) exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if err := t.flush(ctx); err != nil {
		return pgconn.CommandTag{}, err
	}
	return t.tx.Exec(ctx, sql, args...)
}

func (t *pgTx) query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if err := t.flush(ctx); err != nil {
		return nil, err
	}
	return t.tx.Query(ctx, sql, args...)
}

func (t *pgTx) queryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if err := t.flush(ctx); err != nil {
		return errRow{err}
	}
	return t.tx.QueryRow(ctx, sql, args...)
}

// errRow is a row whose Scan reports an error that came before the query.
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

const caseColumns = `case_id, kind, site, room, scheduled_start, created_at, created_by,
	status, started_at, closed_at, closed_by, details_version, head_seq, head_hash`

// InsertCase stores a new case's header and state.
func (t *pgTx) InsertCase(ctx context.Context, c *charting.Case) error {
	tag, err := t.exec(ctx, `INSERT INTO cases (`+caseColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
		ON CONFLICT DO NOTHING`,
		c.ID, string(c.Kind), c.Site, c.Room, c.ScheduledStart, c.CreatedAt, c.CreatedBy,
		string(c.Status), nullTime(c.StartedAt), nullTime(c.ClosedAt), c.ClosedBy, c.DetailsVersion, c.Head.Seq, c.Head.Hash[:])
	return inserted("insert case", tag.RowsAffected(), err)
}

// LockCase reads a case's header and state with SELECT … FOR UPDATE, which
// holds the row lock until the transaction ends and so serialises all
// writes to the case.
func (t *pgTx) LockCase(ctx context.Context, id uuid.UUID) (*charting.Case, error) {
	c, err := scanCase(t.queryRow(ctx, `SELECT `+caseColumns+` FROM cases WHERE case_id = $1 FOR UPDATE`, id))
	if err != nil {
		return nil, wrap("lock case", err)
	}
	return c, nil
}

// UpdateCaseState writes the mutable state of a locked case. The database
// refuses any change to the header and any step backwards of the state.
func (t *pgTx) UpdateCaseState(ctx context.Context, c *charting.Case) error {
	tag, err := t.exec(ctx, `UPDATE cases SET status = $2, started_at = $3, closed_at = $4, closed_by = $5,
		details_version = $6, head_seq = $7, head_hash = $8 WHERE case_id = $1`,
		c.ID, string(c.Status), nullTime(c.StartedAt), nullTime(c.ClosedAt), c.ClosedBy, c.DetailsVersion, c.Head.Seq, c.Head.Hash[:])
	if err != nil {
		return wrap("update case state", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: update case state: %w", charting.ErrNotFound)
	}
	return nil
}

// InsertDetails stores one details version.
func (t *pgTx) InsertDetails(ctx context.Context, caseID uuid.UUID, d charting.DetailsVersion) error {
	doc, err := json.Marshal(d.Details)
	if err != nil {
		return fmt.Errorf("postgres: insert details: encode: %w", err)
	}
	tag, err := t.exec(ctx, `INSERT INTO case_details (case_id, version, details, reason, actor, recorded_at)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`,
		caseID, d.Version, doc, d.Reason, d.Actor, d.RecordedAt)
	return inserted("insert details", tag.RowsAffected(), err)
}

const entryColumns = `entry_id, case_id, kind, occurred_at, recorded_at, late, author, supersedes, reason, void, detail`

// GetEntry reads one entry of a case.
func (t *pgTx) GetEntry(ctx context.Context, caseID, entryID uuid.UUID) (*charting.Entry, error) {
	e, err := scanEntry(t.queryRow(ctx, `SELECT `+entryColumns+` FROM entries WHERE case_id = $1 AND entry_id = $2`, caseID, entryID))
	if err != nil {
		return nil, wrap("get entry", err)
	}
	return e, nil
}

// SupersededBy finds the entry that supersedes entryID, using the unique
// index that allows one such entry at most.
func (t *pgTx) SupersededBy(ctx context.Context, caseID, entryID uuid.UUID) (uuid.UUID, error) {
	var by uuid.UUID
	err := t.queryRow(ctx, `SELECT entry_id FROM entries WHERE case_id = $1 AND supersedes = $2`, caseID, entryID).Scan(&by)
	if errors.Is(err, pgx.ErrNoRows) {
		return uuid.Nil, nil
	}
	if err != nil {
		return uuid.Nil, wrap("superseded by", err)
	}
	return by, nil
}

// InsertEntry stores an entry. A correction naming an entry that does not
// exist in the case is refused by a foreign key (charting.ErrNotFound).
func (t *pgTx) InsertEntry(ctx context.Context, e *charting.Entry) error {
	detail, err := json.Marshal(e.Detail)
	if err != nil {
		return fmt.Errorf("postgres: insert entry: encode: %w", err)
	}
	tag, err := t.exec(ctx, `INSERT INTO entries (case_id, entry_id, kind, occurred_at, recorded_at, late, author, supersedes, reason, void, detail)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING`,
		e.CaseID, e.ID, string(e.Kind), e.OccurredAt, e.RecordedAt, e.Late, e.Author, nullUUID(e.Supersedes), e.Reason, e.Void, detail)
	return inserted("insert entry", tag.RowsAffected(), err)
}

// GetSampleBlock reads the stored block of one batch.
func (t *pgTx) GetSampleBlock(ctx context.Context, caseID uuid.UUID, sourceID string, seq int64) ([]byte, error) {
	var block []byte
	err := t.queryRow(ctx, `SELECT block FROM sample_batches WHERE case_id = $1 AND source_id = $2 AND seq = $3`,
		caseID, sourceID, seq).Scan(&block)
	if errors.Is(err, pgx.ErrNoRows) {
		k := store.SampleKey{CaseID: caseID, SourceID: sourceID, Seq: seq}
		sealed, err := store.SealedBlocks(ctx, t, []store.SampleKey{k})
		if err != nil {
			return nil, err
		}
		if b, ok := sealed[k]; ok {
			return b, nil
		}
		return nil, wrap("get sample block", pgx.ErrNoRows)
	}
	if err != nil {
		return nil, wrap("get sample block", err)
	}
	return block, nil
}

// InsertSampleBatch stores one batch.
func (t *pgTx) InsertSampleBatch(ctx context.Context, b *store.SampleBatchRow) error {
	tag, err := t.exec(ctx, `INSERT INTO sample_batches (case_id, source_id, seq, recorded_at, actor, min_time_ms, max_time_ms, sample_count, block)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING`,
		b.CaseID, b.SourceID, b.Seq, b.RecordedAt, b.Actor, b.MinTimeMs, b.MaxTimeMs, b.SampleCount, b.Block)
	return inserted("insert sample batch", tag.RowsAffected(), err)
}

// SourceWatermark reads a source's watermark, 0 when none is recorded.
func (t *pgTx) SourceWatermark(ctx context.Context, caseID uuid.UUID, sourceID string) (int64, error) {
	var w int64
	err := t.queryRow(ctx, `SELECT watermark FROM sample_sources WHERE case_id = $1 AND source_id = $2`, caseID, sourceID).Scan(&w)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, wrap("source watermark", err)
	}
	return w, nil
}

// SetSourceWatermark records a watermark, creating the source's row on
// first use.
func (t *pgTx) SetSourceWatermark(ctx context.Context, caseID uuid.UUID, sourceID string, w int64) error {
	_, err := t.exec(ctx, `INSERT INTO sample_sources (case_id, source_id, watermark) VALUES ($1, $2, $3)
		ON CONFLICT (case_id, source_id) DO UPDATE SET watermark = EXCLUDED.watermark`, caseID, sourceID, w)
	return wrap("set source watermark", err)
}

// InsertSignature stores one signature.
func (t *pgTx) InsertSignature(ctx context.Context, s *charting.Signature) error {
	tag, err := t.exec(ctx, `INSERT INTO signatures (case_id, number, signer, display_name, meaning, signed_at, covers_seq, covers_hash, staff_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING`,
		s.CaseID, s.Number, s.Signer, s.DisplayName, string(s.Meaning), s.SignedAt, s.CoversSeq, s.CoversHash[:], s.StaffID)
	return inserted("insert signature", tag.RowsAffected(), err)
}

// AppendLink stores one ledger link.
func (t *pgTx) AppendLink(ctx context.Context, l *charting.Link) error {
	tag, err := t.exec(ctx, `INSERT INTO ledger (case_id, seq, kind, ref, actor, reason, recorded_at, prev_hash, hash)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING`,
		l.CaseID, l.Seq, string(l.Kind), l.Ref, l.Actor, l.Reason, l.RecordedAt, l.PrevHash[:], l.Hash[:])
	return inserted("append ledger link", tag.RowsAffected(), err)
}

// inserted maps the outcome of an INSERT … ON CONFLICT DO NOTHING.
func inserted(op string, rows int64, err error) error {
	if err != nil {
		return wrap(op, err)
	}
	if rows == 0 {
		return fmt.Errorf("postgres: %s: %w", op, store.ErrDuplicate)
	}
	return nil
}

// nullTime stores the zero time (not yet started or closed) as NULL.
func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// nullUUID stores uuid.Nil (an entry that supersedes nothing) as NULL.
func nullUUID(id uuid.UUID) any {
	if id == uuid.Nil {
		return nil
	}
	return id
}

// Signatures reads the case's signatures in the transaction.
func (t *pgTx) Signatures(ctx context.Context, caseID uuid.UUID) ([]charting.Signature, error) {
	if err := t.flush(ctx); err != nil {
		return nil, err
	}
	return reader{q: t.tx}.Signatures(ctx, caseID)
}
