package sqlite_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"perfusion/charting"
	"perfusion/store"
	"perfusion/store/sqlite/sqlitetest"
)

// TestRefusalClassified: SQLite's refusals of the data written become
// store.RefusedError with a fixed reason naming the kind and SQLite's
// code; a key violation stays store.ErrDuplicate.
func TestRefusalClassified(t *testing.T) {
	b := sqlitetest.Open(t)
	ctx := context.Background()
	s := store.New(b, store.Config{})
	c, err := s.CreateCase(ctx, "pf", store.NewCase{Kind: charting.KindCPB, Site: "MAIN", Room: "OR-1", ScheduledStart: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	insert := func(r *store.SampleBatchRow) error {
		return b.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error {
			return tx.InsertSampleBatches(ctx, []*store.SampleBatchRow{r})
		})
	}
	ok := &store.SampleBatchRow{CaseID: c.ID, SourceID: "hlm", Seq: 1, RecordedAt: time.Now(), Actor: "gw", MinTimeMs: 1, MaxTimeMs: 2, SampleCount: 1, Block: []byte{1}}
	noBlock := *ok
	noBlock.Block = nil // NOT NULL
	err = insert(&noBlock)
	var re *store.RefusedError
	if !errors.As(err, &re) || !strings.Contains(re.Reason, "1299") {
		t.Errorf("NOT NULL violation: %v, want a store.RefusedError naming SQLITE_CONSTRAINT_NOTNULL (1299)", err)
	}
	if err := insert(ok); err != nil {
		t.Fatal(err)
	}
	if err := insert(ok); !errors.Is(err, store.ErrDuplicate) || store.IsRefused(err) {
		t.Errorf("duplicate key: %v, want store.ErrDuplicate", err)
	}
}
