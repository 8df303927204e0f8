package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/store"
	"perfusion/store/postgres"
	"perfusion/store/postgres/pgtest"
)

// TestSealCrashSafety runs the real server with its background sealer over
// closed cases and kills it with SIGKILL while a sealing transaction is in
// the database (watched for in pg_stat_activity), again and again, then lets
// it finish. After every kill each case is in its old form (batch rows, no
// sealed rows) or its new one (sealed rows, no batch rows), never neither
// nor both, no sealing flag survives, and every case verifies; at the end
// every case is sealed.
func TestSealCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("TestSealCrashSafety: builds and kills the server; skipped in -short")
	}
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	db, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	st := store.New(db, store.Config{})
	const cases, batches, channels = 8, 1200, 20
	chans := charting.DefaultCatalogue().Channels()[:channels]
	var ids []uuid.UUID
	for i := range cases {
		c, err := st.CreateCase(ctx, "perfusionist", store.NewCase{Kind: charting.KindCPB, Site: "MAIN", Room: fmt.Sprintf("OR-%d", i), ScheduledStart: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c.ID)
	}
	start := time.Now().Add(-time.Duration(batches+10) * time.Second).UnixMilli()
	for seq := int64(1); seq <= batches; seq += 50 {
		var group []*charting.SampleBatch
		for _, id := range ids {
			for q := seq; q < seq+50 && q <= batches; q++ {
				b := &charting.SampleBatch{CaseID: id, SourceID: "hlm", Seq: q}
				for k, ch := range chans {
					v := float64(30 + (int(q)+k)%10)
					if ch.Resolution < 1 {
						v = float64(int(v)%10) + 0.25
					}
					b.Series = append(b.Series, charting.Series{Channel: ch.Key, TimesMs: []int64{start + q*1000}, Values: []float64{v}})
				}
				group = append(group, b)
			}
		}
		for _, r := range st.AppendSamples(ctx, "gateway-1", group) {
			if r.Err != nil {
				t.Fatal(r.Err)
			}
		}
	}
	for _, id := range ids {
		if _, err := st.CloseCase(ctx, "perfusionist", id); err != nil {
			t.Fatal(err)
		}
	}

	addr := freeAddr(t)
	d := &daemon{t: t, bin: buildDaemon(t), args: []string{"--listen", addr, "--http-listen", "127.0.0.1:0", "--database-url", dsn,
		"--dev-header-auth", "--data-dir", t.TempDir(), "--seal-interval", "20ms", "--seal-after", "0s", "--compact-interval", "0"}}
	t.Cleanup(d.kill)

	// form reports each case's form, failing on a case in neither or both.
	form := func() (sealed int) {
		t.Helper()
		var flags int
		if err := db.Pool().QueryRow(ctx, `SELECT count(*) FROM sealed_cases WHERE sealing`).Scan(&flags); err != nil || flags != 0 {
			t.Fatalf("%d sealing flags outlived their transaction (%v)", flags, err)
		}
		for _, id := range ids {
			var rows, links, segs, marks int
			err := db.Pool().QueryRow(ctx, `SELECT
				(SELECT count(*) FROM sample_batches WHERE case_id = $1),
				(SELECT count(*) FROM ledger WHERE case_id = $1 AND kind = 'samples'),
				(SELECT count(*) FROM sealed_segments WHERE case_id = $1),
				(SELECT count(*) FROM sealed_cases WHERE case_id = $1)`, id).Scan(&rows, &links, &segs, &marks)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case rows == batches && links == batches && segs == 0 && marks == 0:
			case rows == 0 && links == 0 && segs > 0 && marks == 1:
				sealed++
			default:
				t.Fatalf("case %s in neither form: %d batch rows, %d sample links, %d sealed rows, %d seal marks", id, rows, links, segs, marks)
			}
			v, err := st.VerifyRecord(ctx, id)
			if err != nil || !v.OK() || v.SamplesVerified != batches*channels {
				t.Fatalf("case %s after a kill: %+v %v", id, v, err)
			}
		}
		return sealed
	}

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 11))
	midSeal := 0
	for kill := 0; kill < 12; kill++ {
		if form() == cases {
			break
		}
		d.start()
		// Kill while a sealing transaction is open in the database, or
		// after a while if none is seen.
		deadline := time.Now().Add(10 * time.Second)
		delay := time.Duration(rng.IntN(30)) * time.Millisecond
		for time.Now().Before(deadline) {
			var n int
			err := db.Pool().QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
				WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL
				  AND (query LIKE 'INSERT INTO sealed_cases%' OR query LIKE 'COPY%sealed_segments%' OR query LIKE '%perfusion_seal_case%')`).Scan(&n)
			if err != nil {
				t.Fatal(err)
			}
			if n > 0 {
				time.Sleep(delay)
				midSeal++
				break
			}
			time.Sleep(time.Millisecond)
		}
		d.kill()
	}
	before := form()
	t.Logf("%d SIGKILLs with a sealing transaction open; %d of %d cases sealed before the last run", midSeal, before, cases)
	if midSeal < 3 {
		t.Fatalf("only %d kills landed while a sealing transaction was open", midSeal)
	}
	d.start()
	deadline := time.Now().Add(2 * time.Minute)
	for form() < cases {
		if time.Now().After(deadline) {
			t.Fatalf("the sealer did not finish: %d of %d cases sealed", form(), cases)
		}
		time.Sleep(200 * time.Millisecond)
	}
	d.kill()
	if n := form(); n != cases {
		t.Fatalf("%d of %d sealed", n, cases)
	}
}
