package archive

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/store"
	"perfusion/store/postgres/pgtest"
	"perfusion/store/sqlite/sqlitetest"
)

// legacyNote writes, beneath the store's validation, a note holding text
// the rules now refuse — as a pilot's embedded store may hold from before
// them — with its ledger link, so the record verifies as it is.
func legacyNote(t *testing.T, b store.Backend, caseID uuid.UUID, text string, at time.Time) uuid.UUID {
	t.Helper()
	e := charting.Entry{ID: uuid.New(), CaseID: caseID, Kind: charting.EntryNote, OccurredAt: at,
		Detail: charting.EntryDetail{Note: &charting.Note{Text: text}}}
	e.Stamp(perfusionist, at, charting.DefaultLateAfter)
	err := b.ReadWrite(context.Background(), func(ctx context.Context, tx store.Tx) error {
		c, err := tx.LockCase(ctx, caseID)
		if err != nil {
			return err
		}
		if err := tx.InsertEntry(ctx, &e); err != nil {
			return err
		}
		l := charting.NextLink(caseID, c.Head, charting.LinkKindOf(&e), e.ID.String(), e.Author, "", e.RecordedAt, charting.DigestEntry(e))
		if err := tx.AppendLink(ctx, &l); err != nil {
			return err
		}
		c.Head = charting.Head{Seq: l.Seq, Hash: l.Hash}
		if c.Status == charting.StatusPlanned {
			c.Status, c.StartedAt = charting.StatusInProgress, e.RecordedAt
		}
		return tx.UpdateCaseState(ctx, c)
	})
	if err != nil {
		t.Fatalf("legacy note: %v", err)
	}
	return e.ID
}

// TestImportNamesNonconformingText: a verified archive whose note holds an
// escape character (kept by an embedded store before the text rules) is
// refused by name — case, entry, field, never the text — and nothing is
// stored; with AcceptNonconformingText it is imported exactly as archived
// and verifies.
func TestImportNamesNonconformingText(t *testing.T) {
	src := sqlitetest.Open(t)
	s, clk := newStore(src)
	id := chartCase(t, s, clk, uuid.New(), inProgress, 3)
	entry := legacyNote(t, src, id, "pump \x1b[31mstopped", clk.now())
	verifyOK(t, src, id)
	archived := exportCase(t, src, id)

	dst := sqlitetest.Open(t)
	_, err := Import(context.Background(), dst, bytes.NewReader(archived))
	var te *TextError
	if !errors.As(err, &te) || te.CaseID != id || len(te.Violations) != 1 ||
		te.Violations[0].Field != "entries["+entry.String()+"].detail.note.text" {
		t.Fatalf("import of nonconforming text: %v", err)
	}
	if strings.Contains(err.Error(), "stopped") || !strings.Contains(err.Error(), id.String()) {
		t.Fatalf("error echoes the text or omits the case: %v", err)
	}
	if _, err := dst.GetCase(context.Background(), id); !errors.Is(err, charting.ErrNotFound) {
		t.Fatalf("a refused import stored the case: %v", err)
	}
	if _, err := ImportCase(context.Background(), dst, bytes.NewReader(archived), ImportOptions{AcceptNonconformingText: true}); err != nil {
		t.Fatalf("import accepting the text: %v", err)
	}
	sameRecord(t, src, dst, id)
}

// TestImportNULIntoPostgres: a NUL, which PostgreSQL cannot hold, is
// refused there even when nonconforming text is accepted, with an error and
// not a half-written case.
func TestImportNULIntoPostgres(t *testing.T) {
	pg := pgtest.Open(t)
	src2 := sqlitetest.Open(t)
	s2, clk2 := newStore(src2)
	id2 := chartCase(t, s2, clk2, uuid.New(), inProgress, 3)
	legacyNote(t, src2, id2, "a\x00b", clk2.now())
	_, err := ImportCase(context.Background(), pg, bytes.NewReader(exportCase(t, src2, id2)), ImportOptions{AcceptNonconformingText: true})
	if err == nil {
		t.Fatal("PostgreSQL took a NUL")
	}
	if _, err := pg.GetCase(context.Background(), id2); !errors.Is(err, charting.ErrNotFound) {
		t.Fatalf("a failed import stored the case: %v", err)
	}
}
