package storetest

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"perfusion/store"
)

// Retrying is a Backend that runs every ReadWrite function twice: the
// first run is rolled back as if the database had asked for a retry (a
// serialization failure or deadlock), the second commits. Everything the
// store writes must therefore keep no state across runs of its function,
// which Backend.ReadWrite's contract asks and this proves.
type Retrying struct {
	store.Backend
	// Retries counts the transactions run twice.
	Retries atomic.Int64
}

// Unwrap returns the backend it wraps, whose optional capabilities the
// store looks up.
func (r *Retrying) Unwrap() store.Backend { return r.Backend }

var errSimulatedRetry = errors.New("storetest: simulated serialization failure")

// ReadWrite runs fn, rolls it back, and runs it again.
func (r *Retrying) ReadWrite(ctx context.Context, fn func(context.Context, store.Tx) error) error {
	err := r.Backend.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error {
		if err := fn(ctx, tx); err != nil {
			return err
		}
		return errSimulatedRetry
	})
	if !errors.Is(err, errSimulatedRetry) {
		return err // fn failed: a retry would fail the same way
	}
	r.Retries.Add(1)
	return r.Backend.ReadWrite(ctx, fn)
}

// unwrap returns the backend a harness function expects.
func unwrap(b store.Backend) store.Backend {
	if r, ok := b.(*Retrying); ok {
		return r.Backend
	}
	return b
}

// RunRetrying runs the whole suite with every transaction retried once
// (Retrying), so a write that keeps state across runs of its function —
// appending twice to a captured slice, counting twice — fails the suite.
func RunRetrying(t *testing.T, h Harness) {
	inner := h
	h.Open = func(t *testing.T) store.Backend {
		r := &Retrying{Backend: inner.Open(t)}
		t.Cleanup(func() {
			if !t.Failed() && r.Retries.Load() == 0 && !t.Skipped() {
				t.Logf("no transaction was retried in this test")
			}
		})
		return r
	}
	if inner.Exec != nil {
		h.Exec = func(t *testing.T, b store.Backend, sql string, args ...any) error {
			return inner.Exec(t, unwrap(b), sql, args...)
		}
	}
	if inner.Tamper != nil {
		h.Tamper = func(t *testing.T, b store.Backend, sql string, args ...any) { inner.Tamper(t, unwrap(b), sql, args...) }
	}
	if inner.Refuse != nil {
		h.Refuse = func(t *testing.T, b store.Backend, sourceID, marker string) {
			inner.Refuse(t, unwrap(b), sourceID, marker)
		}
	}
	run(t, h, nil)
}
