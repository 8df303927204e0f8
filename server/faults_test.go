package server_test

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/store"
)

// faultyBackend wraps a real backend and misbehaves on demand, to test
// what the server does when the database is not ready, fails or panics.
type faultyBackend struct {
	store.Backend
	notReady atomic.Bool // Ready fails
	fail     atomic.Bool // GetCase returns an internal error
	panics   atomic.Bool // GetCase panics
}

// Internal detail that must never reach a client.
const (
	sqlText    = `SELECT mrn FROM patients WHERE family_name = 'x'`
	panicValue = "panic value carrying " + testMRN
)

func (b *faultyBackend) Ready(ctx context.Context) error {
	if b.notReady.Load() {
		return errors.New("database unreachable")
	}
	return b.Backend.Ready(ctx)
}

func (b *faultyBackend) GetCase(ctx context.Context, id uuid.UUID) (*charting.Case, error) {
	if b.panics.Load() {
		panic(panicValue)
	}
	if b.fail.Load() {
		return nil, errors.New("query failed: " + sqlText)
	}
	return b.Backend.GetCase(ctx, id)
}
