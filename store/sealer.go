package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// DefaultSealAfter is how long after its close a case is sealed by the
// background sealer: the deliveries of its signature and any resends of
// its gateways have long happened by then, and nothing depends on it.
const DefaultSealAfter = time.Hour

// sealRetry is how long a case the sealer could not seal (it does not
// verify, or holds a block it cannot reproduce) is left alone before it is
// tried again.
const sealRetry = 6 * time.Hour

// SealDue seals up to limit cases closed (or signed) more than after ago
// that are not sealed yet, one transaction each, oldest close first, and
// returns how many it sealed. A case it cannot seal is skipped (and
// reported in the joined error); the others go on. skip, when not nil,
// holds cases not to try (and receives those that failed).
func (s *Store) SealDue(ctx context.Context, after time.Duration, limit int, skip map[uuid.UUID]time.Time) (int, error) {
	ids, err := s.b.SealCandidates(ctx, s.now().Add(-after), limit+len(skip))
	if err != nil {
		return 0, fmt.Errorf("seal: %w", err)
	}
	sealed := 0
	var errs []error
	for _, id := range ids {
		if sealed >= limit || ctx.Err() != nil {
			break
		}
		if until, ok := skip[id]; ok && s.now().Before(until) {
			continue
		}
		res, err := s.SealCase(ctx, id)
		switch {
		case errors.Is(err, ErrAlreadySealed):
			continue // sealed by another process meanwhile
		case err != nil:
			if ctx.Err() != nil {
				return sealed, ctx.Err()
			}
			if skip != nil {
				skip[id] = s.now().Add(sealRetry)
			}
			errs = append(errs, fmt.Errorf("case %s: %w", id, err))
			continue
		}
		sealed++
		s.log.Info("case sealed", "case_id", id.String(), "batches", res.Batches, "samples", res.Samples,
			"segments", res.Segments, "block_bytes", res.BlockBytes, "sealed_bytes", res.SealedBytes, "took", res.Took, "write", res.Write)
	}
	return sealed, errors.Join(errs...)
}

// RunSealer seals closed cases in the background until ctx ends: every
// interval, the cases closed more than after ago, a few at a time. It never
// holds more than one case's lock (that case is closed, so no batch waits
// for it), and a crash at any moment leaves each case in its old form or
// its new one; the next pass picks up where it stopped.
func (s *Store) RunSealer(ctx context.Context, interval, after time.Duration) {
	skip := make(map[uuid.UUID]time.Time)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		for {
			n, err := s.SealDue(ctx, after, 10, skip)
			if err != nil && ctx.Err() == nil {
				s.log.Warn("sealing failed", "err", err)
			}
			if n == 0 || ctx.Err() != nil {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
