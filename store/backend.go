// Package store keeps the perfusion record. A Backend (store/postgres, the
// system of record, or store/sqlite, the embedded default) offers plain
// storage primitives inside transactions; Store builds the record's rules on
// them once — lifecycle, idempotency, the ledger, verification — so every
// backend behaves the same and one conformance suite (store/storetest)
// proves it.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
)

// ErrDuplicate is returned by Tx inserts when the row's key already exists.
// The Store turns it into an idempotent resend or a conflict.
var ErrDuplicate = errors.New("store: duplicate key")

// Backend is one database holding perfusion records.
type Backend interface {
	Reader
	// ReadWrite runs fn in one transaction and commits it. On a
	// serialization failure or deadlock the backend may roll back and call fn
	// again, so fn must keep no state across calls. An error from fn rolls
	// the transaction back and is returned unchanged.
	ReadWrite(ctx context.Context, fn func(ctx context.Context, tx Tx) error) error
	// Snapshot runs fn with a Reader whose every read sees one consistent,
	// committed state of the database (a read-only transaction), so several
	// reads can be combined without seeing a write half-way. fn must not keep
	// the Reader after it returns. The Reader is not safe for concurrent
	// use, and ScanSampleBatches' callback must not read through it (one
	// transaction is one connection, busy while the scan streams). An error
	// from fn is returned unchanged.
	Snapshot(ctx context.Context, fn func(ctx context.Context, r Reader) error) error
	// ReadSampleBlocks returns the committed block of each of keys that
	// exists, outside any transaction (WatchCase reads batches by their
	// ledger links); keys not stored are absent from the map.
	ReadSampleBlocks(ctx context.Context, keys []SampleKey) (map[SampleKey][]byte, error)
	// ReadEntries returns the committed entries of a case among ids that
	// exist, by id, outside any transaction (WatchCase reads entries by
	// their ledger links, so a new entry costs a watcher one entry read).
	ReadEntries(ctx context.Context, caseID uuid.UUID, ids []uuid.UUID) (map[uuid.UUID]*charting.Entry, error)
	// ChunkCandidates returns up to limit sources whose watermark is at
	// least runBatches past their last run, or is past it at all in a
	// closed or signed case: open cases first (their trends are being
	// watched), newest first (after an upgrade, the history comes last).
	ChunkCandidates(ctx context.Context, runBatches, limit int) ([]ChunkCandidate, error)
	// SealCandidates returns up to limit closed or signed cases, closed
	// before closedBefore, that hold sample batches and are not sealed
	// (sealed.go), oldest close first.
	SealCandidates(ctx context.Context, closedBefore time.Time, limit int) ([]uuid.UUID, error)
	// Ready reports whether the database is reachable and migrated.
	Ready(ctx context.Context) error
	// Name is "postgres" or "sqlite".
	Name() string
	// Close releases the backend's connections.
	Close() error
}

// Tx is the set of writes (and reads needed to decide them) inside one
// transaction. Every table it inserts into is append-only in the database
// itself; only the case state row and the source watermarks change.
type Tx interface {
	// InsertCase stores a new case: its header, state and head. ErrDuplicate
	// when the id exists.
	InsertCase(ctx context.Context, c *charting.Case) error
	// LockCase reads a case's header and state (not details or signatures)
	// and locks it until the transaction ends, serialising writes per case.
	// charting.ErrNotFound when it does not exist.
	LockCase(ctx context.Context, id uuid.UUID) (*charting.Case, error)
	// UpdateCaseState writes status, started_at, closed_at, closed_by,
	// details_version and head of a locked case.
	UpdateCaseState(ctx context.Context, c *charting.Case) error
	// InsertDetails stores a details version. ErrDuplicate on a reused version.
	InsertDetails(ctx context.Context, caseID uuid.UUID, d charting.DetailsVersion) error
	// GetEntry reads one entry; charting.ErrNotFound when absent.
	GetEntry(ctx context.Context, caseID, entryID uuid.UUID) (*charting.Entry, error)
	// SupersededBy returns the id of the entry that supersedes entryID, or
	// uuid.Nil.
	SupersededBy(ctx context.Context, caseID, entryID uuid.UUID) (uuid.UUID, error)
	// InsertEntry stores an entry. ErrDuplicate when its id exists in the
	// case, or when another entry already supersedes the same entry.
	InsertEntry(ctx context.Context, e *charting.Entry) error
	// GetSampleBlock returns the stored block of a batch; charting.ErrNotFound
	// when absent.
	GetSampleBlock(ctx context.Context, caseID uuid.UUID, sourceID string, seq int64) ([]byte, error)
	// InsertSampleBatch stores a batch. ErrDuplicate when (case, source,
	// sequence) exists.
	InsertSampleBatch(ctx context.Context, b *SampleBatchRow) error
	// SourceWatermark returns the highest sequence w of the source such that
	// every batch 1..w is stored; 0 when none is.
	SourceWatermark(ctx context.Context, caseID uuid.UUID, sourceID string) (int64, error)
	// SetSourceWatermark records a new watermark.
	SetSourceWatermark(ctx context.Context, caseID uuid.UUID, sourceID string, w int64) error
	// InsertSignature stores a signature. ErrDuplicate on a reused number.
	InsertSignature(ctx context.Context, s *charting.Signature) error
	// Signatures returns a case's signatures by number, as the
	// transaction sees them (so a signer can be checked under the lock).
	Signatures(ctx context.Context, caseID uuid.UUID) ([]charting.Signature, error)
	// InsertIdentityReconciliation stores an identity reconciliation.
	// ErrDuplicate when (case, seq) exists.
	InsertIdentityReconciliation(ctx context.Context, r *charting.IdentityReconciliation) error
	// AppendLink stores a ledger link. ErrDuplicate when the sequence exists.
	AppendLink(ctx context.Context, l *charting.Link) error
	// ChunkCoverage returns the last sequence of the source's last run, 0
	// when it has none.
	ChunkCoverage(ctx context.Context, key SourceKey) (int64, error)
	// InsertSampleChunks stores the rows of one run (chunks.go).
	// ErrDuplicate when a row's key exists.
	InsertSampleChunks(ctx context.Context, rows []*SampleChunkRow) error
	// SealCase stores the sealed form of a locked, closed or signed case
	// (its marker row and its segments' rows) and removes the sample
	// batches, their ledger links and the trend chunks it replaces,
	// refusing unless their numbers are the header's (sealed.go).
	// ErrDuplicate when the case is sealed already.
	SealCase(ctx context.Context, hdr *SealedCaseRow, parts []*SealedPart) error

	// Bulk primitives. A group commit of sample batches from many streams
	// must cost a number of database round trips that does not grow with
	// the number of batches, so each of these does for a set of rows what
	// the single-row methods above do for one, in one statement (or one
	// pipelined exchange) where the database allows it. Empty input is a
	// no-op.
	//
	// The four bulk writes (InsertSampleBatches, AppendLinks,
	// SetSourceWatermarks, UpdateCaseStates) may be queued and sent with
	// the transaction's next statement or its commit, so that they cost
	// one round trip together. An error they cause, ErrDuplicate included,
	// may therefore be returned by a later call of the transaction or by
	// ReadWrite itself; either way the transaction is rolled back.

	// LockCases is LockCase for several cases: it locks the existing ones
	// in ascending id order (the byte order of the uuid, which is also
	// PostgreSQL's uuid order), so that two transactions locking
	// overlapping sets wait for each other instead of deadlocking, and
	// returns them by id. Ids that do not exist are absent from the map.
	LockCases(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID]*charting.Case, error)
	// SampleBlocks returns the stored block of each of keys that exists;
	// keys not stored are absent from the map.
	SampleBlocks(ctx context.Context, keys []SampleKey) (map[SampleKey][]byte, error)
	// SourceStates returns, for each source, its watermark and the lowest
	// stored sequence above the watermark (a batch stored out of order),
	// the zero SourceState for a source with nothing stored.
	SourceStates(ctx context.Context, keys []SourceKey) (map[SourceKey]SourceState, error)
	// StoredSeqs returns the stored sequences of a source above after, in
	// ascending order, at most limit of them.
	StoredSeqs(ctx context.Context, key SourceKey, after int64, limit int) ([]int64, error)
	// InsertSampleBatches stores batches. ErrDuplicate when any of them
	// exists, and the caller must then abandon the transaction: the others
	// may or may not have been stored in it.
	InsertSampleBatches(ctx context.Context, rows []*SampleBatchRow) error
	// AppendLinks stores ledger links, with InsertSampleBatches' contract
	// for ErrDuplicate.
	AppendLinks(ctx context.Context, links []charting.Link) error
	// SetSourceWatermarks records new watermarks, at most one per source.
	SetSourceWatermarks(ctx context.Context, marks map[SourceKey]int64) error
	// UpdateCaseStates is UpdateCaseState for several locked cases, at
	// most once each. charting.ErrNotFound when one does not exist.
	UpdateCaseStates(ctx context.Context, cases []*charting.Case) error
}

// SampleKey identifies one sample batch.
type SampleKey struct {
	CaseID   uuid.UUID
	SourceID string
	Seq      int64
}

// SourceKey identifies one device source of a case.
type SourceKey struct {
	CaseID   uuid.UUID
	SourceID string
}

// SourceState is what advancing a source's watermark needs to know.
type SourceState struct {
	// Watermark is the highest w such that every batch 1..w is stored.
	Watermark int64
	// NextStored is the lowest stored sequence above Watermark, 0 when
	// there is none: batches arrive in order, so almost always 0, and then
	// nothing above the watermark needs to be looked up.
	NextStored int64
}

// Reader reads committed data. A sealed case's batches and links are
// read as they were before sealing (sealed.go): the backends rebuild them
// with SealedBatches, SealedLinks and SealedBlocks.
type Reader interface {
	SealedReader
	// GetCase reads a case with its current details and signatures.
	GetCase(ctx context.Context, id uuid.UUID) (*charting.Case, error)
	// ListCases returns cases matching f, ordered by scheduled start
	// descending then id descending, at most f.Limit of them, each with its
	// current details and signatures.
	ListCases(ctx context.Context, f CaseFilter) ([]charting.Case, error)
	// DetailsVersions returns every details version of a case, oldest first.
	DetailsVersions(ctx context.Context, caseID uuid.UUID) ([]charting.DetailsVersion, error)
	// Entries returns every entry of a case (history included), in the
	// order they were recorded.
	Entries(ctx context.Context, caseID uuid.UUID) ([]charting.Entry, error)
	// Signatures returns a case's signatures by number.
	Signatures(ctx context.Context, caseID uuid.UUID) ([]charting.Signature, error)
	// ScanSampleBatches calls fn for each stored batch of the case that
	// matches f, ordered by first sample time, then source and sequence.
	// It stops at fn's first error and returns it.
	ScanSampleBatches(ctx context.Context, caseID uuid.UUID, f SampleFilter, fn func(*SampleBatchRow) error) error
	// ScanSampleChunks calls fn for each chunk row of the case that matches
	// f, ordered by source, run and channel (a run's marker first). It
	// stops at fn's first error and returns it. All rows come from one
	// committed state: a run is seen whole or not at all.
	ScanSampleChunks(ctx context.Context, caseID uuid.UUID, f ChunkFilter, fn func(*SampleChunkRow) error) error
	// Links returns ledger links with sequence > after, in order, at most
	// limit of them (limit <= 0: all).
	Links(ctx context.Context, caseID uuid.UUID, after int64, limit int) ([]charting.Link, error)
	// SourceWatermarks returns the watermark of every source of a case.
	SourceWatermarks(ctx context.Context, caseID uuid.UUID) (map[string]int64, error)
	// IdentityReconciliations returns a case's identity reconciliations
	// in ledger order.
	IdentityReconciliations(ctx context.Context, caseID uuid.UUID) ([]charting.IdentityReconciliation, error)
}

// SampleBatchRow is a stored sample batch: the batch's identity, its
// summary for range queries, and its samples as a samplecodec block.
type SampleBatchRow struct {
	CaseID      uuid.UUID
	SourceID    string
	Seq         int64
	RecordedAt  time.Time
	Actor       string
	MinTimeMs   int64
	MaxTimeMs   int64
	SampleCount int
	Block       []byte
}

// SampleFilter selects sample batches. Zero values select everything.
type SampleFilter struct {
	SourceID string
	// Batches whose time range overlaps [FromMs, ToMs) are returned;
	// ToMs == 0 means no upper bound.
	FromMs, ToMs int64
	// After skips each listed source's batches with sequence <= its value:
	// those a trend has read from chunk runs.
	After map[string]int64
	// WithoutBlocks leaves SampleBatchRow.Block empty: for summaries of the
	// batches that need no sample.
	WithoutBlocks bool
	// Implausible, when set, selects only the batches with a device time
	// outside their device window (charting.Case.DeviceWindow): min_time_ms
	// before BeginsMs, or max_time_ms more than AheadMs past the batch's
	// recorded_at in whole milliseconds (floor, as time.Time.UnixMilli).
	// Such batches are rare, so a bucketed query finds them first, cheaply,
	// to know which sources' chunk runs it cannot use as they are.
	Implausible *DeviceWindowFilter
}

// DeviceWindowFilter is the device window of a case's batches as a filter:
// [BeginsMs, recorded_at + AheadMs].
type DeviceWindowFilter struct {
	BeginsMs, AheadMs int64
}

// CaseFilter selects cases. Zero values match anything.
type CaseFilter struct {
	Status charting.Status
	Site   string
	Room   string
	From   time.Time // scheduled start >= From
	To     time.Time // scheduled start < To
	Limit  int
	// After continues a listing after the case with this scheduled start
	// and id (keyset pagination).
	After *CaseCursor
}

// CaseCursor is a position in a case listing.
type CaseCursor struct {
	ScheduledStart time.Time
	ID             uuid.UUID
}
