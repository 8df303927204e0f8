package storetest

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/store"
)

// testWatchFeed checks what WatchCase reads: ReadSampleBlocks returns
// exactly the stored blocks of the keys that exist, WatchContent gives each
// ledger link its entry or samples in order and stops at the sample budget,
// and a commit wakes the case's subscribers (and only theirs).
func testWatchFeed(t *testing.T, h *Harness) {
	ctx := context.Background()
	s, b, clk := newStore(t, h)
	c := createCase(t, s, "OR-WATCH")
	other := createCase(t, s, "OR-OTHER")
	wake, stop := s.Commits().Subscribe(c.ID)
	defer stop()
	otherWake, stopOther := s.Commits().Subscribe(other.ID)
	defer stopOther()
	drain := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	drain(wake)
	drain(otherWake)

	start := clk.now().Add(-time.Hour).UnixMilli()
	batches := []*charting.SampleBatch{batch(c.ID, "hlm/1", 1, start, 5), batch(c.ID, "hlm/1", 2, start+5000, 5)}
	appendOne(t, s, batches[0])
	if !drain(wake) {
		t.Fatalf("appending samples did not wake the case's watcher")
	}
	e := record(t, s, noteEntry(c.ID, clk.now(), "note"))
	if !drain(wake) {
		t.Fatalf("recording an entry did not wake the case's watcher")
	}
	if drain(otherWake) {
		t.Fatalf("a write to one case woke another case's watcher")
	}
	appendOne(t, s, batches[1])

	keys := []store.SampleKey{{CaseID: c.ID, SourceID: "hlm/1", Seq: 1}, {CaseID: c.ID, SourceID: "hlm/1", Seq: 2},
		{CaseID: c.ID, SourceID: "hlm/1", Seq: 3}, {CaseID: uuid.New(), SourceID: "hlm/1", Seq: 1}}
	blocks, err := b.ReadSampleBlocks(ctx, keys)
	if err != nil {
		t.Fatalf("read sample blocks: %v", err)
	}
	if len(blocks) != 2 || blocks[keys[0]] == nil || blocks[keys[1]] == nil {
		t.Fatalf("read sample blocks: got keys %v, want the two stored", reflect.ValueOf(blocks).MapKeys())
	}

	got, err := b.ReadEntries(ctx, c.ID, []uuid.UUID{e.ID, uuid.New()})
	if err != nil {
		t.Fatalf("read entries: %v", err)
	}
	if len(got) != 1 || got[e.ID] == nil || got[e.ID].ID != e.ID || got[e.ID].Detail.Note == nil || got[e.ID].Detail.Note.Text != "note" {
		t.Fatalf("read entries: got %v, want the one stored entry", got)
	}
	if got, err := b.ReadEntries(ctx, other.ID, []uuid.UUID{e.ID}); err != nil || len(got) != 0 {
		t.Fatalf("read entries of another case: %v, %v; want none", got, err)
	}
	h0 := head(t, s, c.ID)
	links, err := b.Links(ctx, c.ID, 0, 0)
	if err != nil {
		t.Fatalf("links: %v", err)
	}
	items, err := s.WatchContent(ctx, c.ID, links, 1<<20)
	if err != nil {
		t.Fatalf("watch content: %v", err)
	}
	if len(items) != len(links) || items[len(items)-1].Link.Seq != h0.Seq {
		t.Fatalf("watch content: %d items ending at %d, want %d ending at %d", len(items), items[len(items)-1].Link.Seq, len(links), h0.Seq)
	}
	var gotEntries, gotBatches int
	for _, it := range items {
		switch it.Link.Kind {
		case charting.LinkEntry:
			if it.Entry == nil || it.Entry.ID != e.ID {
				t.Fatalf("entry link %d carries %v, want entry %s", it.Link.Seq, it.Entry, e.ID)
			}
			gotEntries++
		case charting.LinkSamples:
			want := batches[gotBatches]
			if it.SourceID != "hlm/1" || !reflect.DeepEqual(it.Samples, want.Series) {
				t.Fatalf("sample link %d carries %s %v, want %v", it.Link.Seq, it.SourceID, it.Samples, want.Series)
			}
			gotBatches++
		}
	}
	if gotEntries != 1 || gotBatches != 2 {
		t.Fatalf("watch content: %d entries and %d batches, want 1 and 2", gotEntries, gotBatches)
	}
	// A budget of one sample stops after the first batch.
	items, err = s.WatchContent(ctx, c.ID, links, 1)
	if err != nil {
		t.Fatalf("watch content: %v", err)
	}
	if last := items[len(items)-1]; last.Link.Kind != charting.LinkSamples || len(items) == len(links) {
		t.Fatalf("watch content with a budget of 1 sample: %d items ending with %s, want to stop at the first batch", len(items), last.Link.Kind)
	}
}
