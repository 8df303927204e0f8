package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/store"
)

func newAccess(t *testing.T, h *Harness) (*store.Store, store.Backend, store.AccessBackend) {
	t.Helper()
	b := h.Open(t)
	a, err := store.AccessOf(b)
	if err != nil {
		t.Fatal(err)
	}
	return store.New(b, store.Config{}), b, a
}

// testAccessEvents: events are stored as given, listed newest first,
// filtered by time, principal, case and refusal, and paged without gaps or
// repeats; the database refuses to change or delete them.
func testAccessEvents(t *testing.T, h *Harness) {
	s, b, a := newAccess(t, h)
	ctx := context.Background()
	c := createCase(t, s, "OR-1")
	base := time.Now().UTC().Truncate(time.Second)
	var all []store.AccessEvent
	for i := range 7 {
		e := store.AccessEvent{ID: uuid.New(), At: base.Add(time.Duration(i) * time.Minute), Principal: []string{"alice", "bob"}[i%2],
			Roles: "perfusionist", Via: "jwt", Method: "/perfusion.v1.CaseService/GetCase", Code: "OK", ClientAddr: "127.0.0.1:5000"}
		if i%3 == 0 {
			e.CaseID = c.ID
		}
		if i == 4 {
			e.Code, e.Reason = "PermissionDenied", "site"
		}
		all = append(all, e)
	}
	if err := a.AppendAccessEvents(ctx, all[:3]); err != nil {
		t.Fatal(err)
	}
	if err := a.AppendAccessEvents(ctx, all[3:]); err != nil {
		t.Fatal(err)
	}
	got, err := a.ListAccessEvents(ctx, store.AccessFilter{Desc: true, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 7 || got[0].ID != all[6].ID || got[6].ID != all[0].ID {
		t.Fatalf("listed %d events, newest first expected", len(got))
	}
	if g := got[6]; g.ID != all[0].ID || !g.At.Equal(all[0].At) || g.Principal != all[0].Principal || g.Roles != all[0].Roles ||
		g.Via != all[0].Via || g.Method != all[0].Method || g.CaseID != all[0].CaseID || g.Code != all[0].Code ||
		g.ClientAddr != all[0].ClientAddr || g.Site != "MAIN" || g.Seq != 1 || g.PrevHash != store.AccessGenesis("MAIN") {
		t.Fatalf("stored %+v, read %+v (want site MAIN, the first link)", all[0], g)
	}
	count := func(f store.AccessFilter) int {
		t.Helper()
		f.Limit = 100
		es, err := a.ListAccessEvents(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		return len(es)
	}
	if n := count(store.AccessFilter{Principal: "alice"}); n != 4 {
		t.Errorf("alice: %d events, want 4", n)
	}
	if n := count(store.AccessFilter{CaseID: c.ID}); n != 3 {
		t.Errorf("case: %d events, want 3", n)
	}
	if n := count(store.AccessFilter{From: base.Add(2 * time.Minute), To: base.Add(5 * time.Minute)}); n != 3 {
		t.Errorf("time range: %d events, want 3", n)
	}
	if n := count(store.AccessFilter{DeniedOnly: true}); n != 1 {
		t.Errorf("denied: %d events, want 1", n)
	}
	var paged []store.AccessEvent
	f := store.AccessFilter{Desc: true, Limit: 3}
	for {
		page, err := a.ListAccessEvents(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		paged = append(paged, page...)
		if len(page) < 3 {
			break
		}
		last := page[len(page)-1]
		f.After = &store.AccessCursor{At: last.At, ID: last.ID}
	}
	if len(paged) != 7 {
		t.Fatalf("paging returned %d events, want 7", len(paged))
	}
	for _, q := range []string{`UPDATE access_events SET code = 'OK' WHERE event_id = $1`, `DELETE FROM access_events WHERE event_id = $1`} {
		if err := h.Exec(t, b, q, all[4].ID.String()); err == nil {
			t.Errorf("the database accepted %q", q)
		}
	}
	if n := count(store.AccessFilter{DeniedOnly: true}); n != 1 {
		t.Errorf("after refused statements, denied: %d events, want 1", n)
	}
}

// testBreakGlass: a grant is active until it ends or expires; ending marks
// the holder's grant "ended" and every expired one "expired", once; the
// grant itself cannot be rewritten.
func testBreakGlass(t *testing.T, h *Harness) {
	s, b, a := newAccess(t, h)
	ctx := context.Background()
	c1, c2 := createCase(t, s, "OR-1"), createCase(t, s, "OR-2")
	now := time.Now().UTC().Truncate(time.Second)
	g1 := store.BreakGlassGrant{ID: uuid.New(), Principal: "er-doc", CaseID: c1.ID, Site: c1.Site, Reason: "cardiac arrest in ED", StartedAt: now, ExpiresAt: now.Add(time.Hour)}
	g2 := store.BreakGlassGrant{ID: uuid.New(), Principal: "er-doc", CaseID: c2.ID, Site: c2.Site, Reason: "transfer", StartedAt: now, ExpiresAt: now.Add(10 * time.Minute)}
	for _, g := range []store.BreakGlassGrant{g1, g2} {
		if err := a.InsertBreakGlass(ctx, g); err != nil {
			t.Fatal(err)
		}
	}
	got, err := a.ActiveBreakGlass(ctx, "er-doc", c1.ID, now.Add(time.Minute))
	if err != nil || *got != g1 {
		t.Fatalf("active grant: %+v, %v", got, err)
	}
	if _, err := a.ActiveBreakGlass(ctx, "someone-else", c1.ID, now); !errors.Is(err, charting.ErrNotFound) {
		t.Fatalf("another principal's grant: %v", err)
	}
	if _, err := a.ActiveBreakGlass(ctx, "er-doc", c2.ID, now.Add(11*time.Minute)); !errors.Is(err, charting.ErrNotFound) {
		t.Fatalf("expired grant still active: %v", err)
	}
	// At +11 min: g2 has expired; nobody ends anything.
	ended, err := a.EndBreakGlass(ctx, uuid.Nil, "", now.Add(11*time.Minute))
	if err != nil || len(ended) != 1 || ended[0].ID != g2.ID || ended[0].EndReason != "expired" || !ended[0].EndedAt.Equal(g2.ExpiresAt) {
		t.Fatalf("expiry sweep: %+v, %v", ended, err)
	}
	// Only the holder may end its grant.
	if ended, err := a.EndBreakGlass(ctx, g1.ID, "intruder", now.Add(12*time.Minute)); err != nil || len(ended) != 0 {
		t.Fatalf("a stranger ended a grant: %+v, %v", ended, err)
	}
	ended, err = a.EndBreakGlass(ctx, g1.ID, "er-doc", now.Add(12*time.Minute))
	if err != nil || len(ended) != 1 || ended[0].EndReason != "ended" {
		t.Fatalf("end: %+v, %v", ended, err)
	}
	if again, err := a.EndBreakGlass(ctx, g1.ID, "er-doc", now.Add(13*time.Minute)); err != nil || len(again) != 0 {
		t.Fatalf("a grant was ended twice: %+v, %v", again, err)
	}
	list, err := a.ListBreakGlass(ctx, store.BreakGlassFilter{Principal: "er-doc", Limit: 10})
	if err != nil || len(list) != 2 {
		t.Fatalf("list: %d grants, %v", len(list), err)
	}
	for _, q := range []string{`UPDATE break_glass_grants SET reason = 'x' WHERE grant_id = $1`, `UPDATE break_glass_grants SET ended_at = NULL WHERE grant_id = $1`,
		`DELETE FROM break_glass_grants WHERE grant_id = $1`} {
		if err := h.Exec(t, b, q, g1.ID.String()); err == nil {
			t.Errorf("the database accepted %q", q)
		}
	}
}
