package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"perfusion/charting"
)

// RecordEntry records an operator entry, idempotent on its id. Correction
// fields are ignored: corrections go through CorrectEntry.
func (s *Store) RecordEntry(ctx context.Context, actor string, e charting.Entry) (*charting.Entry, bool, error) {
	e.Supersedes, e.Reason, e.Void = uuid.Nil, "", false
	if e.Detail.Addendum != nil {
		return nil, false, &charting.InvalidError{Violations: []charting.FieldViolation{{Field: "entry.addendum", Description: "addenda are added with AddAddendum"}}}
	}
	if err := charting.ValidateEntry(s.cat, &e, s.now()); err != nil {
		return nil, false, err
	}
	e.Stamp(actor, s.now(), s.lateAfter)
	return s.writeEntry(ctx, &e, func(*charting.Case, Tx) error { return nil })
}

// Correction supersedes an entry.
type Correction struct {
	CaseID     uuid.UUID
	EntryID    uuid.UUID // client-made id of the correction entry
	Supersedes uuid.UUID
	Reason     string
	// Replacement carries the new detail and occurred-at; nil voids the
	// superseded entry.
	Replacement *charting.Entry
}

func (c *Correction) entry() (charting.Entry, charting.Violations) {
	var v charting.Violations
	if c.Supersedes == uuid.Nil {
		v.Add("supersedes_entry_id", "required")
	}
	if c.Reason == "" || len(c.Reason) > 1000 {
		v.Add("reason", "required, at most 1000 characters")
	}
	e := charting.Entry{ID: c.EntryID, CaseID: c.CaseID, Supersedes: c.Supersedes, Reason: c.Reason}
	if c.Replacement == nil {
		e.Void = true
	} else {
		e.OccurredAt, e.Detail = c.Replacement.OccurredAt, c.Replacement.Detail
	}
	return e, v
}

// CorrectEntry supersedes an entry with a replacement of the same kind, or
// voids it. Allowed until the case is signed (a closed case is corrected
// during review); the superseded entry must be current.
func (s *Store) CorrectEntry(ctx context.Context, actor string, c Correction) (*charting.Entry, bool, error) {
	e, v := c.entry()
	if e.Void {
		e.OccurredAt = s.now() // placeholder for validation; replaced by the target's time below
	}
	if err := charting.ValidateEntry(s.cat, &e, s.now()); err != nil {
		var inv *charting.InvalidError
		errors.As(err, &inv)
		v = append(v, inv.Violations...)
	}
	if e.Detail.Addendum != nil {
		v.Add("replacement.addendum", "addenda cannot be corrected; add another addendum")
	}
	if err := v.Err(); err != nil {
		return nil, false, err
	}
	e.Stamp(actor, s.now(), s.lateAfter)
	return s.writeEntry(ctx, &e, func(cs *charting.Case, tx Tx) error {
		target, err := tx.GetEntry(ctx, e.CaseID, e.Supersedes)
		if errors.Is(err, charting.ErrNotFound) {
			return charting.Preconditionf("the entry to correct does not exist in this case")
		} else if err != nil {
			return err
		}
		if target.Void || target.Kind == charting.EntryAddendum {
			return charting.Preconditionf("a void or an addendum cannot be corrected")
		}
		if by, err := tx.SupersededBy(ctx, e.CaseID, e.Supersedes); err != nil {
			return err
		} else if by != uuid.Nil {
			return charting.Preconditionf("the entry was already corrected; correct the current version")
		}
		if e.Void {
			e.Kind, e.OccurredAt = target.Kind, target.OccurredAt
			e.Late = false
		} else if e.Kind != target.Kind {
			return &charting.InvalidError{Violations: []charting.FieldViolation{{Field: "replacement", Description: fmt.Sprintf("must be a %s like the entry it corrects", target.Kind)}}}
		}
		return nil
	})
}

// AddAddendum appends an addendum to a signed case.
func (s *Store) AddAddendum(ctx context.Context, actor string, caseID, addendumID uuid.UUID, text, reason string) (*charting.Entry, bool, error) {
	e := charting.Entry{ID: addendumID, CaseID: caseID, OccurredAt: s.now(), Detail: charting.EntryDetail{Addendum: &charting.Addendum{Text: text, Reason: reason}}}
	if err := charting.ValidateEntry(s.cat, &e, s.now()); err != nil {
		return nil, false, err
	}
	e.Stamp(actor, s.now(), s.lateAfter)
	return s.writeEntry(ctx, &e, nil)
}

// writeEntry stores e idempotently. check runs under the case lock after the
// duplicate check; nil check means e is an addendum, which has its own
// lifecycle rule.
func (s *Store) writeEntry(ctx context.Context, e *charting.Entry, check func(*charting.Case, Tx) error) (*charting.Entry, bool, error) {
	var stored *charting.Entry
	var after *charting.Case
	dup := false
	err := s.readWrite(ctx, []uuid.UUID{e.CaseID}, func(ctx context.Context, tx Tx) error {
		stored, dup, after = nil, false, nil
		c, err := tx.LockCase(ctx, e.CaseID)
		if err != nil {
			return err
		}
		if prev, err := tx.GetEntry(ctx, e.CaseID, e.ID); err == nil {
			cmp := *e
			if cmp.Void { // a void takes its kind and time from its target
				cmp.Kind, cmp.OccurredAt = prev.Kind, prev.OccurredAt
			}
			if !charting.SameContent(prev, &cmp) {
				return charting.ErrConflict
			}
			stored, dup = prev, true
			return nil
		} else if !errors.Is(err, charting.ErrNotFound) {
			return err
		}
		if err := s.entryAllowed(c, e, tx, check); err != nil {
			return err
		}
		if err := tx.InsertEntry(ctx, e); err != nil {
			return err
		}
		reason := e.Reason
		if a := e.Detail.Addendum; a != nil {
			reason = a.Reason // the audit trail shows why an addendum was needed
		}
		if err := appendLink(ctx, tx, c, charting.LinkKindOf(e), e.ID.String(), e.Author, reason, e.RecordedAt, charting.DigestEntry(*e)); err != nil {
			return err
		}
		if e.Kind != charting.EntryAddendum {
			markStarted(c, e.RecordedAt)
		} else if err := s.enqueueExports(ctx, tx, c.ID, c.Head.Seq, e.RecordedAt); err != nil {
			return err // an addendum is a new version of a signed record
		}
		stored, after = e, c
		return tx.UpdateCaseState(ctx, c)
	})
	if errors.Is(err, ErrDuplicate) {
		// A concurrent writer stored the same id, or corrected the same
		// entry, first; the lock makes this rare. Report it plainly.
		err = charting.Preconditionf("a concurrent write to the same entry won; reload and retry")
	}
	if err != nil {
		return nil, false, fmt.Errorf("record entry: %w", err)
	}
	s.afterRecordChange(ctx, after) // a correction or addendum on a closed or signed case
	return stored, dup, nil
}

func (s *Store) entryAllowed(c *charting.Case, e *charting.Entry, tx Tx, check func(*charting.Case, Tx) error) error {
	switch {
	case check == nil:
		return c.CanAddAddendum()
	case e.Supersedes != uuid.Nil:
		if c.Status == charting.StatusSigned {
			return charting.Preconditionf("case is signed: corrections are closed; add an addendum")
		}
	default:
		if err := c.CanChart(); err != nil {
			return err
		}
	}
	if !e.Void { // a void takes its target's time, checked when it was recorded
		prefix := "entry."
		if e.Supersedes != uuid.Nil {
			prefix = "replacement."
		}
		if err := charting.CheckEntryTimes(c, e, s.clock(), prefix); err != nil {
			return err
		}
	}
	return check(c, tx)
}

// ListEntries returns the current view of a case's entries, or the whole
// history.
func (s *Store) ListEntries(ctx context.Context, caseID uuid.UUID, history bool) ([]charting.Entry, error) {
	if _, err := s.b.GetCase(ctx, caseID); err != nil {
		return nil, fmt.Errorf("list entries: %w", err)
	}
	all, err := s.b.Entries(ctx, caseID)
	if err != nil {
		return nil, fmt.Errorf("list entries: %w", err)
	}
	return charting.CurrentView(all, history), nil
}
