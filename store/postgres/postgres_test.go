package postgres_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"

	"perfusion/charting"
	"perfusion/migrations"
	"perfusion/store"
	"perfusion/store/postgres"
	"perfusion/store/postgres/pgtest"
	"perfusion/store/storetest"
)

func latest(t *testing.T) int {
	t.Helper()
	n, err := migrations.Latest("postgres")
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestMigrateIdempotent(t *testing.T) {
	ctx := context.Background()
	b := pgtest.Open(t) // migrated once
	if err := b.Migrate(ctx); err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	v, err := b.SchemaVersion(ctx)
	if err != nil || v != latest(t) {
		t.Fatalf("schema version = %d, %v; want %d", v, err, latest(t))
	}
	var n int
	if err := b.Pool().QueryRow(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil || n != latest(t) {
		t.Fatalf("schema_migrations holds %d rows, %v; want %d", n, err, latest(t))
	}
	if err := b.CheckSchema(ctx); err != nil {
		t.Fatalf("check schema: %v", err)
	}
	if err := b.Ready(ctx); err != nil {
		t.Fatalf("ready: %v", err)
	}
}

func TestMigrateConcurrent(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	var backends [2]*postgres.Backend
	for i := range backends {
		b, err := postgres.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		backends[i] = b
	}
	if v, err := backends[0].SchemaVersion(ctx); err != nil || v != 0 {
		t.Fatalf("fresh database at version %d, %v", v, err)
	}
	if err := backends[0].CheckSchema(ctx); !errors.Is(err, postgres.ErrSchemaOutdated) {
		t.Fatalf("check schema before migrating: %v, want outdated", err)
	}
	if err := backends[0].Ready(ctx); err == nil {
		t.Fatal("ready before migrating")
	}
	var wg sync.WaitGroup
	errs := make([]error, len(backends))
	for i, b := range backends {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = b.Migrate(ctx)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("migrate %d: %v", i, err)
		}
	}
	for _, b := range backends {
		if err := b.Ready(ctx); err != nil {
			t.Fatalf("ready after concurrent migrate: %v", err)
		}
	}
}

func TestCheckSchemaRefusesNewer(t *testing.T) {
	ctx := context.Background()
	b := pgtest.Open(t)
	if _, err := b.Pool().Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES (999, 'from_the_future')`); err != nil {
		t.Fatal(err)
	}
	err := b.CheckSchema(ctx)
	if !errors.Is(err, postgres.ErrSchemaNewer) {
		t.Fatalf("check schema: %v, want newer", err)
	}
	if !strings.Contains(err.Error(), "999") {
		t.Fatalf("error does not name the version: %v", err)
	}
	if err := b.Ready(ctx); !errors.Is(err, postgres.ErrSchemaNewer) {
		t.Fatalf("ready: %v, want newer", err)
	}
	if err := b.Migrate(ctx); !errors.Is(err, postgres.ErrSchemaNewer) {
		t.Fatalf("migrate over a newer schema: %v, want refused", err)
	}
}

// fixture is one of every kind of row, written through the Tx API.
type fixture struct {
	c       charting.Case
	details charting.DetailsVersion
	entry   charting.Entry
	fix     charting.Entry
	batch   store.SampleBatchRow
	sig     charting.Signature
	links   []charting.Link
}

// messy returns a time with nanoseconds in a non-UTC zone, to prove that
// what is read back is UTC at microsecond precision.
func messy(base time.Time, d time.Duration) time.Time {
	return base.Add(d).Add(123_456_789 * time.Nanosecond).In(time.FixedZone("CEST", 2*3600))
}

func newFixture() fixture {
	base := time.Date(2026, 3, 14, 7, 30, 0, 0, time.UTC)
	id := uuid.New()
	h := func(s string) charting.Hash { return sha256.Sum256([]byte(s)) }
	f := fixture{}
	f.c = charting.Case{
		ID: id, Kind: charting.KindCPB, Site: "MAIN", Room: "OR-3", ScheduledStart: messy(base, 0),
		CreatedAt: messy(base, -time.Hour), CreatedBy: "perfusionist-1", Status: charting.StatusPlanned,
		DetailsVersion: 1,
	}
	f.details = charting.DetailsVersion{Version: 1, Actor: "perfusionist-1", RecordedAt: messy(base, -time.Hour),
		Details: charting.Details{
			Patient:   charting.Patient{MRN: "MRN-1", FamilyName: "Testpatient", GivenName: "Alex", HeightCm: 170.5, WeightKg: 70.25, Allergies: []string{"latex"}, BSAFormula: charting.BSAMosteller, BSAM2: 1.827},
			Procedure: charting.Procedure{Description: "CABG x3 <LIMA> & SVG"},
			Prime:     charting.Prime{Components: []charting.PrimeComponent{{Name: "Plasma-Lyte A", VolumeML: 1200}}, RAPVolumeML: 0.1},
		}}
	f.entry = charting.Entry{ID: uuid.New(), CaseID: id, Kind: charting.EntryArtifactMark, OccurredAt: messy(base, 10*time.Minute),
		RecordedAt: messy(base, 11*time.Minute), Author: "perfusionist-1",
		Detail: charting.EntryDetail{ArtifactMark: &charting.ArtifactMark{Channel: "pump_flow", SourceID: "hlm",
			Start: messy(base, 9*time.Minute), End: messy(base, 10*time.Minute), Reason: "line flush"}}}
	f.fix = charting.Entry{ID: uuid.New(), CaseID: id, Kind: charting.EntryArtifactMark, OccurredAt: messy(base, 10*time.Minute),
		RecordedAt: messy(base, 40*time.Minute), Late: true, Author: "perfusionist-2", Supersedes: f.entry.ID, Reason: "wrong channel",
		Detail: charting.EntryDetail{ArtifactMark: &charting.ArtifactMark{Channel: "pressure_arterial_line",
			Start: messy(base, 9*time.Minute), End: messy(base, 10*time.Minute), Reason: "line flush"}}}
	f.batch = store.SampleBatchRow{CaseID: id, SourceID: "hlm", Seq: 1, RecordedAt: messy(base, 12*time.Minute), Actor: "gateway-1",
		MinTimeMs: base.UnixMilli(), MaxTimeMs: base.UnixMilli() + 9000, SampleCount: 20, Block: []byte{1, 2, 3, 0, 255}}
	var head charting.Head
	for i, k := range []charting.LinkKind{charting.LinkCaseCreated, charting.LinkDetails, charting.LinkEntry, charting.LinkCorrection, charting.LinkSamples} {
		l := charting.NextLink(id, head, k, "ref", "perfusionist-1", "", messy(base, time.Duration(i)*time.Second), h(string(k)))
		f.links = append(f.links, l)
		head = charting.Head{Seq: l.Seq, Hash: l.Hash}
	}
	f.sig = charting.Signature{CaseID: id, Number: head.Seq + 1, Signer: "perfusionist-1", DisplayName: "Pat Perfusionist",
		Meaning: charting.MeaningAuthored, SignedAt: messy(base, 2*time.Hour), CoversSeq: head.Seq, CoversHash: head.Hash}
	l := charting.NextLink(id, head, charting.LinkSignature, "6", "perfusionist-1", "authored", messy(base, 2*time.Hour), h("sig"))
	f.links = append(f.links, l)
	f.c.Head = charting.Head{Seq: l.Seq, Hash: l.Hash}
	return f
}

// write stores the fixture in one transaction.
func (f *fixture) write(t *testing.T, b *postgres.Backend) {
	t.Helper()
	err := b.ReadWrite(context.Background(), func(ctx context.Context, tx store.Tx) error {
		c := f.c
		c.Head = charting.Head{}
		if err := tx.InsertCase(ctx, &c); err != nil {
			return err
		}
		if err := tx.InsertDetails(ctx, c.ID, f.details); err != nil {
			return err
		}
		if err := tx.InsertEntry(ctx, &f.entry); err != nil {
			return err
		}
		if err := tx.InsertEntry(ctx, &f.fix); err != nil {
			return err
		}
		if err := tx.InsertSampleBatch(ctx, &f.batch); err != nil {
			return err
		}
		if err := tx.SetSourceWatermark(ctx, c.ID, "hlm", 1); err != nil {
			return err
		}
		if err := tx.InsertSignature(ctx, &f.sig); err != nil {
			return err
		}
		for i := range f.links {
			if err := tx.AppendLink(ctx, &f.links[i]); err != nil {
				return err
			}
		}
		return tx.UpdateCaseState(ctx, &f.c)
	})
	if err != nil {
		t.Fatalf("write fixture: %v", err)
	}
}

func normEntry(e charting.Entry) charting.Entry {
	e.OccurredAt, e.RecordedAt = charting.NormTime(e.OccurredAt), charting.NormTime(e.RecordedAt)
	if m := e.Detail.ArtifactMark; m != nil {
		mm := *m
		mm.Start, mm.End = charting.NormTime(m.Start), charting.NormTime(m.End)
		e.Detail.ArtifactMark = &mm
	}
	return e
}

func wantUTCMicro(t *testing.T, what string, got time.Time) {
	t.Helper()
	if got.Location() != time.UTC || got.Nanosecond()%1000 != 0 {
		t.Errorf("%s = %v: want UTC at microsecond precision", what, got)
	}
}

func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	b := pgtest.Open(t)
	f := newFixture()
	f.write(t, b)

	// The case, with current details and signatures.
	want := f.c
	want.ScheduledStart, want.CreatedAt = charting.NormTime(want.ScheduledStart), charting.NormTime(want.CreatedAt)
	want.Details = f.details.Details
	wantSig := f.sig
	wantSig.SignedAt = charting.NormTime(wantSig.SignedAt)
	want.Signatures = []charting.Signature{wantSig}
	got, err := b.GetCase(ctx, f.c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*got, want) {
		t.Fatalf("case read back as\n%+v\nwant\n%+v", *got, want)
	}
	wantUTCMicro(t, "scheduled start", got.ScheduledStart)
	wantUTCMicro(t, "created at", got.CreatedAt)
	if !got.StartedAt.IsZero() || !got.ClosedAt.IsZero() {
		t.Fatalf("unset times read back as %v, %v", got.StartedAt, got.ClosedAt)
	}
	list, err := b.ListCases(ctx, store.CaseFilter{Site: "MAIN", Limit: 10})
	if err != nil || len(list) != 1 || !reflect.DeepEqual(list[0], want) {
		t.Fatalf("list cases: %v, %+v", err, list)
	}
	if _, err := b.GetCase(ctx, uuid.New()); !errors.Is(err, charting.ErrNotFound) {
		t.Fatalf("unknown case: %v, want not found", err)
	}

	// Details versions.
	dv, err := b.DetailsVersions(ctx, f.c.ID)
	wantDV := f.details
	wantDV.RecordedAt = charting.NormTime(wantDV.RecordedAt)
	if err != nil || len(dv) != 1 || !reflect.DeepEqual(dv[0], wantDV) {
		t.Fatalf("details versions: %v\n%+v\nwant %+v", err, dv, wantDV)
	}

	// Entries, in recorded order, with supersedes NULL ↔ uuid.Nil.
	entries, err := b.Entries(ctx, f.c.ID)
	if err != nil {
		t.Fatal(err)
	}
	wantEntries := []charting.Entry{normEntry(f.entry), normEntry(f.fix)}
	if !reflect.DeepEqual(entries, wantEntries) {
		t.Fatalf("entries read back as\n%+v\nwant\n%+v", entries, wantEntries)
	}
	wantUTCMicro(t, "artifact start", entries[0].Detail.ArtifactMark.Start)
	if charting.DigestEntry(entries[1]) != charting.DigestEntry(f.fix) {
		t.Fatal("entry read back hashes differently from the one written")
	}

	// Signatures, links, watermarks.
	sigs, err := b.Signatures(ctx, f.c.ID)
	if err != nil || !reflect.DeepEqual(sigs, []charting.Signature{wantSig}) {
		t.Fatalf("signatures: %v %+v", err, sigs)
	}
	links, err := b.Links(ctx, f.c.ID, 0, 0)
	if err != nil || len(links) != len(f.links) {
		t.Fatalf("links: %v, %d", err, len(links))
	}
	for i, l := range links {
		w := f.links[i]
		w.RecordedAt = charting.NormTime(w.RecordedAt)
		if !reflect.DeepEqual(l, w) {
			t.Fatalf("link %d read back as %+v, want %+v", i+1, l, w)
		}
		if l.ComputeHash(sha256.Sum256([]byte(l.Kind))) != l.Hash && l.Kind != charting.LinkSignature {
			t.Fatalf("link %d no longer hashes to its hash", l.Seq)
		}
	}
	page, err := b.Links(ctx, f.c.ID, 2, 2)
	if err != nil || len(page) != 2 || page[0].Seq != 3 || page[1].Seq != 4 {
		t.Fatalf("links after 2, limit 2: %v %+v", err, page)
	}
	wm, err := b.SourceWatermarks(ctx, f.c.ID)
	if err != nil || !reflect.DeepEqual(wm, map[string]int64{"hlm": 1}) {
		t.Fatalf("watermarks: %v %v", err, wm)
	}

	// The sample batch.
	var rows []store.SampleBatchRow
	if err := b.ScanSampleBatches(ctx, f.c.ID, store.SampleFilter{}, func(r *store.SampleBatchRow) error {
		rows = append(rows, *r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	wantBatch := f.batch
	wantBatch.RecordedAt = charting.NormTime(wantBatch.RecordedAt)
	if len(rows) != 1 || !reflect.DeepEqual(rows[0], wantBatch) {
		t.Fatalf("batches: %+v, want %+v", rows, wantBatch)
	}

	// Reads inside a transaction, and what is not there.
	err = b.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error {
		c, err := tx.LockCase(ctx, f.c.ID)
		if err != nil {
			return err
		}
		wantLocked := want
		wantLocked.Details, wantLocked.Signatures = charting.Details{}, nil
		if !reflect.DeepEqual(*c, wantLocked) {
			t.Errorf("locked case = %+v, want %+v", *c, wantLocked)
		}
		if _, err := tx.LockCase(ctx, uuid.New()); !errors.Is(err, charting.ErrNotFound) {
			t.Errorf("lock unknown case: %v", err)
		}
		e, err := tx.GetEntry(ctx, f.c.ID, f.fix.ID)
		if err != nil || !reflect.DeepEqual(*e, normEntry(f.fix)) {
			t.Errorf("get entry: %v %+v", err, e)
		}
		if _, err := tx.GetEntry(ctx, f.c.ID, uuid.New()); !errors.Is(err, charting.ErrNotFound) {
			t.Errorf("get unknown entry: %v", err)
		}
		if by, err := tx.SupersededBy(ctx, f.c.ID, f.entry.ID); err != nil || by != f.fix.ID {
			t.Errorf("superseded by = %v, %v; want %v", by, err, f.fix.ID)
		}
		if by, err := tx.SupersededBy(ctx, f.c.ID, f.fix.ID); err != nil || by != uuid.Nil {
			t.Errorf("current entry superseded by %v, %v", by, err)
		}
		blk, err := tx.GetSampleBlock(ctx, f.c.ID, "hlm", 1)
		if err != nil || !reflect.DeepEqual(blk, f.batch.Block) {
			t.Errorf("get block: %v %v", err, blk)
		}
		if _, err := tx.GetSampleBlock(ctx, f.c.ID, "hlm", 2); !errors.Is(err, charting.ErrNotFound) {
			t.Errorf("get missing block: %v", err)
		}
		if w, err := tx.SourceWatermark(ctx, f.c.ID, "other"); err != nil || w != 0 {
			t.Errorf("unknown source watermark %d, %v", w, err)
		}
		// Times that are set read back set; the state moves forward.
		c.Status, c.StartedAt, c.ClosedAt, c.ClosedBy = charting.StatusClosed, messy(f.c.ScheduledStart, 0), messy(f.c.ScheduledStart, time.Hour), "closer"
		return tx.UpdateCaseState(ctx, c)
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err = b.GetCase(ctx, f.c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !got.StartedAt.Equal(charting.NormTime(messy(f.c.ScheduledStart, 0))) || got.ClosedBy != "closer" || got.Status != charting.StatusClosed {
		t.Fatalf("state after update: %+v", got)
	}
	wantUTCMicro(t, "started at", got.StartedAt)
	wantUTCMicro(t, "closed at", got.ClosedAt)
}

func TestDuplicates(t *testing.T) {
	ctx := context.Background()
	b := pgtest.Open(t)
	f := newFixture()
	f.write(t, b)
	other := uuid.New()
	// Every duplicate is reported as store.ErrDuplicate, and the
	// transaction stays usable afterwards: the last write must commit.
	err := b.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error {
		second := f.fix
		second.ID = uuid.New() // another correction of the same entry
		again := f.entry
		again.Detail.ArtifactMark = &charting.ArtifactMark{Channel: "x"} // same id, other content
		dups := map[string]error{
			"case":          tx.InsertCase(ctx, &f.c),
			"details":       tx.InsertDetails(ctx, f.c.ID, f.details),
			"entry":         tx.InsertEntry(ctx, &again),
			"second fix":    tx.InsertEntry(ctx, &second),
			"sample batch":  tx.InsertSampleBatch(ctx, &f.batch),
			"signature":     tx.InsertSignature(ctx, &f.sig),
			"ledger link":   tx.AppendLink(ctx, &f.links[0]),
			"ledger link 6": tx.AppendLink(ctx, &f.links[5]),
		}
		for what, err := range dups {
			if !errors.Is(err, store.ErrDuplicate) {
				t.Errorf("duplicate %s: %v, want ErrDuplicate", what, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// A correction naming a missing entry is refused by a foreign key (which,
	// unlike a duplicate, aborts the transaction).
	err = b.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error {
		orphan := f.fix
		orphan.ID, orphan.Supersedes = uuid.New(), uuid.New()
		return tx.InsertEntry(ctx, &orphan)
	})
	if !errors.Is(err, charting.ErrNotFound) {
		t.Errorf("correction of a missing entry: %v, want not found", err)
	}
	err = b.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error {
		c := f.c
		c.ID = other
		return tx.InsertCase(ctx, &c)
	})
	if err != nil {
		t.Fatalf("write after duplicates: %v", err)
	}
	if _, err := b.GetCase(ctx, other); err != nil {
		t.Fatal(err)
	}
	// An entry for a case that does not exist.
	err = b.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error {
		e := f.entry
		e.CaseID, e.ID = uuid.New(), uuid.New()
		return tx.InsertEntry(ctx, &e)
	})
	if !errors.Is(err, charting.ErrNotFound) {
		t.Fatalf("entry of an unknown case: %v, want not found", err)
	}
}

// TestErrorsCarryNoValues: errors name the operation and SQLSTATE only;
// the server's message and detail can quote row values (patient data).
func TestErrorsCarryNoValues(t *testing.T) {
	ctx := context.Background()
	b := pgtest.Open(t)
	f := newFixture()
	f.write(t, b)
	const secret = "PHI-Testpatient-1961"
	err := b.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error {
		bad := f.batch
		bad.Seq, bad.Actor, bad.MinTimeMs, bad.MaxTimeMs = 2, secret, 10, 5 // violates a CHECK
		return tx.InsertSampleBatch(ctx, &bad)
	})
	var pe *pgconn.PgError
	if err == nil || !errors.As(err, &pe) || pe.Code != "23514" {
		t.Fatalf("check violation: %v", err)
	}
	if strings.Contains(err.Error(), secret) || !strings.Contains(err.Error(), "insert sample batch") {
		t.Fatalf("error message %q", err)
	}
	// PostgreSQL text and jsonb cannot hold U+0000; the write fails cleanly.
	err = b.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error {
		e := f.entry
		e.ID, e.Kind, e.Detail = uuid.New(), charting.EntryNote, charting.EntryDetail{Note: &charting.Note{Text: secret + "\x00"}}
		return tx.InsertEntry(ctx, &e)
	})
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("NUL in a note: %v", err)
	}
}

func TestReadWriteRetries(t *testing.T) {
	ctx := context.Background()
	b := pgtest.Open(t)
	f := newFixture()

	calls := 0
	err := b.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error {
		calls++
		if calls == 1 {
			c := f.c
			if err := tx.InsertCase(ctx, &c); err != nil {
				return err
			}
			return &pgconn.PgError{Code: "40001", Message: "could not serialize access"}
		}
		c := f.c
		return tx.InsertCase(ctx, &c) // the first attempt was rolled back
	})
	if err != nil || calls != 2 {
		t.Fatalf("serialization failure: %v after %d calls, want success after 2", err, calls)
	}

	calls = 0
	deadlock := &pgconn.PgError{Code: "40P01"}
	err = b.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error { calls++; return deadlock })
	if err != deadlock || calls != 5 {
		t.Fatalf("persistent deadlock: %v after %d calls, want it unchanged after 5", err, calls)
	}

	calls = 0
	mine := errors.New("not retryable")
	err = b.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error { calls++; return mine })
	if err != mine || calls != 1 {
		t.Fatalf("plain error: %v after %d calls", err, calls)
	}

	calls = 0
	cctx, cancel := context.WithCancel(ctx)
	err = b.ReadWrite(cctx, func(ctx context.Context, tx store.Tx) error {
		calls++
		cancel()
		return deadlock
	})
	if calls != 1 || !errors.Is(err, deadlock) {
		t.Fatalf("retry after cancel: %d calls, %v", calls, err)
	}
}

// TestReadWriteResolvesRealDeadlock: two transactions lock two cases in
// opposite orders; PostgreSQL aborts one with 40P01 and ReadWrite runs it
// again, so both commit.
func TestReadWriteResolvesRealDeadlock(t *testing.T) {
	ctx := context.Background()
	b := pgtest.Open(t)
	a, c := newFixture(), newFixture()
	a.write(t, b)
	c.write(t, b)
	var calls atomic.Int32
	var first sync.WaitGroup
	first.Add(2)
	run := func(x, y uuid.UUID) error {
		attempt := 0
		return b.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error {
			calls.Add(1)
			attempt++
			if _, err := tx.LockCase(ctx, x); err != nil {
				return err
			}
			if attempt == 1 {
				first.Done()
				first.Wait() // both hold their first lock
			}
			cs, err := tx.LockCase(ctx, y)
			if err != nil {
				return err
			}
			return tx.UpdateCaseState(ctx, cs)
		})
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	wg.Add(2)
	go func() { defer wg.Done(); errs[0] = run(a.c.ID, c.c.ID) }()
	go func() { defer wg.Done(); errs[1] = run(c.c.ID, a.c.ID) }()
	wg.Wait()
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("deadlocked writers: %v, %v", errs[0], errs[1])
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("%d attempts, want 3 (one deadlock victim retried)", n)
	}
}

func TestScanSampleBatches(t *testing.T) {
	ctx := context.Background()
	b := pgtest.Open(t)
	f := newFixture()
	f.write(t, b)
	// Batches (source, seq, min, max): hlm/1 is the fixture's.
	base := f.batch.MinTimeMs
	more := []store.SampleBatchRow{
		{SourceID: "hlm", Seq: 2, MinTimeMs: base + 10_000, MaxTimeMs: base + 19_000},
		{SourceID: "cdi", Seq: 1, MinTimeMs: base, MaxTimeMs: base + 12_000},
		{SourceID: "cdi", Seq: 2, MinTimeMs: base + 18_000, MaxTimeMs: base + 30_000},
		{SourceID: "hlm", Seq: 3, MinTimeMs: base + 20_000, MaxTimeMs: base + 20_000},
	}
	err := b.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error {
		for i := range more {
			r := &more[i]
			r.CaseID, r.RecordedAt, r.Actor, r.SampleCount, r.Block = f.c.ID, time.Now(), "gw", 1, []byte{byte(i)}
			if err := tx.InsertSampleBatch(ctx, r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	scan := func(fl store.SampleFilter) []string {
		var got []string
		err := b.ScanSampleBatches(ctx, f.c.ID, fl, func(r *store.SampleBatchRow) error {
			got = append(got, charting.SampleRef(r.SourceID, r.Seq))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	cases := []struct {
		f    store.SampleFilter
		want []string
	}{
		{store.SampleFilter{}, []string{"cdi/1", "hlm/1", "hlm/2", "cdi/2", "hlm/3"}},
		{store.SampleFilter{SourceID: "hlm"}, []string{"hlm/1", "hlm/2", "hlm/3"}},
		{store.SampleFilter{FromMs: base + 10_000}, []string{"cdi/1", "hlm/2", "cdi/2", "hlm/3"}},
		{store.SampleFilter{FromMs: base + 12_001, ToMs: base + 20_000}, []string{"hlm/2", "cdi/2"}},
		{store.SampleFilter{ToMs: base + 10_000}, []string{"cdi/1", "hlm/1"}},
		{store.SampleFilter{SourceID: "cdi", FromMs: base + 20_000, ToMs: base + 20_001}, []string{"cdi/2"}},
		{store.SampleFilter{SourceID: "none"}, nil},
	}
	for _, tc := range cases {
		if got := scan(tc.f); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("scan %+v = %v, want %v", tc.f, got, tc.want)
		}
	}
	stop := errors.New("enough")
	n := 0
	err = b.ScanSampleBatches(ctx, f.c.ID, store.SampleFilter{}, func(*store.SampleBatchRow) error { n++; return stop })
	if err != stop || n != 1 {
		t.Fatalf("scan stopped with %v after %d rows, want fn's error after 1", err, n)
	}
}

func TestListCasesKeyset(t *testing.T) {
	ctx := context.Background()
	b := pgtest.Open(t)
	start := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	// Two cases share each start time, so the id breaks ties.
	var all []uuid.UUID
	for i := range 6 {
		f := newFixture()
		f.c.ScheduledStart = start.Add(time.Duration(i/2) * time.Hour)
		f.write(t, b)
		all = append(all, f.c.ID)
	}
	var seen []uuid.UUID
	var after *store.CaseCursor
	for range 10 {
		page, err := b.ListCases(ctx, store.CaseFilter{Limit: 4, After: after})
		if err != nil {
			t.Fatal(err)
		}
		for i, c := range page {
			if len(c.Signatures) != 1 || c.Details.Patient.MRN != "MRN-1" {
				t.Fatalf("listed case lacks details or signatures: %+v", c)
			}
			if i > 0 && (c.ScheduledStart.After(page[i-1].ScheduledStart) ||
				c.ScheduledStart.Equal(page[i-1].ScheduledStart) && c.ID.String() > page[i-1].ID.String()) {
				t.Fatalf("listing out of order at %d", i)
			}
			seen = append(seen, c.ID)
		}
		if len(page) < 4 {
			break
		}
		last := page[len(page)-1]
		after = &store.CaseCursor{ScheduledStart: last.ScheduledStart, ID: last.ID}
	}
	if len(seen) != len(all) {
		t.Fatalf("keyset pages returned %d cases, want %d", len(seen), len(all))
	}
	got, err := b.ListCases(ctx, store.CaseFilter{From: start.Add(time.Hour), To: start.Add(2 * time.Hour), Status: charting.StatusPlanned, Room: "OR-3"})
	if err != nil || len(got) != 2 {
		t.Fatalf("filtered: %d cases, %v; want 2", len(got), err)
	}
}

// rowsOf returns a case's rows of a table as JSON text, to prove a refused
// statement changed nothing.
func rowsOf(t *testing.T, b *postgres.Backend, table string, id uuid.UUID) []string {
	t.Helper()
	rows, err := b.Pool().Query(context.Background(), `SELECT to_jsonb(t)::text FROM `+table+` t WHERE case_id = $1 ORDER BY 1`, id)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestAppendOnlyEnforcedByDatabase runs plain SQL, as any database user
// could, against every table of the record.
func TestAppendOnlyEnforcedByDatabase(t *testing.T) {
	ctx := context.Background()
	b := pgtest.Open(t)
	f := newFixture()
	f.write(t, b)
	exec := func(sql string) error {
		_, err := b.Pool().Exec(ctx, sql, f.c.ID)
		return err
	}
	execNoArgs := func(sql string) error {
		_, err := b.Pool().Exec(ctx, sql)
		return err
	}
	tables := map[string]string{ // table → a column to update
		"case_details":   "reason = 'edited'",
		"entries":        "reason = 'edited'",
		"sample_batches": "block = '\\x00'::bytea",
		"signatures":     "display_name = 'someone else'",
		"ledger":         "actor = 'someone else'",
	}
	for table, set := range tables {
		before := rowsOf(t, b, table, f.c.ID)
		if len(before) == 0 {
			t.Fatalf("%s: fixture wrote no row", table)
		}
		for _, q := range []string{
			`UPDATE ` + table + ` SET ` + set + ` WHERE case_id = $1`,
			`DELETE FROM ` + table + ` WHERE case_id = $1`,
		} {
			if err := exec(q); !postgres.IsAppendOnlyViolation(err) {
				t.Errorf("%s: got %v, want the append-only refusal", q, err)
			}
		}
		for _, q := range []string{`TRUNCATE ` + table, `TRUNCATE ` + table + ` CASCADE`} {
			if err := execNoArgs(q); !postgres.IsAppendOnlyViolation(err) {
				t.Errorf("%s: got %v, want the append-only refusal", q, err)
			}
		}
		if after := rowsOf(t, b, table, f.c.ID); !reflect.DeepEqual(before, after) {
			t.Errorf("%s changed by refused statements:\n%v\n%v", table, before, after)
		}
	}

	before := rowsOf(t, b, "cases", f.c.ID)
	for _, q := range []string{
		`UPDATE cases SET site = 'ELSEWHERE' WHERE case_id = $1`,
		`UPDATE cases SET room = 'OR-9' WHERE case_id = $1`,
		`UPDATE cases SET kind = 'ecmo' WHERE case_id = $1`,
		`UPDATE cases SET scheduled_start = scheduled_start + interval '1 hour' WHERE case_id = $1`,
		`UPDATE cases SET created_by = 'x', created_at = now() WHERE case_id = $1`,
		`UPDATE cases SET case_id = gen_random_uuid() WHERE case_id = $1`,
		`UPDATE cases SET head_seq = head_seq - 1 WHERE case_id = $1`,
		`DELETE FROM cases WHERE case_id = $1`,
	} {
		if err := exec(q); !postgres.IsAppendOnlyViolation(err) {
			t.Errorf("%s: got %v, want the append-only refusal", q, err)
		}
	}
	// A plain TRUNCATE of cases is refused by the foreign keys before the
	// trigger runs; with CASCADE the triggers of the record tables refuse.
	if err := execNoArgs(`TRUNCATE cases`); err == nil {
		t.Error("TRUNCATE cases accepted")
	}
	if err := execNoArgs(`TRUNCATE cases CASCADE`); !postgres.IsAppendOnlyViolation(err) {
		t.Errorf("TRUNCATE cases CASCADE: got %v, want the append-only refusal", err)
	}
	if after := rowsOf(t, b, "cases", f.c.ID); !reflect.DeepEqual(before, after) {
		t.Errorf("case changed by refused statements:\n%v\n%v", before, after)
	}
	// The state stays writable, forward.
	if err := exec(`UPDATE cases SET status = 'in_progress', started_at = now() WHERE case_id = $1`); err != nil {
		t.Fatalf("status update refused: %v", err)
	}
	if err := exec(`UPDATE cases SET status = 'planned' WHERE case_id = $1`); !postgres.IsAppendOnlyViolation(err) {
		t.Errorf("status moved backwards: %v", err)
	}
	// The derived source index is not part of the record.
	if err := exec(`UPDATE sample_sources SET watermark = 0 WHERE case_id = $1`); err != nil {
		t.Errorf("watermark update refused: %v", err)
	}
}

// TestUpgradeFromLegacyNumbering: a database the release before the
// shared migration numbering made is renumbered and completed.
func TestUpgradeFromLegacyNumbering(t *testing.T) {
	ctx := context.Background()
	b, err := postgres.Open(ctx, pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	storetest.UpgradeFromLegacyNumbering(t, b, func(q string) error {
		_, err := b.Pool().Exec(ctx, q)
		return err
	})
}
