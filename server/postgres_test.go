package server_test

import (
	"testing"

	"perfusion/store"
	"perfusion/store/postgres/pgtest"
)

// openPostgres returns a fresh migrated PostgreSQL backend; pgtest skips by
// name without PERFUSION_TEST_DATABASE_URL (and fails in CI).
func openPostgres(t *testing.T) store.Backend { return pgtest.Open(t) }
