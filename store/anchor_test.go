package store_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/store"
	"perfusion/store/checkpoint"
	"perfusion/store/sqlite/sqlitetest"
)

// heads records what was anchored.
type heads struct {
	mu  sync.Mutex
	got map[uuid.UUID][]int64
}

func (h *heads) Anchor(_ context.Context, id uuid.UUID, head charting.Head, _ time.Time) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.got[id] = append(h.got[id], head.Seq)
	return nil
}

func (h *heads) Checkpoints(context.Context, uuid.UUID) ([]checkpoint.Checkpoint, error) {
	return nil, nil
}

// TestAnchorOpenCases: a pass checkpoints the head of every open case that
// moved since the last pass, and nothing else; a closed case is left to
// the checkpoint of its close.
func TestAnchorOpenCases(t *testing.T) {
	ctx := context.Background()
	h := &heads{got: map[uuid.UUID][]int64{}}
	s := store.New(sqlitetest.Open(t), store.Config{Anchor: h})
	var ids []uuid.UUID
	for _, room := range []string{"OR-1", "OR-2", "OR-3"} {
		c, err := s.CreateCase(ctx, "p", store.NewCase{Kind: charting.KindCPB, Site: "MAIN", Room: room, ScheduledStart: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c.ID)
	}
	note := func(id uuid.UUID) {
		e := charting.Entry{ID: uuid.New(), CaseID: id, OccurredAt: time.Now(), Detail: charting.EntryDetail{Note: &charting.Note{Text: "n"}}}
		if _, _, err := s.RecordEntry(ctx, "p", e); err != nil {
			t.Fatal(err)
		}
	}
	note(ids[0])
	if _, err := s.CloseCase(ctx, "p", ids[2]); err != nil {
		t.Fatal(err)
	}
	h.got = map[uuid.UUID][]int64{} // the close's own checkpoint is not this pass's
	last := map[uuid.UUID]int64{}
	if n, err := s.AnchorOpenCases(ctx, last); err != nil || n != 2 {
		t.Fatalf("first pass: %d anchored, %v; want the 2 open cases", n, err)
	}
	if len(h.got[ids[0]]) != 1 || h.got[ids[0]][0] != 3 || len(h.got[ids[1]]) != 1 || h.got[ids[1]][0] != 2 || h.got[ids[2]] != nil {
		t.Fatalf("anchored %v", h.got)
	}
	if n, _ := s.AnchorOpenCases(ctx, last); n != 0 {
		t.Fatalf("a pass with nothing moved anchored %d", n)
	}
	note(ids[1])
	if n, _ := s.AnchorOpenCases(ctx, last); n != 1 || h.got[ids[1]][1] != 3 {
		t.Fatalf("after a write: %d anchored, %v", n, h.got)
	}
}
