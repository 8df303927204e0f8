package store

import (
	"context"
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
