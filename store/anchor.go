package store

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/store/checkpoint"
)

// Anchor keeps signed checkpoints of ledger heads outside the database
// (store/checkpoint.Log): a chain whose tail was cut or rewritten in the
// database no longer holds a head it anchored.
type Anchor interface {
	// Anchor records that the case's ledger had head at a time.
	Anchor(ctx context.Context, caseID uuid.UUID, head charting.Head, at time.Time) error
	// Checkpoints returns the case's checkpoints, each signature checked.
	Checkpoints(ctx context.Context, caseID uuid.UUID) ([]checkpoint.Checkpoint, error)
}

// anchorHead checkpoints a case's head after a write committed. It cannot
// undo the write, so a failure is logged as an error (the operator must
// restore the checkpoint log's volume); the next write to the case anchors
// the head again, which covers every link before it.
func (s *Store) anchorHead(ctx context.Context, c *charting.Case) {
	if s.anchor == nil {
		return
	}
	if err := s.anchor.Anchor(ctx, c.ID, c.Head, s.clock()); err != nil {
		s.log.ErrorContext(ctx, "ledger head not checkpointed", "case_id", c.ID, "seq", c.Head.Seq, "err", err)
	}
}

// VerifyOption changes what VerifyRecord checks.
type VerifyOption func(*verifyOptions)

type verifyOptions struct {
	againstCheckpoints bool
}

// AgainstCheckpoints also checks the chain against the checkpoints the
// store's Anchor holds for the case: every anchored link must still be on
// the chain with its anchored hash (checkpoint.ProblemAnchorMismatch when
// not). Without an Anchor, VerifyRecord fails with a precondition error.
func AgainstCheckpoints() VerifyOption {
	return func(o *verifyOptions) { o.againstCheckpoints = true }
}

// AnchorOpenCases checkpoints the head of every case still being charted
// (planned or in progress) whose head moved since last recorded it, so a
// tail cut from an open case is detected too, not only after its close or
// signature. last maps case ids to the sequence anchored; the caller keeps
// it between passes (a fresh map after a restart anchors every open case
// once more, which is harmless). It returns how many heads it anchored.
func (s *Store) AnchorOpenCases(ctx context.Context, last map[uuid.UUID]int64) (int, error) {
	if s.anchor == nil {
		return 0, nil
	}
	n := 0
	open := make(map[uuid.UUID]bool)
	for _, st := range []charting.Status{charting.StatusPlanned, charting.StatusInProgress} {
		f := CaseFilter{Status: st, Limit: 500}
		for {
			cases, next, err := s.ListCases(ctx, f)
			if err != nil {
				return n, fmt.Errorf("anchor open cases: %w", err)
			}
			for i := range cases {
				c := &cases[i]
				open[c.ID] = true
				if last[c.ID] == c.Head.Seq {
					continue
				}
				if err := s.anchor.Anchor(ctx, c.ID, c.Head, s.clock()); err != nil {
					return n, fmt.Errorf("anchor open cases: case %s: %w", c.ID, err)
				}
				last[c.ID] = c.Head.Seq
				n++
			}
			if next == nil {
				break
			}
			f.After = next
		}
	}
	for id := range last {
		if !open[id] {
			delete(last, id) // closed cases are anchored by their close
		}
	}
	return n, nil
}

// RunAnchorer calls AnchorOpenCases every interval until ctx ends, logging
// (without patient data) what it anchored and any error.
func (s *Store) RunAnchorer(ctx context.Context, interval time.Duration) {
	last := make(map[uuid.UUID]int64)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := s.AnchorOpenCases(ctx, last)
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.ErrorContext(ctx, "open cases not checkpointed", "err", err)
		case n > 0:
			s.log.InfoContext(ctx, "open cases checkpointed", "cases", n)
		}
	}
}
