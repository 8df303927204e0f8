package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/store"
	"perfusion/store/postgres"
	"perfusion/store/postgres/pgtest"
	"perfusion/store/sqlite"
)

// signedCaseOnDisk writes a charted, signed case into an embedded store in
// dir, as a pilot site would have, and returns its id and head.
func signedCaseOnDisk(t *testing.T, dir string) (uuid.UUID, charting.Head) {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(dir, dbFileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	s := store.New(db, store.Config{})
	c, err := s.CreateCase(ctx, "perfusionist-1", store.NewCase{Kind: charting.KindCPB, Site: "MAIN", Room: "OR-2", ScheduledStart: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	ms := time.Now().Add(-time.Hour).UnixMilli()
	r := s.AppendSamples(ctx, "hlm", []*charting.SampleBatch{{CaseID: c.ID, SourceID: "hlm", Seq: 1,
		Series: []charting.Series{{Channel: "pump_flow", TimesMs: []int64{ms, ms + 1000}, Values: []float64{4.2, 4.3}}}}})
	if r[0].Err != nil {
		t.Fatal(r[0].Err)
	}
	e := charting.Entry{ID: uuid.New(), CaseID: c.ID, OccurredAt: time.Now(), Detail: charting.EntryDetail{Event: &charting.Event{Type: "bypass_on"}}}
	if _, _, err := s.RecordEntry(ctx, "perfusionist-1", e); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CloseCase(ctx, "perfusionist-1", c.ID); err != nil {
		t.Fatal(err)
	}
	signed, _, _, err := s.SignCase(ctx, "perfusionist-1", c.ID, store.SignRequest{Meaning: charting.MeaningAuthored, DisplayName: "P P"})
	if err != nil {
		t.Fatal(err)
	}
	return c.ID, signed.Head
}

// TestMoveEmbeddedToPostgres moves a pilot's records from the embedded
// store to PostgreSQL with export and import, and checks they still verify
// with the same ledger head.
func TestMoveEmbeddedToPostgres(t *testing.T) {
	dsn := pgtest.DSN(t)
	dir := t.TempDir()
	id, head := signedCaseOnDisk(t, dir)
	archives := filepath.Join(t.TempDir(), "archives")

	a, out, errb := testApp(map[string]string{envDataDir: dir})
	if code := a.run(context.Background(), []string{"export", "--to", archives}); code != exitOK {
		t.Fatalf("export exited %d: %s", code, errb)
	}
	if !strings.Contains(out.String(), "1 case(s) exported") {
		t.Fatalf("export printed %q", out)
	}
	file := filepath.Join(archives, id.String()+archiveSuffix)
	if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("archive %s: %v, mode %v", file, err, st.Mode())
	}

	for i := 0; i < 2; i++ { // the second import finds the identical case and changes nothing
		a, out, errb = testApp(map[string]string{envDatabaseURL: dsn})
		if code := a.run(context.Background(), []string{"import", "--from", archives}); code != exitOK {
			t.Fatalf("import %d exited %d: %s", i+1, code, errb)
		}
		want := []string{"1 of 1 archive(s) imported, 0 already present", "0 of 1 archive(s) imported, 1 already present"}[i]
		if !strings.Contains(out.String(), want) {
			t.Fatalf("import %d printed %q, want %q", i+1, out, want)
		}
	}
	pg, err := postgres.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	v, err := store.New(pg, store.Config{}).VerifyRecord(context.Background(), id)
	if err != nil || !v.OK() || v.Head != head.Hash || v.SamplesVerified != 2 {
		t.Fatalf("moved case: %v %+v", err, v)
	}

	// A tampered archive is refused and the exit code says so.
	body, _ := os.ReadFile(file)
	bad := filepath.Join(t.TempDir(), "bad"+archiveSuffix)
	os.WriteFile(bad, []byte(strings.Replace(string(body), "OR-2", "OR-9", 1)), 0o600)
	a, _, errb = testApp(map[string]string{envDataDir: t.TempDir()})
	if code := a.run(context.Background(), []string{"import", "--from", bad}); code != exitError {
		t.Fatalf("tampered import exited %d: %s", code, errb)
	}
	if !strings.Contains(errb.String(), "not imported") {
		t.Fatalf("tampered import said %q", errb)
	}
}

// TestReimportSaysAlreadyPresent: importing an archive into the embedded
// store says what it added; importing it again is a no-op and says so
// instead of "imported".
func TestReimportSaysAlreadyPresent(t *testing.T) {
	dir := t.TempDir()
	id, head := signedCaseOnDisk(t, dir)
	archives := filepath.Join(t.TempDir(), "archives")
	a, _, errb := testApp(map[string]string{envDataDir: dir})
	if code := a.run(context.Background(), []string{"export", "--to", archives}); code != exitOK {
		t.Fatalf("export exited %d: %s", code, errb)
	}
	dst := t.TempDir()
	for i, want := range []string{
		"imported " + id.String() + " from " + id.String() + archiveSuffix + ": 6 links, 1 entries, 1 sample batches (2 samples), 1 signatures\n" +
			"1 of 1 archive(s) imported, 0 already present, 0 refused\n",
		"already present " + id.String() + " from " + id.String() + archiveSuffix + ": the same record (ledger head " +
			strconv.FormatInt(head.Seq, 10) + "), nothing added\n" +
			"0 of 1 archive(s) imported, 1 already present, 0 refused\n",
	} {
		a, out, errb := testApp(map[string]string{envDataDir: dst})
		if code := a.run(context.Background(), []string{"import", "--from", archives}); code != exitOK {
			t.Fatalf("import %d exited %d: %s", i+1, code, errb)
		}
		if out.String() != want {
			t.Fatalf("import %d printed\n%s\nwant\n%s", i+1, out, want)
		}
	}
}
