package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
)

// Config sets the record's rules.
type Config struct {
	// Catalogue of channels; nil means charting.DefaultCatalogue().
	Catalogue *charting.Catalogue
	// LateAfter is how long after it occurred an entry is marked late;
	// 0 means charting.DefaultLateAfter.
	LateAfter time.Duration
	// Now is the server clock; nil means time.Now. Tests set it.
	Now func() time.Time
	// Metrics holds the quality-metric thresholds; nil means
	// charting.DefaultMetricsConfig().
	Metrics *charting.MetricsConfig
	// Logger receives warnings about derived data (metrics); nil means
	// slog.Default().
	Logger *slog.Logger
	// Outbox, when set, queues exports of every signature and addendum in
	// the transaction that stores it (outbox.go); nil queues nothing.
	Outbox *OutboxConfig
	// Anchor, when set, receives a signed checkpoint of a case's ledger head
	// after every write to a closed or signed case (its close, each
	// signature and addendum), kept outside the database (anchor.go);
	// VerifyRecord with AgainstCheckpoints checks the chain against it.
	Anchor Anchor
	// Observer, when set, is told of every compactor pass (the operators'
	// metrics).
	Observer Observer
}

// Observer is told what the store's background work does. Its methods
// must not block.
type Observer interface {
	// Compacted reports one compactor pass: the runs it built, how long
	// it took, and its error (nil when it succeeded).
	Compacted(runs int, took time.Duration, err error)
}

// Store is the perfusion record on one Backend. Every write runs in one
// backend transaction that locks the case, checks the lifecycle, stores the
// datum and appends its ledger link, so a write is either wholly recorded
// and covered by the chain or not at all.
type Store struct {
	b         Backend
	cat       *charting.Catalogue
	lateAfter time.Duration
	now       func() time.Time
	// metricsCfg and log serve the derived quality metrics (metrics.go).
	metricsCfg *charting.MetricsConfig
	log        *slog.Logger
	outbox     *OutboxConfig
	anchor     Anchor
	observer   Observer
	// commits wakes this process's watchers after a write commits
	// (watch.go).
	commits *CommitFeed
	// queryParts is how many concurrent parts a bucketed sample query is
	// split into (query.go); 0 means one per processor. Benchmarks set it.
	queryParts int
	// ignoreRuns makes bucketed queries read batches only (benchmarks).
	ignoreRuns bool
	// legacyChunks makes the compactor write chunk rows in their earlier
	// form (benchmarks compare the two).
	legacyChunks bool
	// rollupsUsed counts the sealed frames whose rollups trends added
	// (sealedquery.go; tests check they are used).
	rollupsUsed atomic.Int64
}

// New returns a Store over b.
func New(b Backend, cfg Config) *Store {
	s := &Store{b: b, cat: cfg.Catalogue, lateAfter: cfg.LateAfter, now: cfg.Now, metricsCfg: cfg.Metrics, log: cfg.Logger, outbox: cfg.Outbox, anchor: cfg.Anchor, observer: cfg.Observer, commits: NewCommitFeed()}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.cat == nil {
		s.cat = charting.DefaultCatalogue()
	}
	if s.lateAfter == 0 {
		s.lateAfter = charting.DefaultLateAfter
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// Backend returns the underlying backend.
func (s *Store) Backend() Backend { return s.b }

// Catalogue returns the channel catalogue in force.
func (s *Store) Catalogue() *charting.Catalogue { return s.cat }

func (s *Store) clock() time.Time { return charting.NormTime(s.now()) }

// appendLink chains a new link after the locked case's head and moves the
// head. The caller writes the case state afterwards.
func appendLink(ctx context.Context, tx Tx, c *charting.Case, kind charting.LinkKind, ref, actor, reason string, at time.Time, digest charting.Hash) error {
	l := charting.NextLink(c.ID, c.Head, kind, ref, actor, reason, at, digest)
	if err := tx.AppendLink(ctx, &l); err != nil {
		return fmt.Errorf("append ledger link: %w", err)
	}
	c.Head = charting.Head{Seq: l.Seq, Hash: l.Hash}
	return nil
}

// markStarted moves a planned case to in progress on its first datum.
func markStarted(c *charting.Case, at time.Time) {
	if c.Status == charting.StatusPlanned {
		c.Status = charting.StatusInProgress
		c.StartedAt = at
	}
}

// NewCase is a request to create a case.
type NewCase struct {
	ID             uuid.UUID // uuid.Nil: the store assigns one
	Kind           charting.Kind
	Site, Room     string
	ScheduledStart time.Time
	Details        charting.Details
}

func (n *NewCase) validate(now time.Time) error {
	var v charting.Violations
	if n.Kind != charting.KindCPB && n.Kind != charting.KindECMO {
		v.Add("kind", "required: CPB or ECMO")
	}
	for _, f := range []struct{ name, value string }{{"site", n.Site}, {"room", n.Room}} {
		if f.value == "" {
			v.Add(f.name, "required")
		} else {
			charting.CheckText(&v, f.name, f.value, 64, false)
		}
	}
	charting.ValidateScheduledStart(&v, "scheduled_start", n.ScheduledStart, now)
	n.Details.Validate("details.", &v)
	n.Details.ValidateForCase("details.", n.ScheduledStart, &v)
	return v.Err()
}

// CreateCase opens a planned case. It is idempotent on n.ID: an identical
// resend returns the existing case; a different one fails with
// charting.ErrConflict.
func (s *Store) CreateCase(ctx context.Context, actor string, n NewCase) (*charting.Case, error) {
	if err := n.validate(s.clock()); err != nil {
		return nil, err
	}
	if n.ID == uuid.Nil {
		n.ID = uuid.New()
	}
	n.Details.Normalize()
	now := s.clock()
	c := &charting.Case{
		ID: n.ID, Kind: n.Kind, Site: n.Site, Room: n.Room, ScheduledStart: charting.NormTime(n.ScheduledStart),
		CreatedAt: now, CreatedBy: actor, Status: charting.StatusPlanned, DetailsVersion: 1, Details: n.Details,
	}
	existed := false
	err := s.readWrite(ctx, []uuid.UUID{n.ID}, func(ctx context.Context, tx Tx) error {
		existed = false
		if _, err := tx.LockCase(ctx, c.ID); err == nil {
			existed = true
			return nil
		} else if !errors.Is(err, charting.ErrNotFound) {
			return err
		}
		c.Head = charting.Head{}
		if err := tx.InsertCase(ctx, c); err != nil {
			return err
		}
		if err := appendLink(ctx, tx, c, charting.LinkCaseCreated, "", actor, "", now, charting.DigestCaseHeader(charting.HeaderOf(c))); err != nil {
			return err
		}
		dv := charting.DetailsVersion{Version: 1, Details: c.Details, Actor: actor, RecordedAt: now}
		if err := tx.InsertDetails(ctx, c.ID, dv); err != nil {
			return err
		}
		if err := appendLink(ctx, tx, c, charting.LinkDetails, "1", actor, "", now, charting.DigestDetails(c.ID, dv)); err != nil {
			return err
		}
		return tx.UpdateCaseState(ctx, c)
	})
	if errors.Is(err, ErrDuplicate) {
		existed, err = true, nil // a concurrent create won the race
	}
	if err != nil {
		return nil, fmt.Errorf("create case: %w", err)
	}
	if !existed {
		return c, nil
	}
	return s.sameCase(ctx, c)
}

// sameCase returns the stored case when it matches the create request.
func (s *Store) sameCase(ctx context.Context, want *charting.Case) (*charting.Case, error) {
	got, err := s.b.GetCase(ctx, want.ID)
	if err != nil {
		return nil, fmt.Errorf("create case: read existing: %w", err)
	}
	versions, err := s.b.DetailsVersions(ctx, want.ID)
	if err != nil || len(versions) == 0 {
		return nil, fmt.Errorf("create case: read existing details: %w", errors.Join(err, charting.ErrNotFound))
	}
	gh, wh := charting.HeaderOf(got), charting.HeaderOf(want)
	gh.CreatedAt, wh.CreatedAt, gh.CreatedBy, wh.CreatedBy = time.Time{}, time.Time{}, "", ""
	if gh != wh || charting.DigestDetails(want.ID, charting.DetailsVersion{Version: 1, Details: versions[0].Details}) !=
		charting.DigestDetails(want.ID, charting.DetailsVersion{Version: 1, Details: want.Details}) {
		return nil, fmt.Errorf("create case: %w", charting.ErrConflict)
	}
	return got, nil
}

// GetCase reads a case.
func (s *Store) GetCase(ctx context.Context, id uuid.UUID) (*charting.Case, error) {
	c, err := s.b.GetCase(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("get case: %w", err)
	}
	return c, nil
}

// ListCases lists cases; next is nil on the last page.
func (s *Store) ListCases(ctx context.Context, f CaseFilter) (cases []charting.Case, next *CaseCursor, err error) {
	if f.Limit <= 0 {
		f.Limit = 50
	}
	f.Limit = min(f.Limit, 500)
	want := f.Limit
	f.Limit++ // one more tells whether there is a next page
	cases, err = s.b.ListCases(ctx, f)
	if err != nil {
		return nil, nil, fmt.Errorf("list cases: %w", err)
	}
	if len(cases) > want {
		cases = cases[:want]
		last := cases[want-1]
		next = &CaseCursor{ScheduledStart: last.ScheduledStart, ID: last.ID}
	}
	return cases, next, nil
}

// UpdateCaseDetails stores a new details version. A reason is required once
// the case has started.
func (s *Store) UpdateCaseDetails(ctx context.Context, actor string, id uuid.UUID, expectedVersion int64, d charting.Details, reason string) (*charting.Case, error) {
	var v charting.Violations
	d.Validate("details.", &v)
	charting.CheckText(&v, "reason", reason, 1000, true)
	if err := v.Err(); err != nil {
		return nil, err
	}
	d.Normalize()
	var out *charting.Case
	err := s.readWrite(ctx, []uuid.UUID{id}, func(ctx context.Context, tx Tx) error {
		c, err := tx.LockCase(ctx, id)
		if err != nil {
			return err
		}
		if err := c.CanUpdateDetails(); err != nil {
			return err
		}
		if expectedVersion != c.DetailsVersion {
			return fmt.Errorf("details are at version %d, not %d: %w", c.DetailsVersion, expectedVersion, charting.ErrStale)
		}
		if reason == "" && c.Status != charting.StatusPlanned {
			return &charting.InvalidError{Violations: []charting.FieldViolation{{Field: "reason", Description: "required once the case has started"}}}
		}
		var v charting.Violations
		d.ValidateForCase("details.", c.ScheduledStart, &v)
		if err := v.Err(); err != nil {
			return err
		}
		now := s.clock()
		dv := charting.DetailsVersion{Version: c.DetailsVersion + 1, Details: d, Reason: reason, Actor: actor, RecordedAt: now}
		if err := tx.InsertDetails(ctx, id, dv); err != nil {
			return err
		}
		ref := strconv.FormatInt(dv.Version, 10)
		if err := appendLink(ctx, tx, c, charting.LinkDetails, ref, actor, reason, now, charting.DigestDetails(id, dv)); err != nil {
			return err
		}
		c.DetailsVersion, c.Details = dv.Version, d
		out = c
		return tx.UpdateCaseState(ctx, c)
	})
	if err != nil {
		return nil, fmt.Errorf("update case details: %w", err)
	}
	s.afterRecordChange(ctx, out) // BSA and prime feed the metrics
	return s.GetCase(ctx, out.ID)
}

// CloseCase ends charting.
func (s *Store) CloseCase(ctx context.Context, actor string, id uuid.UUID) (*charting.Case, error) {
	err := s.readWrite(ctx, []uuid.UUID{id}, func(ctx context.Context, tx Tx) error {
		c, err := tx.LockCase(ctx, id)
		if err != nil {
			return err
		}
		if err := c.CanClose(); err != nil {
			return err
		}
		now := s.clock()
		c.Status, c.ClosedAt, c.ClosedBy = charting.StatusClosed, now, actor
		if err := appendLink(ctx, tx, c, charting.LinkCaseClosed, "", actor, "", now, charting.DigestClose(id, now, actor)); err != nil {
			return err
		}
		return tx.UpdateCaseState(ctx, c)
	})
	if err != nil {
		return nil, fmt.Errorf("close case: %w", err)
	}
	c, err := s.GetCase(ctx, id)
	s.afterRecordChange(ctx, c)
	return c, err
}

// SignRequest is a sign-off.
type SignRequest struct {
	Meaning     charting.SignatureMeaning
	DisplayName string
	// StaffID is the signer's staff identifier from the token (the
	// configured claim); "" when none.
	StaffID string
	// ExpectedHead, when set, must equal the case's head: nobody signs what
	// they have not seen.
	ExpectedHead *charting.Head
}

// SignCase signs a closed or signed case. The signature covers the ledger
// head before its own link; its number is its own link's sequence.
//
// A signer signs with each meaning at most once: a retried SignCase (same
// signer, same meaning) returns the signature already stored, with dup set,
// and adds nothing — no link, no second delivery to the EHR. A review is a
// second person's: whoever signed as author may not sign as reviewer, nor
// a reviewer as author.
func (s *Store) SignCase(ctx context.Context, actor string, id uuid.UUID, r SignRequest) (c *charting.Case, sig *charting.Signature, dup bool, err error) {
	var v charting.Violations
	switch r.Meaning {
	case charting.MeaningAuthored, charting.MeaningReviewed, charting.MeaningApproved:
	default:
		v.Add("meaning", "required: authored, reviewed or approved")
	}
	if r.DisplayName == "" {
		v.Add("signer_display_name", "required")
	} else {
		charting.CheckText(&v, "signer_display_name", r.DisplayName, 200, false)
	}
	charting.CheckText(&v, "signer_staff_id", r.StaffID, 200, false)
	if err := v.Err(); err != nil {
		return nil, nil, false, err
	}
	err = s.readWrite(ctx, []uuid.UUID{id}, func(ctx context.Context, tx Tx) error {
		sig, dup = nil, false
		c, err := tx.LockCase(ctx, id)
		if err != nil {
			return err
		}
		if err := c.CanSign(); err != nil {
			return err
		}
		prior, err := tx.Signatures(ctx, id)
		if err != nil {
			return err
		}
		if sig = charting.SignatureBy(prior, actor, r.Meaning); sig != nil {
			dup = true // a retry: the signature stands once
			return nil
		}
		if err := charting.MaySign(prior, actor, r.Meaning); err != nil {
			return err
		}
		if r.ExpectedHead != nil && *r.ExpectedHead != c.Head {
			return fmt.Errorf("the record has changed since it was reviewed: %w", charting.ErrStale)
		}
		now := s.clock()
		sig = &charting.Signature{CaseID: id, Number: c.Head.Seq + 1, Signer: actor, DisplayName: r.DisplayName,
			Meaning: r.Meaning, SignedAt: now, CoversSeq: c.Head.Seq, CoversHash: c.Head.Hash, StaffID: r.StaffID}
		if err := tx.InsertSignature(ctx, sig); err != nil {
			return err
		}
		ref := strconv.FormatInt(sig.Number, 10)
		if err := appendLink(ctx, tx, c, charting.LinkSignature, ref, actor, string(r.Meaning), now, charting.DigestSignature(*sig)); err != nil {
			return err
		}
		if err := s.enqueueExports(ctx, tx, id, sig.Number, now); err != nil {
			return err
		}
		c.Status = charting.StatusSigned
		return tx.UpdateCaseState(ctx, c)
	})
	if err != nil {
		return nil, nil, false, fmt.Errorf("sign case: %w", err)
	}
	c, err = s.GetCase(ctx, id)
	if !dup {
		s.afterRecordChange(ctx, c)
	}
	return c, sig, dup, err
}

// AuditTrail returns ledger links after a sequence.
func (s *Store) AuditTrail(ctx context.Context, caseID uuid.UUID, after int64, limit int) ([]charting.Link, error) {
	if _, err := s.b.GetCase(ctx, caseID); err != nil {
		return nil, fmt.Errorf("audit trail: %w", err)
	}
	links, err := s.b.Links(ctx, caseID, after, limit)
	if err != nil {
		return nil, fmt.Errorf("audit trail: %w", err)
	}
	return links, nil
}

// sortedCaseIDs returns the distinct case ids in a fixed order, so
// transactions that lock several cases always lock them in the same order
// and cannot deadlock each other.
func sortedCaseIDs(ids []uuid.UUID) []uuid.UUID {
	out := slices.Clone(ids)
	slices.SortFunc(out, func(a, b uuid.UUID) int { return slices.Compare(a[:], b[:]) })
	return slices.Compact(out)
}

// readWrite is the one way into the record: Backend.ReadWrite that, once
// the transaction committed, wakes the watchers of the cases it writes
// (watch.go). Every write of the record goes through it; the caller names
// its cases, which it knows before it starts. fn may run more than once
// (Backend.ReadWrite retries serialization failures), so it must keep no
// state across runs — storetest.RunRetrying proves the store's writes do.
func (s *Store) readWrite(ctx context.Context, caseIDs []uuid.UUID, fn func(ctx context.Context, tx Tx) error) error {
	err := s.b.ReadWrite(ctx, fn)
	if err == nil {
		s.commits.committed(caseIDs)
	}
	return err
}

// caseIDsOf returns the distinct cases of the batches at the indexes.
func caseIDsOf(batches []*charting.SampleBatch, idx []int) []uuid.UUID {
	seen := make(map[uuid.UUID]bool, 1)
	out := make([]uuid.UUID, 0, 1)
	for _, i := range idx {
		if id := batches[i].CaseID; !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}
