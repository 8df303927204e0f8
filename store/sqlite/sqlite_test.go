package sqlite_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/migrations"
	"perfusion/store"
	"perfusion/store/sqlite"
	"perfusion/store/sqlite/sqlitetest"
	"perfusion/store/storetest"
)

// rawDB opens the backend's file on a connection of its own, as any other
// database client (the sqlite3 shell, a script) could: append-only
// enforcement must hold there too, not only on the backend's connections.
func rawDB(t testing.TB, b *sqlite.Backend) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+b.Path()+"?_pragma=busy_timeout(5000)&_pragma=foreign_keys(1)")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}

func latest(t testing.TB) int {
	t.Helper()
	n, err := migrations.Latest("sqlite")
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestMigrateTwiceIsIdempotent(t *testing.T) {
	ctx := context.Background()
	b, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "nested", "dir", "p.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if v, err := b.SchemaVersion(ctx); err != nil || v != 0 {
		t.Fatalf("fresh database: version %d, %v; want 0", v, err)
	}
	if err := b.CheckSchema(ctx); !errors.Is(err, sqlite.ErrSchemaOutdated) || !strings.Contains(err.Error(), "perfusiond migrate") {
		t.Fatalf("unmigrated CheckSchema = %v, want outdated + run migrate", err)
	}
	if err := b.Ready(ctx); err == nil {
		t.Fatal("Ready on an unmigrated database succeeded")
	}
	for i := 0; i < 2; i++ {
		if err := b.Migrate(ctx); err != nil {
			t.Fatalf("migrate #%d: %v", i+1, err)
		}
	}
	if v, err := b.SchemaVersion(ctx); err != nil || v != latest(t) {
		t.Fatalf("version %d, %v; want %d", v, err, latest(t))
	}
	if err := b.CheckSchema(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := rawDB(t, b).QueryRow(`SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil || n != latest(t) {
		t.Fatalf("schema_migrations has %d rows, %v; want %d", n, err, latest(t))
	}
	var mode string
	if err := rawDB(t, b).QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal mode %q, %v; want wal", mode, err)
	}
	if b.Name() != "sqlite" {
		t.Fatalf("Name() = %q", b.Name())
	}
}

func TestCheckSchemaRefusesNewer(t *testing.T) {
	ctx := context.Background()
	b := sqlitetest.Open(t)
	if _, err := rawDB(t, b).Exec(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'from_the_future', 0)`, latest(t)+1); err != nil {
		t.Fatal(err)
	}
	if err := b.CheckSchema(ctx); !errors.Is(err, sqlite.ErrSchemaTooNew) {
		t.Fatalf("CheckSchema = %v, want ErrSchemaTooNew", err)
	}
	if err := b.Ready(ctx); !errors.Is(err, sqlite.ErrSchemaTooNew) {
		t.Fatalf("Ready = %v, want ErrSchemaTooNew", err)
	}
	if err := b.Migrate(ctx); !errors.Is(err, sqlite.ErrSchemaTooNew) {
		t.Fatalf("Migrate = %v, want ErrSchemaTooNew", err)
	}
}

// fixture is one case with a row in every table, written through Tx.
type fixture struct {
	c       *charting.Case
	details []charting.DetailsVersion
	entries []charting.Entry
	batches []*store.SampleBatchRow
	sig     charting.Signature
	links   []charting.Link
}

// at is a time with nanoseconds and a non-UTC zone, so the test sees both
// normalised away.
func at(t0 time.Time, d time.Duration) time.Time {
	return t0.Add(d).Add(789 * time.Nanosecond).In(time.FixedZone("CET", 3600))
}

func hashOf(s string) charting.Hash {
	var h charting.Hash
	copy(h[:], s)
	return h
}

func newFixture(t0 time.Time) *fixture {
	id := uuid.New()
	f := &fixture{}
	f.c = &charting.Case{ID: id, Kind: charting.KindCPB, Site: "MAIN", Room: "OR-3",
		ScheduledStart: at(t0, 0), CreatedAt: at(t0, time.Second), CreatedBy: "creator",
		Status: charting.StatusPlanned, DetailsVersion: 1}
	d := charting.Details{Patient: charting.Patient{MRN: "MRN-SECRET-42", FamilyName: "Secretname", HeightCm: 180.5, WeightKg: 81.25,
		Allergies: []string{"latex"}}, Prime: charting.Prime{Components: []charting.PrimeComponent{{Name: "Plasma-Lyte", VolumeML: 1000}}}}
	d.Normalize()
	f.details = []charting.DetailsVersion{{Version: 1, Details: d, Actor: "creator", RecordedAt: at(t0, time.Second)}}
	d2 := d
	d2.Patient.WeightKg = 80
	f.details = append(f.details, charting.DetailsVersion{Version: 2, Details: d2, Reason: "re-weighed", Actor: "p1", RecordedAt: at(t0, 2*time.Second)})

	drug := charting.Entry{ID: uuid.New(), CaseID: id, Kind: charting.EntryDrug, OccurredAt: at(t0, time.Minute), RecordedAt: at(t0, 2*time.Minute),
		Author: "p1", Detail: charting.EntryDetail{Drug: &charting.DrugDose{Drug: "heparin", Dose: 30000, Unit: "[iU]", Route: "intravenous"}}}
	mark := charting.Entry{ID: uuid.New(), CaseID: id, Kind: charting.EntryArtifactMark, OccurredAt: at(t0, 3*time.Minute), RecordedAt: at(t0, 20*time.Minute),
		Late: true, Author: "p1", Detail: charting.EntryDetail{ArtifactMark: &charting.ArtifactMark{Channel: "map", SourceID: "monitor",
			Start: at(t0, 150*time.Second), End: at(t0, 170*time.Second), Reason: "line flush"}}}
	fix := charting.Entry{ID: uuid.New(), CaseID: id, Kind: charting.EntryDrug, OccurredAt: at(t0, time.Minute), RecordedAt: at(t0, 21*time.Minute),
		Author: "p2", Supersedes: drug.ID, Reason: "wrong dose", Detail: charting.EntryDetail{Drug: &charting.DrugDose{Drug: "heparin", Dose: 25000, Unit: "[iU]"}}}
	void := charting.Entry{ID: uuid.New(), CaseID: id, Kind: charting.EntryArtifactMark, OccurredAt: mark.OccurredAt, RecordedAt: at(t0, 22*time.Minute),
		Author: "p2", Supersedes: mark.ID, Reason: "not an artifact", Void: true}
	f.entries = []charting.Entry{drug, mark, fix, void}

	for i, spec := range []struct {
		src      string
		seq      int64
		min, max int64
	}{{"hlm", 1, 1000, 1999}, {"hlm", 2, 2000, 2999}, {"monitor", 1, 1500, 3500}, {"hlm", 3, 3000, 3999}} {
		f.batches = append(f.batches, &store.SampleBatchRow{CaseID: id, SourceID: spec.src, Seq: spec.seq, RecordedAt: at(t0, time.Duration(i)*time.Second),
			Actor: "gateway", MinTimeMs: spec.min, MaxTimeMs: spec.max, SampleCount: 10 + i, Block: []byte(fmt.Sprintf("block-%d", i))})
	}
	head := charting.Head{}
	for i := 0; i < 3; i++ {
		l := charting.NextLink(id, head, charting.LinkEntry, fmt.Sprint(i), "p1", "", at(t0, time.Duration(i)*time.Second), hashOf(fmt.Sprint(i)))
		f.links = append(f.links, l)
		head = charting.Head{Seq: l.Seq, Hash: l.Hash}
	}
	f.sig = charting.Signature{CaseID: id, Number: 4, Signer: "p1", DisplayName: "Pat P", Meaning: charting.MeaningAuthored,
		SignedAt: at(t0, time.Hour), CoversSeq: head.Seq, CoversHash: head.Hash}
	f.c.Head = head
	return f
}

func (f *fixture) write(ctx context.Context, b store.Backend) error {
	return b.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error {
		c := *f.c
		c.Head = charting.Head{}
		if err := tx.InsertCase(ctx, &c); err != nil {
			return err
		}
		for _, d := range f.details {
			if err := tx.InsertDetails(ctx, f.c.ID, d); err != nil {
				return err
			}
		}
		for i := range f.entries {
			if err := tx.InsertEntry(ctx, &f.entries[i]); err != nil {
				return err
			}
		}
		for _, r := range f.batches {
			if err := tx.InsertSampleBatch(ctx, r); err != nil {
				return err
			}
		}
		if err := tx.SetSourceWatermark(ctx, f.c.ID, "hlm", 3); err != nil {
			return err
		}
		if err := tx.SetSourceWatermark(ctx, f.c.ID, "monitor", 1); err != nil {
			return err
		}
		for i := range f.links {
			if err := tx.AppendLink(ctx, &f.links[i]); err != nil {
				return err
			}
		}
		if err := tx.InsertSignature(ctx, &f.sig); err != nil {
			return err
		}
		c.DetailsVersion, c.Head, c.Status = 2, f.c.Head, charting.StatusSigned
		c.StartedAt, c.ClosedAt, c.ClosedBy = f.c.ScheduledStart.Add(time.Minute), f.c.ScheduledStart.Add(time.Hour), "p1"
		return tx.UpdateCaseState(ctx, &c)
	})
}

func wantUTCMicros(t *testing.T, what string, got, want time.Time) {
	t.Helper()
	if got.Location() != time.UTC {
		t.Errorf("%s: location %v, want UTC", what, got.Location())
	}
	if w := charting.NormTime(want); !got.Equal(w) || got.Nanosecond()%1000 != 0 {
		t.Errorf("%s = %v, want %v", what, got, w)
	}
}

func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	b := sqlitetest.Open(t)
	t0 := time.Date(2026, 3, 2, 7, 30, 0, 123456000, time.UTC)
	f := newFixture(t0)
	if err := f.write(ctx, b); err != nil {
		t.Fatal(err)
	}
	id := f.c.ID

	t.Run("GetCase", func(t *testing.T) {
		c, err := b.GetCase(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if c.ID != id || c.Kind != charting.KindCPB || c.Site != "MAIN" || c.Room != "OR-3" || c.CreatedBy != "creator" ||
			c.Status != charting.StatusSigned || c.DetailsVersion != 2 || c.ClosedBy != "p1" || c.Head != f.c.Head {
			t.Fatalf("case read back as %+v", c)
		}
		wantUTCMicros(t, "scheduled start", c.ScheduledStart, f.c.ScheduledStart)
		wantUTCMicros(t, "created at", c.CreatedAt, f.c.CreatedAt)
		wantUTCMicros(t, "started at", c.StartedAt, f.c.ScheduledStart.Add(time.Minute))
		wantUTCMicros(t, "closed at", c.ClosedAt, f.c.ScheduledStart.Add(time.Hour))
		if !reflect.DeepEqual(c.Details, f.details[1].Details) {
			t.Fatalf("current details %+v, want version 2 %+v", c.Details, f.details[1].Details)
		}
		if len(c.Signatures) != 1 {
			t.Fatalf("signatures %+v", c.Signatures)
		}
		s := c.Signatures[0]
		wantUTCMicros(t, "signed at", s.SignedAt, f.sig.SignedAt)
		s.SignedAt = f.sig.SignedAt
		if s != f.sig {
			t.Fatalf("signature %+v, want %+v", s, f.sig)
		}
		if _, err := b.GetCase(ctx, uuid.New()); !errors.Is(err, charting.ErrNotFound) {
			t.Fatalf("unknown case: %v", err)
		}
	})

	t.Run("ZeroTimesAreNull", func(t *testing.T) {
		c := &charting.Case{ID: uuid.New(), Kind: charting.KindECMO, Site: "MAIN", Room: "ICU", ScheduledStart: t0, CreatedAt: t0,
			CreatedBy: "x", Status: charting.StatusPlanned, DetailsVersion: 1}
		if err := b.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error { return tx.InsertCase(ctx, c) }); err != nil {
			t.Fatal(err)
		}
		var started, closed, closedBy sql.NullString
		if err := rawDB(t, b).QueryRow(`SELECT started_at, closed_at, closed_by FROM cases WHERE case_id = ?`, c.ID.String()).
			Scan(&started, &closed, &closedBy); err != nil {
			t.Fatal(err)
		}
		if started.Valid || closed.Valid || closedBy.Valid {
			t.Fatalf("unset started/closed stored as %v %v %v, want NULL", started, closed, closedBy)
		}
		got, err := b.GetCase(ctx, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !got.StartedAt.IsZero() || !got.ClosedAt.IsZero() || got.Head.Seq != 0 || got.Head.Hash != (charting.Hash{}) || got.Signatures != nil {
			t.Fatalf("case without state read back as %+v", got)
		}
		var storedID string
		if err := rawDB(t, b).QueryRow(`SELECT case_id FROM cases WHERE case_id = ?`, c.ID.String()).Scan(&storedID); err != nil ||
			storedID != strings.ToLower(c.ID.String()) {
			t.Fatalf("case id stored as %q, %v", storedID, err)
		}
	})

	t.Run("LockCase", func(t *testing.T) {
		err := b.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error {
			c, err := tx.LockCase(ctx, id)
			if err != nil {
				return err
			}
			if c.Head != f.c.Head || c.DetailsVersion != 2 || c.Status != charting.StatusSigned {
				return fmt.Errorf("locked case %+v", c)
			}
			wantUTCMicros(t, "locked scheduled start", c.ScheduledStart, f.c.ScheduledStart)
			if _, err := tx.LockCase(ctx, uuid.New()); !errors.Is(err, charting.ErrNotFound) {
				return fmt.Errorf("lock unknown case: %v", err)
			}
			if err := tx.UpdateCaseState(ctx, &charting.Case{ID: uuid.New(), Status: charting.StatusPlanned}); !errors.Is(err, charting.ErrNotFound) {
				return fmt.Errorf("update unknown case: %v", err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})

	t.Run("DetailsVersions", func(t *testing.T) {
		vs, err := b.DetailsVersions(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if len(vs) != 2 {
			t.Fatalf("%d versions", len(vs))
		}
		for i, v := range vs {
			want := f.details[i]
			wantUTCMicros(t, "details recorded at", v.RecordedAt, want.RecordedAt)
			v.RecordedAt = want.RecordedAt
			if !reflect.DeepEqual(v, want) {
				t.Fatalf("version %d = %+v, want %+v", i+1, v, want)
			}
			if charting.DigestDetails(id, v) != charting.DigestDetails(id, want) {
				t.Fatalf("version %d does not hash as written", i+1)
			}
		}
	})

	t.Run("Entries", func(t *testing.T) {
		es, err := b.Entries(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if len(es) != len(f.entries) {
			t.Fatalf("%d entries, want %d", len(es), len(f.entries))
		}
		for i, e := range es {
			want := f.entries[i]
			if e.ID != want.ID {
				t.Fatalf("entry %d is %v, want %v (recorded order)", i, e.ID, want.ID)
			}
			wantUTCMicros(t, "occurred at", e.OccurredAt, want.OccurredAt)
			wantUTCMicros(t, "recorded at", e.RecordedAt, want.RecordedAt)
			if charting.DigestEntry(e) != charting.DigestEntry(want) {
				t.Fatalf("entry %d does not hash as written: %+v", i, e)
			}
			if e.Supersedes != want.Supersedes || e.Late != want.Late || e.Void != want.Void || e.Reason != want.Reason || e.Kind != want.Kind {
				t.Fatalf("entry %d = %+v, want %+v", i, e, want)
			}
		}
		m := es[1].Detail.ArtifactMark
		if m == nil {
			t.Fatal("artifact mark lost its detail")
		}
		wantUTCMicros(t, "artifact start", m.Start, f.entries[1].Detail.ArtifactMark.Start)
		wantUTCMicros(t, "artifact end", m.End, f.entries[1].Detail.ArtifactMark.End)
		if es[0].Detail.Drug == nil || es[0].Detail.Drug.Dose != 30000 || es[3].Detail.Kinds() != nil {
			t.Fatalf("details read back as %+v / %+v", es[0].Detail, es[3].Detail)
		}
		var supers sql.NullString
		if err := rawDB(t, b).QueryRow(`SELECT supersedes FROM entries WHERE entry_id = ?`, f.entries[0].ID.String()).Scan(&supers); err != nil || supers.Valid {
			t.Fatalf("uuid.Nil supersedes stored as %v, %v; want NULL", supers, err)
		}
	})

	t.Run("TxReads", func(t *testing.T) {
		err := b.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error {
			e, err := tx.GetEntry(ctx, id, f.entries[2].ID)
			if err != nil {
				return err
			}
			if e.Supersedes != f.entries[0].ID || charting.DigestEntry(*e) != charting.DigestEntry(f.entries[2]) {
				return fmt.Errorf("GetEntry = %+v", e)
			}
			if _, err := tx.GetEntry(ctx, id, uuid.New()); !errors.Is(err, charting.ErrNotFound) {
				return fmt.Errorf("unknown entry: %v", err)
			}
			if by, err := tx.SupersededBy(ctx, id, f.entries[0].ID); err != nil || by != f.entries[2].ID {
				return fmt.Errorf("SupersededBy = %v, %v", by, err)
			}
			if by, err := tx.SupersededBy(ctx, id, f.entries[2].ID); err != nil || by != uuid.Nil {
				return fmt.Errorf("SupersededBy current = %v, %v", by, err)
			}
			blk, err := tx.GetSampleBlock(ctx, id, "monitor", 1)
			if err != nil || string(blk) != "block-2" {
				return fmt.Errorf("GetSampleBlock = %q, %v", blk, err)
			}
			if _, err := tx.GetSampleBlock(ctx, id, "monitor", 2); !errors.Is(err, charting.ErrNotFound) {
				return fmt.Errorf("unknown block: %v", err)
			}
			if w, err := tx.SourceWatermark(ctx, id, "hlm"); err != nil || w != 3 {
				return fmt.Errorf("watermark = %d, %v", w, err)
			}
			if w, err := tx.SourceWatermark(ctx, id, "nobody"); err != nil || w != 0 {
				return fmt.Errorf("watermark of unknown source = %d, %v", w, err)
			}
			return tx.SetSourceWatermark(ctx, id, "hlm", 4)
		})
		if err != nil {
			t.Fatal(err)
		}
		ws, err := b.SourceWatermarks(ctx, id)
		if err != nil || !reflect.DeepEqual(ws, map[string]int64{"hlm": 4, "monitor": 1}) {
			t.Fatalf("watermarks %v, %v", ws, err)
		}
	})

	t.Run("Signatures", func(t *testing.T) {
		ss, err := b.Signatures(ctx, id)
		if err != nil || len(ss) != 1 || ss[0].CoversHash != f.sig.CoversHash || ss[0].Number != 4 {
			t.Fatalf("signatures %+v, %v", ss, err)
		}
		if charting.DigestSignature(ss[0]) != charting.DigestSignature(f.sig) {
			t.Fatal("signature does not hash as written")
		}
	})

	t.Run("Links", func(t *testing.T) {
		ls, err := b.Links(ctx, id, 0, 0)
		if err != nil || len(ls) != 3 {
			t.Fatalf("links %d, %v", len(ls), err)
		}
		for i, l := range ls {
			want := f.links[i]
			wantUTCMicros(t, "link recorded at", l.RecordedAt, want.RecordedAt)
			l.RecordedAt = want.RecordedAt
			if l != want {
				t.Fatalf("link %d = %+v, want %+v", i+1, l, want)
			}
			if l.ComputeHash(hashOf(fmt.Sprint(i))) != l.Hash {
				t.Fatalf("link %d does not re-hash", i+1)
			}
		}
		ls, err = b.Links(ctx, id, 1, 1)
		if err != nil || len(ls) != 1 || ls[0].Seq != 2 {
			t.Fatalf("links after 1, limit 1: %+v, %v", ls, err)
		}
	})

	t.Run("ScanSampleBatches", func(t *testing.T) {
		scan := func(f store.SampleFilter) []string {
			t.Helper()
			var got []string
			err := b.ScanSampleBatches(ctx, id, f, func(r *store.SampleBatchRow) error {
				got = append(got, charting.SampleRef(r.SourceID, r.Seq))
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			return got
		}
		for _, tc := range []struct {
			name string
			f    store.SampleFilter
			want []string
		}{
			{"all", store.SampleFilter{}, []string{"hlm/1", "monitor/1", "hlm/2", "hlm/3"}},
			{"source", store.SampleFilter{SourceID: "hlm"}, []string{"hlm/1", "hlm/2", "hlm/3"}},
			{"from", store.SampleFilter{FromMs: 3000}, []string{"monitor/1", "hlm/3"}},
			{"from inclusive of max", store.SampleFilter{FromMs: 2999}, []string{"monitor/1", "hlm/2", "hlm/3"}},
			{"to exclusive", store.SampleFilter{ToMs: 2000}, []string{"hlm/1", "monitor/1"}},
			{"window", store.SampleFilter{FromMs: 2500, ToMs: 2600}, []string{"monitor/1", "hlm/2"}},
			{"window and source", store.SampleFilter{SourceID: "hlm", FromMs: 2500, ToMs: 2600}, []string{"hlm/2"}},
			{"none", store.SampleFilter{FromMs: 5000}, nil},
		} {
			if got := scan(tc.f); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
			}
		}
		var rows []*store.SampleBatchRow
		if err := b.ScanSampleBatches(ctx, id, store.SampleFilter{SourceID: "monitor"}, func(r *store.SampleBatchRow) error {
			rows = append(rows, r)
			return nil
		}); err != nil || len(rows) != 1 {
			t.Fatalf("scan monitor: %d rows, %v", len(rows), err)
		}
		r, want := rows[0], f.batches[2]
		wantUTCMicros(t, "batch recorded at", r.RecordedAt, want.RecordedAt)
		r.RecordedAt = want.RecordedAt
		if !reflect.DeepEqual(r, want) {
			t.Fatalf("batch %+v, want %+v", r, want)
		}
		stop := errors.New("stop")
		n := 0
		if err := b.ScanSampleBatches(ctx, id, store.SampleFilter{}, func(*store.SampleBatchRow) error { n++; return stop }); err != stop || n != 1 {
			t.Fatalf("scan did not stop at fn's error: %v after %d", err, n)
		}
	})

	t.Run("Duplicates", func(t *testing.T) {
		e := f.entries[0]
		otherFix := f.entries[2]
		otherFix.ID = uuid.New() // a second correction of the same entry
		link := f.links[0]
		sig := f.sig
		details := f.details[0]
		for name, ins := range map[string]func(ctx context.Context, tx store.Tx) error{
			"case":       func(ctx context.Context, tx store.Tx) error { return tx.InsertCase(ctx, f.c) },
			"details":    func(ctx context.Context, tx store.Tx) error { return tx.InsertDetails(ctx, id, details) },
			"entry":      func(ctx context.Context, tx store.Tx) error { return tx.InsertEntry(ctx, &e) },
			"supersedes": func(ctx context.Context, tx store.Tx) error { return tx.InsertEntry(ctx, &otherFix) },
			"batch":      func(ctx context.Context, tx store.Tx) error { return tx.InsertSampleBatch(ctx, f.batches[0]) },
			"signature":  func(ctx context.Context, tx store.Tx) error { return tx.InsertSignature(ctx, &sig) },
			"link":       func(ctx context.Context, tx store.Tx) error { return tx.AppendLink(ctx, &link) },
		} {
			err := b.ReadWrite(ctx, ins)
			if !errors.Is(err, store.ErrDuplicate) {
				t.Errorf("duplicate %s: %v, want ErrDuplicate", name, err)
				continue
			}
			if strings.Contains(err.Error(), "SECRET") || strings.Contains(err.Error(), id.String()) {
				t.Errorf("duplicate %s: error carries a stored value: %v", name, err)
			}
		}
	})

	t.Run("ErrorRollsBack", func(t *testing.T) {
		boom := errors.New("boom")
		c := &charting.Case{ID: uuid.New(), Kind: charting.KindCPB, Site: "S", Room: "R", ScheduledStart: t0, CreatedAt: t0, CreatedBy: "x", Status: charting.StatusPlanned}
		err := b.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error {
			if err := tx.InsertCase(ctx, c); err != nil {
				return err
			}
			return boom
		})
		if err != boom {
			t.Fatalf("ReadWrite = %v, want fn's error unchanged", err)
		}
		if _, err := b.GetCase(ctx, c.ID); !errors.Is(err, charting.ErrNotFound) {
			t.Fatalf("rolled-back case is readable: %v", err)
		}
	})
}

func TestListCases(t *testing.T) {
	ctx := context.Background()
	b := sqlitetest.Open(t)
	base := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	var all []uuid.UUID // newest first, ties by id descending
	for i := 0; i < 6; i++ {
		c := &charting.Case{ID: uuid.New(), Kind: charting.KindCPB, Site: "MAIN", Room: fmt.Sprintf("OR-%d", i%2),
			ScheduledStart: base.Add(time.Duration(i/2) * time.Hour), CreatedAt: base, CreatedBy: "x", Status: charting.StatusPlanned, DetailsVersion: 1}
		if i == 5 {
			c.Status = charting.StatusClosed
		}
		err := b.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error {
			if err := tx.InsertCase(ctx, c); err != nil {
				return err
			}
			return tx.InsertDetails(ctx, c.ID, charting.DetailsVersion{Version: 1, Details: charting.Details{Procedure: charting.Procedure{Description: fmt.Sprint(i)}}, Actor: "x", RecordedAt: base})
		})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, c.ID)
	}
	// Expected order: scheduled start descending, then id descending.
	want := append([]uuid.UUID(nil), all...)
	for i := 0; i+1 < len(want); i += 2 {
		if want[i].String() < want[i+1].String() {
			want[i], want[i+1] = want[i+1], want[i]
		}
	}
	want[0], want[1], want[4], want[5] = want[4], want[5], want[0], want[1]

	var got []uuid.UUID
	f := store.CaseFilter{Limit: 4}
	for {
		cs, err := b.ListCases(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			got = append(got, c.ID)
			if c.Details.Procedure.Description == "" {
				t.Fatalf("listed case without its details: %+v", c)
			}
		}
		if len(cs) < f.Limit {
			break
		}
		last := cs[len(cs)-1]
		f.After = &store.CaseCursor{ScheduledStart: last.ScheduledStart, ID: last.ID}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("paged listing\n%v\nwant\n%v", got, want)
	}
	for _, tc := range []struct {
		name string
		f    store.CaseFilter
		n    int
	}{
		{"room", store.CaseFilter{Room: "OR-1"}, 3},
		{"site", store.CaseFilter{Site: "ELSEWHERE"}, 0},
		{"status", store.CaseFilter{Status: charting.StatusClosed}, 1},
		{"from", store.CaseFilter{From: base.Add(time.Hour)}, 4},
		{"to", store.CaseFilter{To: base.Add(time.Hour)}, 2},
		{"window", store.CaseFilter{From: base.Add(time.Hour), To: base.Add(2 * time.Hour)}, 2},
		{"limit", store.CaseFilter{Limit: 1}, 1},
	} {
		cs, err := b.ListCases(ctx, tc.f)
		if err != nil || len(cs) != tc.n {
			t.Errorf("%s: %d cases, %v; want %d", tc.name, len(cs), err, tc.n)
		}
	}
}

// rowSnapshot reads a whole row as text, to compare before and after a
// refused statement.
func rowSnapshot(t *testing.T, db *sql.DB, table, where string, args ...any) string {
	t.Helper()
	rows, err := db.Query(`SELECT * FROM `+table+` WHERE `+where, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out strings.Builder
	n := 0
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&out, "%v\n", vals)
		n++
	}
	if n == 0 {
		t.Fatalf("no row in %s where %s", table, where)
	}
	return out.String()
}

func TestAppendOnlyEnforced(t *testing.T) {
	ctx := context.Background()
	b := sqlitetest.Open(t)
	f := newFixture(time.Date(2026, 3, 2, 7, 30, 0, 0, time.UTC))
	if err := f.write(ctx, b); err != nil {
		t.Fatal(err)
	}
	db := rawDB(t, b)
	id := f.c.ID.String()
	tables := []struct {
		table, where, set, replace string
	}{
		{"case_details", "case_id = $1 AND version = 1", "reason = 'edited'",
			`INSERT OR REPLACE INTO case_details SELECT case_id, version, '{}', 'x', 'x', 0 FROM case_details WHERE case_id = $1 AND version = 1`},
		{"entries", "case_id = $1", "void = 1",
			`REPLACE INTO entries SELECT case_id, entry_id, kind, occurred_at, recorded_at, late, author, supersedes, 'x', void, detail FROM entries WHERE case_id = $1 LIMIT 1`},
		{"sample_batches", "case_id = $1", "block = x'00'",
			`INSERT OR REPLACE INTO sample_batches SELECT case_id, source_id, seq, recorded_at, actor, min_time_ms, max_time_ms, sample_count, x'00' FROM sample_batches WHERE case_id = $1 LIMIT 1`},
		{"signatures", "case_id = $1", "meaning = 'approved'",
			`INSERT OR REPLACE INTO signatures SELECT case_id, number, 'mallory', display_name, meaning, signed_at, covers_seq, covers_hash, staff_id FROM signatures WHERE case_id = $1`},
		{"ledger", "case_id = $1", "actor = 'mallory'",
			`INSERT OR REPLACE INTO ledger SELECT case_id, seq, kind, ref, 'mallory', reason, recorded_at, prev_hash, hash FROM ledger WHERE case_id = $1 LIMIT 1`},
	}
	refused := func(what string, err error) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), "perfusion record is append-only") {
			t.Errorf("%s: %v, want refusal by the append-only trigger", what, err)
		}
	}
	for _, tc := range tables {
		before := rowSnapshot(t, db, tc.table, tc.where, id)
		_, err := db.Exec(`UPDATE `+tc.table+` SET `+tc.set+` WHERE `+tc.where, id)
		refused("UPDATE "+tc.table, err)
		_, err = db.Exec(`DELETE FROM `+tc.table+` WHERE `+tc.where, id)
		refused("DELETE "+tc.table, err)
		_, err = db.Exec(tc.replace, id)
		refused("REPLACE "+tc.table, err)
		if after := rowSnapshot(t, db, tc.table, tc.where, id); after != before {
			t.Errorf("%s changed:\n%s→\n%s", tc.table, before, after)
		}
	}

	before := rowSnapshot(t, db, "cases", "case_id = $1", id)
	for _, col := range []string{"case_id = lower(case_id)", "kind = 'ecmo'", "site = 'X'", "room = 'X'", "scheduled_start = 0", "created_at = 0", "created_by = 'mallory'"} {
		_, err := db.Exec(`UPDATE cases SET `+col+` WHERE case_id = $1`, id)
		refused("UPDATE cases SET "+col, err)
	}
	_, err := db.Exec(`DELETE FROM cases WHERE case_id = $1`, id)
	refused("DELETE cases", err)
	_, err = db.Exec(`INSERT OR REPLACE INTO cases SELECT case_id, kind, site, 'OR-X', scheduled_start, created_at, created_by,
		status, started_at, closed_at, closed_by, details_version, head_seq, head_hash FROM cases WHERE case_id = $1`, id)
	refused("REPLACE cases", err)
	if after := rowSnapshot(t, db, "cases", "case_id = $1", id); after != before {
		t.Errorf("case changed:\n%s→\n%s", before, after)
	}
	// The state columns are the case's mutable part, forward only (007): the
	// signed fixture cannot be set back to closed, its head not rewound.
	_, err = db.Exec(`UPDATE cases SET status = 'closed' WHERE case_id = $1`, id)
	refused("UPDATE cases SET status backwards", err)
	_, err = db.Exec(`UPDATE cases SET head_seq = head_seq - 1 WHERE case_id = $1`, id)
	refused("UPDATE cases SET head_seq backwards", err)
	if _, err := db.Exec(`UPDATE cases SET status = 'signed', head_seq = head_seq WHERE case_id = $1`, id); err != nil {
		t.Fatalf("updating the case state was refused: %v", err)
	}
	if c, err := b.GetCase(ctx, f.c.ID); err != nil || c.Status != charting.StatusSigned {
		t.Fatalf("status after update: %v, %v", c, err)
	}
	// Sources' watermarks are mutable too.
	if _, err := db.Exec(`UPDATE sample_sources SET watermark = 9 WHERE case_id = $1`, id); err != nil {
		t.Fatalf("updating a watermark was refused: %v", err)
	}
}

func TestBackupWhileWriting(t *testing.T) {
	ctx := context.Background()
	b := sqlitetest.Open(t)
	f := newFixture(time.Date(2026, 3, 2, 7, 30, 0, 0, time.UTC))
	if err := f.write(ctx, b); err != nil {
		t.Fatal(err)
	}
	// A second case charted continuously while the backup runs: each write
	// adds an entry and its ledger link and moves the head, so a torn copy
	// would show a head that disagrees with its ledger.
	live := newFixture(time.Date(2026, 3, 3, 7, 30, 0, 0, time.UTC))
	live.c.ID, live.c.Head = uuid.New(), charting.Head{}
	if err := b.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error { return tx.InsertCase(ctx, live.c) }); err != nil {
		t.Fatal(err)
	}
	var (
		stop    atomic.Bool
		written atomic.Int64
		wg      sync.WaitGroup
		werr    error // read after done is closed
		done    = make(chan struct{})
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(done)
		for !stop.Load() {
			werr = b.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error {
				c, err := tx.LockCase(ctx, live.c.ID)
				if err != nil {
					return err
				}
				e := charting.Entry{ID: uuid.New(), CaseID: c.ID, Kind: charting.EntryNote, OccurredAt: time.Now(), RecordedAt: time.Now(),
					Author: "p", Detail: charting.EntryDetail{Note: &charting.Note{Text: strings.Repeat("n", 500)}}}
				if err := tx.InsertEntry(ctx, &e); err != nil {
					return err
				}
				l := charting.NextLink(c.ID, c.Head, charting.LinkEntry, e.ID.String(), "p", "", e.RecordedAt, charting.DigestEntry(e))
				if err := tx.AppendLink(ctx, &l); err != nil {
					return err
				}
				c.Head = charting.Head{Seq: l.Seq, Hash: l.Hash}
				return tx.UpdateCaseState(ctx, c)
			})
			if werr != nil {
				return
			}
			written.Add(1)
		}
	}()
	waitFor := func(n int64) {
		for written.Load() < n {
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}
	waitFor(20)
	dest := filepath.Join(t.TempDir(), "backups", "copy.db")
	start := time.Now()
	berr := b.Backup(ctx, dest)
	t.Logf("backup took %v", time.Since(start))
	waitFor(written.Load() + 20)
	stop.Store(true)
	wg.Wait()
	if werr != nil {
		t.Fatalf("writer failed during backup: %v", werr)
	}
	if berr != nil {
		t.Fatalf("backup: %v", berr)
	}
	if fi, err := os.Stat(dest); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v, %v; want mode 0600", fi, err)
	}
	if err := b.Backup(ctx, dest); !errors.Is(err, os.ErrExist) {
		t.Fatalf("backup over an existing file: %v, want refusal", err)
	}

	cp, err := sqlite.Open(ctx, dest)
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	if err := cp.CheckSchema(ctx); err != nil {
		t.Fatalf("backup schema: %v", err)
	}
	// The settled case reads back identically.
	want, _ := b.GetCase(ctx, f.c.ID)
	got, err := cp.GetCase(ctx, f.c.ID)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("case in backup %+v, %v\nwant %+v", got, err, want)
	}
	wantEntries, _ := b.Entries(ctx, f.c.ID)
	gotEntries, err := cp.Entries(ctx, f.c.ID)
	if err != nil || !reflect.DeepEqual(gotEntries, wantEntries) {
		t.Fatalf("entries in backup differ: %v", err)
	}
	var n int
	if err := cp.ScanSampleBatches(ctx, f.c.ID, store.SampleFilter{}, func(*store.SampleBatchRow) error { n++; return nil }); err != nil || n != len(f.batches) {
		t.Fatalf("batches in backup: %d, %v", n, err)
	}
	// The live case is a consistent snapshot: its head is the end of its
	// ledger, and it holds one entry per link.
	lc, err := cp.GetCase(ctx, live.c.ID)
	if err != nil {
		t.Fatal(err)
	}
	links, _ := cp.Links(ctx, live.c.ID, 0, 0)
	es, _ := cp.Entries(ctx, live.c.ID)
	if lc.Head.Seq == 0 || int64(len(links)) != lc.Head.Seq || len(es) != len(links) || links[len(links)-1].Hash != lc.Head.Hash {
		t.Fatalf("torn backup: head %d, %d links, %d entries", lc.Head.Seq, len(links), len(es))
	}
	orig, _ := b.Links(ctx, live.c.ID, 0, 0)
	if len(orig) <= len(links) {
		t.Fatalf("writes after the backup are missing from the original (%d ≤ %d links)", len(orig), len(links))
	}
	for i := range links {
		if links[i] != orig[i] {
			t.Fatalf("backup link %d differs from the original", i+1)
		}
	}
}

func TestConcurrentReadWrite(t *testing.T) {
	ctx := context.Background()
	b := sqlitetest.Open(t)
	// A second backend on the same file stands in for another process: its
	// writer contends for SQLite's file lock, not for our connection pool.
	other, err := sqlite.Open(ctx, b.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()

	const workers, writes = 8, 25
	t0 := time.Date(2026, 3, 2, 7, 30, 0, 0, time.UTC)
	ids := make([]uuid.UUID, workers)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		ids[w] = uuid.New()
		be := store.Backend(b)
		if w%2 == 1 {
			be = other
		}
		wg.Add(1)
		go func(w int, be store.Backend) {
			defer wg.Done()
			c := &charting.Case{ID: ids[w], Kind: charting.KindCPB, Site: "S", Room: "R", ScheduledStart: t0, CreatedAt: t0, CreatedBy: "x", Status: charting.StatusPlanned}
			if err := be.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error { return tx.InsertCase(ctx, c) }); err != nil {
				errs <- err
				return
			}
			for i := 0; i < writes; i++ {
				err := be.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error {
					c, err := tx.LockCase(ctx, ids[w])
					if err != nil {
						return err
					}
					r := &store.SampleBatchRow{CaseID: c.ID, SourceID: "hlm", Seq: int64(i + 1), RecordedAt: t0, Actor: "gw",
						MinTimeMs: int64(i) * 1000, MaxTimeMs: int64(i)*1000 + 999, SampleCount: 1, Block: bytes.Repeat([]byte{byte(i)}, 100)}
					if err := tx.InsertSampleBatch(ctx, r); err != nil {
						return err
					}
					l := charting.NextLink(c.ID, c.Head, charting.LinkSamples, charting.SampleRef("hlm", r.Seq), "gw", "", t0, charting.Hash{})
					if err := tx.AppendLink(ctx, &l); err != nil {
						return err
					}
					if err := tx.SetSourceWatermark(ctx, c.ID, "hlm", r.Seq); err != nil {
						return err
					}
					c.Head = charting.Head{Seq: l.Seq, Hash: l.Hash}
					return tx.UpdateCaseState(ctx, c)
				})
				if err != nil {
					errs <- fmt.Errorf("worker %d write %d: %w", w, i, err)
					return
				}
				// Interleave reads, which must never wait for the writer.
				if _, err := be.GetCase(ctx, ids[w]); err != nil {
					errs <- err
					return
				}
			}
		}(w, be)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, id := range ids {
		c, err := b.GetCase(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		ls, _ := b.Links(ctx, id, 0, 0)
		ws, _ := b.SourceWatermarks(ctx, id)
		if c.Head.Seq != writes || len(ls) != writes || ws["hlm"] != writes {
			t.Fatalf("case %v: head %d, %d links, watermark %d; want %d", id, c.Head.Seq, len(ls), ws["hlm"], writes)
		}
	}
}

// TestUpgradeFromLegacyNumbering: a database the release before the
// shared migration numbering made is renumbered and completed.
func TestUpgradeFromLegacyNumbering(t *testing.T) {
	b, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "perfusion.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	storetest.UpgradeFromLegacyNumbering(t, b, func(q string) error {
		_, err := rawDB(t, b).Exec(q)
		return err
	})
}
