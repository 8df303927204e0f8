package failover

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "perfusion/api/perfusion/v1"
	"perfusion/clients/perfusion"
)

// pgServer is a plain PostgreSQL server (no Patroni) run with pg_ctl.
type pgServer struct {
	t       *testing.T
	tl      tools
	u       osUser
	dataDir string
	port    int
}

func (s *pgServer) dsn(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable&connect_timeout=5", s.port, db)
}

func (s *pgServer) pgctl(args ...string) {
	s.t.Helper()
	if _, err := runAs(s.u, filepath.Dir(s.dataDir), nil, filepath.Join(s.tl.pgBin, "pg_ctl"), append([]string{"-D", s.dataDir}, args...)...); err != nil {
		s.t.Fatal(err)
	}
}

func (s *pgServer) start() {
	s.t.Helper()
	s.pgctl("-l", s.dataDir+".log", "-w", "-t", "120", "start")
	s.t.Cleanup(func() {
		_, _ = runAs(s.u, filepath.Dir(s.dataDir), nil, filepath.Join(s.tl.pgBin, "pg_ctl"), "-D", s.dataDir, "-m", "immediate", "stop")
		if s.t.Failed() {
			s.t.Logf("--- end of %s's log:\n%s", filepath.Base(s.dataDir), tail(s.dataDir+".log", 3000))
		}
	})
}

// appendConf adds settings to the server's postgresql.auto.conf.
func (s *pgServer) appendConf(lines string) {
	s.t.Helper()
	f, err := os.OpenFile(filepath.Join(s.dataDir, "postgresql.auto.conf"), os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(lines); err != nil {
		s.t.Fatal(err)
	}
}

// TestRestoreDrill is the deployment guide's restore drill: a primary
// archives its WAL; a base backup is taken while cases are charted; more
// is charted, a named restore point is set, and more still after it. Then
// the primary is lost. Its backup is restored into a new data directory
// and recovered from the archive to the restore point; perfusiond starts
// on it, every case verifies (VerifyRecord), and the record holds exactly
// what was committed before the restore point: nothing after it, nothing
// missing before it.
func TestRestoreDrill(t *testing.T) {
	if testing.Short() {
		t.Skip("TestRestoreDrill: starts PostgreSQL servers; skipped in -short")
	}
	tl := needTools(t, "postgres")
	bin := buildPerfusiond(t)
	u := dbUser(t)
	dir := workDir(t, u, "perfusion-restore-")
	archive := mkdirOwned(t, u, filepath.Join(dir, "wal-archive"))
	ctx := context.Background()

	// The primary, archiving every WAL segment it completes.
	prim := &pgServer{t: t, tl: tl, u: u, dataDir: filepath.Join(dir, "primary"), port: freePort(t)}
	if _, err := runAs(u, dir, nil, filepath.Join(tl.pgBin, "initdb"), "-D", prim.dataDir, "-U", "postgres",
		"--auth=trust", "--encoding=UTF8", "--locale=C", "--data-checksums"); err != nil {
		t.Fatal(err)
	}
	prim.appendConf(fmt.Sprintf(`
port = %d
listen_addresses = '127.0.0.1'
unix_socket_directories = '%s'
wal_level = replica
archive_mode = on
archive_command = 'test ! -f %s/%%f && cp %%p %s/%%f.part && mv %s/%%f.part %s/%%f'
archive_timeout = 60
`, prim.port, dir, archive, archive, archive, archive))
	prim.start()
	if err := execSQL(ctx, prim.dsn("postgres"), "CREATE DATABASE perfusion"); err != nil {
		t.Fatal(err)
	}
	logDir := t.TempDir()
	srv := startServer(t, bin, logDir, "perfusiond-primary", prim.dsn("perfusion"))
	c, err := perfusion.Dial(ctx, srv.addr, perfusion.WithPrincipal(drillPrincipal), perfusion.WithBackoff(50*time.Millisecond, time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	spool := t.TempDir()

	// chart creates a case with device data and entries.
	chart := func(room string, entries int) string {
		t.Helper()
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		resp, err := c.CreateCase(cctx, &pb.CreateCaseRequest{CaseId: uuid.NewString(), Kind: pb.CaseKind_CASE_KIND_CPB,
			Site: "MAIN", Room: room, ScheduledStart: timestamppb.Now()})
		if err != nil {
			t.Fatal(err)
		}
		id := resp.Case.CaseId
		s, err := perfusion.OpenSampleStreamer(cctx, c, id, "hlm-1", filepath.Join(spool, id), perfusion.StreamerOptions{FlushInterval: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		for i := int64(0); i < 120; i++ {
			if err := s.Send(cctx, &pb.SampleSeries{Channel: "pump_flow", OccurredAtUnixMs: []int64{base + i*1000}, Values: []float64{4.2}}); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Close(cctx); err != nil {
			t.Fatal(err)
		}
		addEntries(t, c, id, entries)
		return id
	}

	before := chart("OR-1", 5) // charted before the base backup
	if _, err := runAs(u, dir, nil, filepath.Join(tl.pgBin, "pg_basebackup"), "-h", "127.0.0.1", "-p", fmt.Sprint(prim.port),
		"-U", "postgres", "-D", filepath.Join(dir, "base"), "--checkpoint=fast", "--wal-method=stream"); err != nil {
		t.Fatal(err)
	}
	during := chart("OR-2", 3) // after the backup: only in the archived WAL
	addEntries(t, c, before, 2)
	var lsn string
	if err := queryRow(ctx, prim.dsn("perfusion"), "SELECT pg_create_restore_point('before-the-loss')::text", &lsn); err != nil {
		t.Fatal(err)
	}
	after := chart("OR-3", 1) // after the restore point: must not come back
	addEntries(t, c, before, 1)
	var seg string
	if err := queryRow(ctx, prim.dsn("perfusion"), "SELECT pg_walfile_name(pg_switch_wal())", &seg); err != nil {
		t.Fatal(err)
	}
	// The archive command copies under a temporary name and renames, so
	// the segment's name appears only once the copy is complete; and
	// PostgreSQL must have counted it archived before the primary dies.
	if err := waitFor(ctx, 100*time.Millisecond, func() error {
		if _, err := os.Stat(filepath.Join(archive, seg)); err != nil {
			return err
		}
		var last string
		if err := queryRow(ctx, prim.dsn("perfusion"), "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver", &last); err != nil {
			return err
		}
		if last < seg {
			return fmt.Errorf("archiver at %q, waiting for %q", last, seg)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{before: 7, during: 3} // entries each case had at the restore point

	// The primary is lost.
	srv.proc.kill()
	if _, err := runAs(u, dir, nil, filepath.Join(tl.pgBin, "pg_ctl"), "-D", prim.dataDir, "-m", "immediate", "stop"); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(prim.dataDir); err != nil {
		t.Fatal(err)
	}

	// Restore: the base backup into a new data directory, recovered from
	// the archive up to the restore point, then promoted.
	rest := &pgServer{t: t, tl: tl, u: u, dataDir: filepath.Join(dir, "restored"), port: freePort(t)}
	if err := os.Rename(filepath.Join(dir, "base"), rest.dataDir); err != nil {
		t.Fatal(err)
	}
	writeOwned(t, u, filepath.Join(rest.dataDir, "recovery.signal"), nil)
	rest.appendConf(fmt.Sprintf(`
port = %d
archive_mode = off
restore_command = 'cp %s/%%f %%p'
recovery_target_name = 'before-the-loss'
recovery_target_action = 'promote'
`, rest.port, archive))
	rest.start()
	if err := waitFor(ctx, 100*time.Millisecond, func() error {
		var rec bool
		if err := queryRow(ctx, rest.dsn("postgres"), "SELECT pg_is_in_recovery()", &rec); err != nil {
			return err
		}
		if rec {
			return fmt.Errorf("still recovering")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	srv2 := startServer(t, bin, logDir, "perfusiond-restored", rest.dsn("perfusion"))
	c2, err := perfusion.Dial(ctx, srv2.addr, perfusion.WithPrincipal(drillPrincipal))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	lctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	list, err := c2.ListCases(lctx, &pb.ListCasesRequest{PageSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, cs := range list.GetCases() {
		got[cs.GetCaseId()] = true
	}
	if !got[before] || !got[during] || got[after] || len(got) != 2 {
		t.Fatalf("restored cases %v: want exactly the two charted before the restore point (%s, %s), not %s", got, before, during, after)
	}
	for id, n := range want {
		es, err := c2.ListEntries(lctx, &pb.ListEntriesRequest{CaseId: id})
		if err != nil {
			t.Fatal(err)
		}
		if len(es.GetEntries()) != n {
			t.Errorf("case %s: %d entries restored, want the %d recorded before the restore point", id, len(es.GetEntries()), n)
		}
		v, err := c2.VerifyRecord(lctx, &pb.VerifyRecordRequest{CaseId: id})
		if err != nil {
			t.Fatal(err)
		}
		if !v.Ok || v.SamplesVerified != 120 {
			t.Errorf("case %s after the restore: %v", id, v)
		}
		t.Logf("restored case %s: VerifyRecord OK, %d links, %d entries, %d samples", id, v.LinksVerified, v.EntriesVerified, v.SamplesVerified)
	}
}

// addEntries charts n notes on a case.
func addEntries(t *testing.T, c *perfusion.Client, caseID string, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_, err := c.RecordEntry(ctx, &pb.RecordEntryRequest{Entry: &pb.Entry{CaseId: caseID, OccurredAt: timestamppb.Now(),
			Detail: &pb.Entry_Note{Note: &pb.Note{Text: fmt.Sprintf("restore drill note %d", i)}}}})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
}
