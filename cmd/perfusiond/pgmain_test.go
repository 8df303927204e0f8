package main

import (
	"os"
	"testing"

	"perfusion/store/postgres/pgtest"
)

// TestMain says in one line when this package's PostgreSQL tests were
// skipped for want of PERFUSION_TEST_DATABASE_URL (pgtest.Main).
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, "perfusion/cmd/perfusiond")) }
