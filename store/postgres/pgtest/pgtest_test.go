package pgtest

import "testing"

// TestSkipSummary: one line per package, counting every skipped test and
// naming the top-level tests, and nothing when nothing was skipped.
func TestSkipSummary(t *testing.T) {
	var l skipList
	if got := l.summary("perfusion/store"); got != "" {
		t.Fatalf("nothing skipped, summary %q", got)
	}
	l.add("TestB/postgres")
	if got, want := l.summary("perfusion/x"), "perfusion/x: 1 PostgreSQL test skipped, PERFUSION_TEST_DATABASE_URL is not set (in TestB)"; got != want {
		t.Fatalf("summary\n%q, want\n%q", got, want)
	}
	for _, n := range []string{"TestA", "TestB/postgres/x=1", "TestC", "TestD", "TestE", "TestF", "TestG/postgres"} {
		l.add(n)
	}
	want := "perfusion/x: 8 PostgreSQL tests skipped, PERFUSION_TEST_DATABASE_URL is not set (in TestA, TestB, TestC, TestD, TestE, TestF and 1 more)"
	if got := l.summary("perfusion/x"); got != want {
		t.Fatalf("summary\n%q, want\n%q", got, want)
	}
}
