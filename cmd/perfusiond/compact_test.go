package main

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/store"
	"perfusion/store/sqlite"
)

// TestServeCompactsRuns: the server's compactor, set by flags, copies
// complete runs of a case's batches into trend chunks while it serves.
// The batches are written by a second process-like opener of the same
// embedded store, as a device gateway's would arrive.
func TestServeCompactsRuns(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	env := map[string]string{envDataDir: dir, envListen: "127.0.0.1:0"}
	srv := startServe(t, env, "--compact-interval", "50ms", "--compact-run-batches", "4")
	id := uuid.MustParse(createCase(t, srv.addr, dir))

	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(dir, dbFileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st := store.New(db, store.Config{})
	start := time.Now().Add(-time.Hour).UnixMilli()
	for seq := int64(1); seq <= 10; seq++ {
		sr := charting.Series{Channel: "pump_flow", TimesMs: []int64{start + seq*1000}, Values: []float64{4.2}}
		res := st.AppendSamples(ctx, "gateway-1", []*charting.SampleBatch{{CaseID: id, SourceID: "hlm", Seq: seq, Series: []charting.Series{sr}}})
		if res[0].Err != nil {
			t.Fatal(res[0].Err)
		}
	}
	// 1–4 and 5–8 are complete runs; 9–10 wait for more or for the close.
	deadline := time.Now().Add(20 * time.Second)
	for {
		var ends []int64
		err := db.ScanSampleChunks(ctx, id, store.ChunkFilter{Channels: []string{}}, func(r *store.SampleChunkRow) error {
			ends = append(ends, r.SeqTo)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(ends) == 2 && ends[0] == 4 && ends[1] == 8 {
			break
		}
		if len(ends) > 2 || time.Now().After(deadline) {
			t.Fatalf("runs end at %v, want [4 8]\n%s", ends, srv.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
